package plugin_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/plugin"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// stub appends a Raise whose cause is its name, and passes or not.
type stub struct {
	name string
	pass bool
	seen *[]string
}

func (s *stub) Name() string { return s.name }

func (s *stub) Decide(v plugin.View, r *plugin.Report, out []plugin.Verdict) ([]plugin.Verdict, bool) {
	*s.seen = append(*s.seen, s.name)
	return append(out, plugin.Verdict{Kind: plugin.Raise, Entity: r.Entity, Cause: s.name}), s.pass
}

func causes(vs []plugin.Verdict) []string {
	var c []string
	for _, v := range vs {
		c = append(c, v.Cause)
	}
	return c
}

func TestChainOrder(t *testing.T) {
	tests := []struct {
		name   string
		passes []bool
		seen   []string
	}{
		{"all pass", []bool{true, true, true}, []string{"a", "b", "c"}},
		{"second stops", []bool{true, false, true}, []string{"a", "b"}},
		{"first stops", []bool{false, true, true}, []string{"a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var seen []string
			var ps []plugin.Plugin
			for i, p := range tc.passes {
				ps = append(ps, &stub{name: string(rune('a' + i)), pass: p, seen: &seen})
			}
			c := plugin.ChainOf(ps...)
			got := c.Run(cluster(t, 1), &plugin.Report{Kind: wire.ReportRaise}, nil)
			assert.Equal(t, tc.seen, seen)
			assert.Equal(t, tc.seen, causes(got), "verdicts of passing plugins are kept")
		})
	}
}

func TestChainEmptyResultIsIgnore(t *testing.T) {
	// Every plugin passes without a verdict: nothing to do.
	c := plugin.ChainOf(plugin.HeartbeatPlugin{}, plugin.ProcessPlugin{})
	got := c.Run(cluster(t, 2), report(1, plugin.SourceClient, wire.ReportFault, svc), nil)
	assert.Empty(t, got)
}

// historyProbe reports what the history says while it decides.
type historyProbe struct{ count, reporters *int }

func (historyProbe) Name() string { return "probe" }

func (p historyProbe) Decide(v plugin.View, r *plugin.Report, out []plugin.Verdict) ([]plugin.Verdict, bool) {
	*p.count = v.History().Count(r.Entity, 0)
	*p.reporters = v.History().Reporters(r.Entity, 0)
	return out, true
}

// TestChainHistory: Run records the report before plugins decide (so they
// count it), and plugins see the chain's history even when the caller's View
// returns another (or none).
func TestChainHistory(t *testing.T) {
	var count, reporters int
	c := plugin.ChainOf(historyProbe{&count, &reporters})
	v := cluster(t, 3)
	v.hist = plugin.NewHistory(8) // a different history: must not be used
	c.Run(v, v.fault(1, svc, "x"), nil)
	assert.Equal(t, 1, count)
	c.Run(v, v.fault(2, svc, "x"), nil)
	assert.Equal(t, 2, count)
	assert.Equal(t, 2, reporters)
	assert.Zero(t, v.hist.Len())
	assert.Equal(t, 2, c.History().Len())

	v.hist = nil
	c.Run(v, v.fault(2, svc, "x"), nil)
	assert.Equal(t, 3, count)
}

func TestChainAllocs(t *testing.T) {
	v := cluster(t, 5)
	var view plugin.View = v
	c := plugin.DefaultChain()
	out := make([]plugin.Verdict, 0, 8)
	raise := &plugin.Report{From: 4, Kind: wire.ReportRaise, Entity: table.ID(svc), Name: svc,
		Cause: "disk", Severity: wire.SevMajor}
	// A lone reporter against a down entity: threshold lacks a second
	// reporter, blame spares a down entity, so passthrough raises.
	v.setState(t, svc, wire.StateDown)
	fault := v.fault(4, svc, "slow")
	// Fill the history so the queries scan a full ring.
	for range plugin.DefaultHistorySize {
		c.Run(view, fault, out[:0])
	}
	for _, r := range []*plugin.Report{raise, fault} {
		allocs := testing.AllocsPerRun(200, func() {
			v.now++
			r.At = v.now
			out = c.Run(view, r, out[:0])
		})
		assert.Zero(t, allocs, "kind %d", r.Kind)
		require.Len(t, out, 1)
		assert.Equal(t, plugin.Raise, out[0].Kind)
	}
}

// A custom plugin, registered the way a custom build does: from init(), once
// per process (a test registering it would panic on -count=2).
func init() {
	plugin.Register("test-custom", func(args map[string]string) (plugin.Plugin, error) {
		if args["fail"] != "" {
			return nil, errors.New("asked to fail")
		}
		var seen []string
		return &stub{name: "test-custom", seen: &seen}, nil
	})
}

func TestRegistry(t *testing.T) {
	names := plugin.Names()
	for _, n := range []string{"heartbeat", "process", "threshold", "blame", "passthrough"} {
		assert.Contains(t, names, n)
	}
	assert.IsIncreasing(t, names)

	assert.PanicsWithValue(t, `plugin: "heartbeat" registered twice`, func() {
		plugin.Register("heartbeat", func(map[string]string) (plugin.Plugin, error) { return nil, nil })
	})
	assert.Panics(t, func() { plugin.Register("", func(map[string]string) (plugin.Plugin, error) { return nil, nil }) })
	assert.Panics(t, func() { plugin.Register("nil-factory", nil) })

	_, err := plugin.New("no-such-plugin", nil)
	var unknown *plugin.UnknownError
	require.ErrorAs(t, err, &unknown)
	assert.Equal(t, "no-such-plugin", unknown.Name)
	assert.ErrorIs(t, err, plugin.ErrUnknown)

	// A custom plugin registered from init() is available by name.
	p, err := plugin.New("test-custom", nil)
	require.NoError(t, err)
	assert.Equal(t, "test-custom", p.Name())
	assert.Contains(t, plugin.Names(), "test-custom")
	_, err = plugin.New("test-custom", map[string]string{"fail": "1"})
	assert.ErrorContains(t, err, "asked to fail")
}

func TestPluginArgs(t *testing.T) {
	tests := []struct {
		name string
		args map[string]string
		ok   bool
	}{
		{"threshold", map[string]string{"k": "5", "m": "3", "window": "2s"}, true},
		{"threshold", map[string]string{"window": "1.5s"}, true},
		// A bare number would be nanoseconds: refused, like a bare
		// number for a duration key of the file.
		{"threshold", map[string]string{"window": "1500000000"}, false},
		{"threshold", map[string]string{"window": "10"}, false},
		{"blame", map[string]string{"window": "10"}, false},
		{"threshold", map[string]string{"k": "0"}, false},
		{"threshold", map[string]string{"k": "-1"}, false},
		{"threshold", map[string]string{"k": "three"}, false},
		{"threshold", map[string]string{"window": "0s"}, false},
		{"threshold", map[string]string{"window": "soon"}, false},
		{"threshold", map[string]string{"kk": "3"}, false},
		{"blame", map[string]string{"window": "5s", "min": "4", "retract": "true"}, true},
		{"blame", map[string]string{"min": "0"}, false},
		{"blame", map[string]string{"retract": "maybe"}, false},
		{"heartbeat", map[string]string{"x": "1"}, false},
		{"process", map[string]string{"x": "1"}, false},
		{"passthrough", map[string]string{"x": "1"}, false},
	}
	for _, tc := range tests {
		_, err := plugin.New(tc.name, tc.args)
		if tc.ok {
			assert.NoError(t, err, "%s %v", tc.name, tc.args)
		} else {
			assert.Error(t, err, "%s %v", tc.name, tc.args)
		}
	}
	p, err := plugin.New("threshold", map[string]string{"k": "5", "m": "3", "window": "2s"})
	require.NoError(t, err)
	assert.Equal(t, &plugin.ThresholdPlugin{K: 5, M: 3, Window: 2e9}, p)
	p, err = plugin.New("blame", nil)
	require.NoError(t, err)
	assert.Equal(t, &plugin.BlamePlugin{Window: 10e9, Min: 3}, p)
}

func TestNewChain(t *testing.T) {
	c, err := plugin.NewChain([]plugin.Spec{{Name: "heartbeat"}, {Name: "threshold", Args: map[string]string{"k": "2"}}})
	require.NoError(t, err)
	require.Len(t, c.Plugins(), 2)
	assert.Equal(t, "heartbeat", c.Plugins()[0].Name())
	assert.Equal(t, 2, c.Plugins()[1].(*plugin.ThresholdPlugin).K)

	_, err = plugin.NewChain([]plugin.Spec{{Name: "heartbeat"}, {Name: "nope"}})
	assert.ErrorIs(t, err, plugin.ErrUnknown)
	_, err = plugin.NewChain([]plugin.Spec{{Name: "threshold", Args: map[string]string{"k": "x"}}})
	assert.Error(t, err)
	_, err = plugin.NewChain(nil)
	assert.Error(t, err)

	var names []string
	for _, p := range plugin.DefaultChain().Plugins() {
		names = append(names, p.Name())
	}
	assert.Equal(t, []string{"heartbeat", "process", "threshold", "blame", "passthrough"}, names)
	var specNames []string
	for _, s := range plugin.DefaultSpecs() {
		specNames = append(specNames, s.Name)
	}
	assert.Equal(t, names, specNames)
}

func TestStrings(t *testing.T) {
	assert.Equal(t, "client", plugin.SourceClient.String())
	assert.Equal(t, "membership", plugin.SourceMembership.String())
	assert.Equal(t, "owner", plugin.SourceOwner.String())
	assert.Equal(t, "unknown", plugin.Source(9).String())
	for k, s := range map[plugin.VerdictKind]string{
		plugin.Raise: "raise", plugin.Clear: "clear", plugin.MarkDown: "mark-down",
		plugin.MarkUp: "mark-up", plugin.Blame: "blame", plugin.Ignore: "ignore", 0: "unknown",
	} {
		assert.Equal(t, s, k.String())
	}
}

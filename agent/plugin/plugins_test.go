package plugin_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/plugin"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

func mustNew(t *testing.T, name string, args map[string]string) plugin.Plugin {
	t.Helper()
	p, err := plugin.New(name, args)
	require.NoError(t, err)
	require.Equal(t, name, p.Name())
	return p
}

func report(from wire.NodeID, src plugin.Source, kind wire.ReportKind, name string) *plugin.Report {
	return &plugin.Report{From: from, Source: src, Kind: kind, Entity: table.ID(name), Name: name}
}

type pluginCase struct {
	name  string
	setup func(t *testing.T, v *fakeView)
	r     *plugin.Report
	want  []plugin.Verdict
	pass  bool
}

// runCases calls the plugin directly (not through a chain). A case's report
// is recorded in the view's history first, as Chain.Run would.
func runCases(t *testing.T, p plugin.Plugin, cases []pluginCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := cluster(t, 5)
			if tc.setup != nil {
				tc.setup(t, v)
			}
			if tc.r.At == 0 {
				tc.r.At = v.now
			}
			v.hist.Record(tc.r)
			marker := plugin.Verdict{Kind: plugin.Ignore, Cause: "earlier"}
			got, pass := p.Decide(v, tc.r, []plugin.Verdict{marker})
			require.NotEmpty(t, got)
			assert.Equal(t, marker, got[0], "verdicts already in out are kept")
			assert.Equal(t, tc.want, got[1:])
			assert.Equal(t, tc.pass, pass)
		})
	}
}

func TestHeartbeat(t *testing.T) {
	n3, l3a := table.NodeName(3), table.LinkName(3, wire.NetA)
	newNode := table.NodeName(9)
	runCases(t, mustNew(t, "heartbeat", nil), []pluginCase{
		{name: "node down", r: withKind(report(1, plugin.SourceMembership, wire.ReportDown, n3), wire.KindNode),
			want: []plugin.Verdict{vd(plugin.MarkDown, n3, "", 0)}},
		{name: "node up", r: withKind(report(1, plugin.SourceMembership, wire.ReportUp, n3), wire.KindNode),
			want: []plugin.Verdict{vd(plugin.MarkUp, n3, "", 0)}},
		{name: "new node up, kind from report", r: withKind(report(1, plugin.SourceMembership, wire.ReportUp, newNode), wire.KindNode),
			want: []plugin.Verdict{vd(plugin.MarkUp, newNode, "", 0)}},
		{name: "link down, kind from table", r: report(1, plugin.SourceMembership, wire.ReportDown, l3a),
			want: []plugin.Verdict{vd(plugin.MarkDown, l3a, "", 0), vd(plugin.Raise, l3a, "link-down", wire.SevMajor)}},
		{name: "link up", r: withKind(report(1, plugin.SourceMembership, wire.ReportUp, l3a), wire.KindLink),
			want: []plugin.Verdict{vd(plugin.MarkUp, l3a, "", 0), vd(plugin.Clear, l3a, "link-down", 0)}},
		{name: "client down report passes", r: withKind(report(1, plugin.SourceClient, wire.ReportDown, n3), wire.KindNode),
			want: []plugin.Verdict{}, pass: true},
		{name: "owner down report passes", r: withKind(report(3, plugin.SourceOwner, wire.ReportDown, n3), wire.KindNode),
			want: []plugin.Verdict{}, pass: true},
		{name: "membership fault passes", r: report(1, plugin.SourceMembership, wire.ReportFault, n3),
			want: []plugin.Verdict{}, pass: true},
		{name: "membership report on a process passes", r: report(1, plugin.SourceMembership, wire.ReportDown, procDB),
			want: []plugin.Verdict{}, pass: true},
		{name: "unknown entity of unknown kind passes", r: report(1, plugin.SourceMembership, wire.ReportDown, "node/77"),
			want: []plugin.Verdict{}, pass: true},
	})
}

func withKind(r *plugin.Report, k wire.EntityKind) *plugin.Report {
	r.EntityKind = k
	return r
}

func withInc(r *plugin.Report, inc uint64) *plugin.Report {
	r.Incarnation = inc
	return r
}

func TestProcess(t *testing.T) {
	runCases(t, mustNew(t, "process", nil), []pluginCase{
		{name: "owner reports exit", r: report(2, plugin.SourceOwner, wire.ReportDown, procDB),
			want: []plugin.Verdict{vd(plugin.MarkDown, procDB, "", 0)}},
		{name: "owner reports up", r: report(2, plugin.SourceOwner, wire.ReportUp, procDB),
			want: []plugin.Verdict{vd(plugin.MarkUp, procDB, "", 0)}},
		{name: "current incarnation", r: withInc(report(2, plugin.SourceOwner, wire.ReportDown, procDB), 5),
			want: []plugin.Verdict{vd(plugin.MarkDown, procDB, "", 0)}},
		{name: "stale incarnation ignored", r: withInc(report(2, plugin.SourceOwner, wire.ReportDown, procDB), 4),
			want: []plugin.Verdict{vd(plugin.Ignore, procDB, "", 0)}},
		{name: "non-owner passes", r: report(3, plugin.SourceOwner, wire.ReportDown, procDB),
			want: []plugin.Verdict{}, pass: true},
		{name: "client source passes", r: report(2, plugin.SourceClient, wire.ReportDown, procDB),
			want: []plugin.Verdict{}, pass: true},
		{name: "unknown entity passes", r: report(2, plugin.SourceOwner, wire.ReportDown, "node/2/proc/gone"),
			want: []plugin.Verdict{}, pass: true},
		{name: "fault passes", r: report(2, plugin.SourceOwner, wire.ReportFault, procDB),
			want: []plugin.Verdict{}, pass: true},
	})
}

// faults records earlier fault reports against name from each of from, at
// the view's now minus age.
func faults(name string, age int64, from ...wire.NodeID) func(*testing.T, *fakeView) {
	return func(_ *testing.T, v *fakeView) {
		for _, f := range from {
			r := v.fault(f, name, "x")
			r.At = v.now - age
			v.hist.Record(r)
		}
	}
}

func TestThreshold(t *testing.T) {
	p := mustNew(t, "threshold", nil)
	cluster5 := cluster(t, 5)
	f := func(from wire.NodeID, cause string) *plugin.Report { return cluster5.fault(from, svc, cause) }
	runCases(t, p, []pluginCase{
		{name: "3 reports from 3 nodes", setup: faults(svc, sec, 1, 2), r: f(4, "rpc-timeout"),
			want: []plugin.Verdict{vd(plugin.MarkDown, svc, "", 0), vd(plugin.Raise, svc, "rpc-timeout", wire.SevCritical)}},
		{name: "3 reports from 2 nodes, no cause", setup: faults(svc, sec, 1, 1), r: f(4, ""),
			want: []plugin.Verdict{vd(plugin.MarkDown, svc, "", 0), vd(plugin.Raise, svc, "threshold", wire.SevCritical)}},
		{name: "3 reports from 1 node", setup: faults(svc, sec, 1, 1), r: f(1, "x"),
			want: []plugin.Verdict{}, pass: true},
		{name: "2 reports", setup: faults(svc, sec, 1), r: f(2, "x"),
			want: []plugin.Verdict{}, pass: true},
		{name: "old reports outside the window", setup: faults(svc, 11*sec, 1, 2), r: f(4, "x"),
			want: []plugin.Verdict{}, pass: true},
		{name: "reports against another entity do not count", setup: faults(procDB, sec, 1, 2), r: f(4, "x"),
			want: []plugin.Verdict{}, pass: true},
		{name: "not a fault", setup: faults(svc, sec, 1, 2, 3),
			r: report(4, plugin.SourceClient, wire.ReportRaise, svc), want: []plugin.Verdict{}, pass: true},
	})

	custom := mustNew(t, "threshold", map[string]string{"k": "2", "m": "1", "window": "500ms"})
	runCases(t, custom, []pluginCase{
		{name: "custom k=2 m=1", setup: faults(svc, 100e6, 1), r: f(1, "x"),
			want: []plugin.Verdict{vd(plugin.MarkDown, svc, "", 0), vd(plugin.Raise, svc, "x", wire.SevCritical)}},
		{name: "custom window", setup: faults(svc, 600e6, 1), r: f(1, "x"),
			want: []plugin.Verdict{}, pass: true},
	})
}

func TestBlamePlugin(t *testing.T) {
	b := table.NodeName(2)
	v5 := cluster(t, 5)
	f := func(from wire.NodeID, name string) *plugin.Report { return v5.fault(from, name, "rpc-timeout") }
	blame1 := plugin.Verdict{Kind: plugin.Blame, Entity: table.NodeEntityID(1), Cause: "blamed:rpc-timeout", Severity: wire.SevMajor}
	runCases(t, mustNew(t, "blame", nil), []pluginCase{
		{name: "third lone report blames the reporter", setup: faults(b, sec, 1, 1), r: f(1, b),
			want: []plugin.Verdict{blame1}},
		{name: "reports against other targets count for min", setup: faults(svc, sec, 1, 1), r: f(1, b),
			want: []plugin.Verdict{blame1}},
		{name: "second report: below min", setup: faults(b, sec, 1), r: f(1, b),
			want: []plugin.Verdict{}, pass: true},
		{name: "someone else agrees", setup: faults(b, sec, 1, 1, 3), r: f(1, b),
			want: []plugin.Verdict{}, pass: true},
		{name: "old agreement has expired", setup: func(t *testing.T, v *fakeView) {
			faults(b, 20*sec, 3)(t, v)
			faults(b, sec, 1, 1)(t, v)
		}, r: f(1, b), want: []plugin.Verdict{blame1}},
		{name: "target down", setup: func(t *testing.T, v *fakeView) {
			faults(b, sec, 1, 1)(t, v)
			v.setState(t, b, wire.StateDown)
		}, r: f(1, b), want: []plugin.Verdict{}, pass: true},
		{name: "target's owner dead to the master", setup: func(t *testing.T, v *fakeView) {
			faults(b, sec, 1, 1)(t, v)
			v.alive[2] = false
		}, r: f(1, b), want: []plugin.Verdict{}, pass: true},
		{name: "owner reporting its own entity", setup: faults(procDB, sec, 2, 2), r: f(2, procDB),
			want: []plugin.Verdict{}, pass: true},
		{name: "unknown target", setup: faults("svc/none", sec, 1, 1), r: f(1, "svc/none"),
			want: []plugin.Verdict{}, pass: true},
		{name: "not a fault", setup: faults(b, sec, 1, 1, 1),
			r: report(1, plugin.SourceClient, wire.ReportRaise, b), want: []plugin.Verdict{}, pass: true},
		{name: "reporter without a node entity gets one by name", setup: faults(b, sec, 9, 9), r: f(9, b),
			want: []plugin.Verdict{{Kind: plugin.Blame, Entity: table.NodeEntityID(9), Name: "node/9",
				Cause: "blamed:rpc-timeout", Severity: wire.SevMajor}}},
	})

	runCases(t, mustNew(t, "blame", map[string]string{"retract": "true", "min": "2"}), []pluginCase{
		{name: "retract clears the reporter's own alarm", setup: func(t *testing.T, v *fakeView) {
			faults(b, sec, 1)(t, v)
			v.raise(t, b, "rpc-timeout", 1)
		}, r: f(1, b), want: []plugin.Verdict{blame1, vd(plugin.Clear, b, "rpc-timeout", 0)}},
		{name: "retract leaves another node's alarm", setup: func(t *testing.T, v *fakeView) {
			faults(b, sec, 1)(t, v)
			v.raise(t, b, "rpc-timeout", 4)
		}, r: f(1, b), want: []plugin.Verdict{blame1}},
	})
}

func TestBlameCauseTruncated(t *testing.T) {
	v := cluster(t, 3)
	p := mustNew(t, "blame", map[string]string{"min": "1"})
	long := strings.Repeat("é", 40) // 80 bytes, 2 per rune
	r := v.fault(1, table.NodeName(2), long)
	v.hist.Record(r)
	got, pass := p.Decide(v, r, nil)
	require.False(t, pass)
	require.Len(t, got, 1)
	assert.LessOrEqual(t, len(got[0].Cause), wire.MaxCause)
	assert.True(t, strings.HasPrefix(got[0].Cause, "blamed:é"))
	assert.True(t, strings.HasSuffix(got[0].Cause, "é"), "cut on a rune boundary")
}

func TestPassthrough(t *testing.T) {
	withSev := func(r *plugin.Report, s wire.Severity, cause string) *plugin.Report {
		r.Severity, r.Cause = s, cause
		return r
	}
	runCases(t, mustNew(t, "passthrough", nil), []pluginCase{
		{name: "raise", r: withSev(report(4, plugin.SourceClient, wire.ReportRaise, svc), wire.SevMajor, "disk"),
			want: []plugin.Verdict{vd(plugin.Raise, svc, "disk", wire.SevMajor)}},
		{name: "raise without severity", r: withSev(report(4, plugin.SourceClient, wire.ReportRaise, svc), 0, "disk"),
			want: []plugin.Verdict{vd(plugin.Raise, svc, "disk", wire.SevIndeterminate)}},
		{name: "clear", r: withSev(report(4, plugin.SourceClient, wire.ReportClear, svc), 0, "disk"),
			want: []plugin.Verdict{vd(plugin.Clear, svc, "disk", 0)}},
		{name: "fault without severity is minor", r: withSev(report(4, plugin.SourceClient, wire.ReportFault, svc), 0, "rpc-timeout"),
			want: []plugin.Verdict{vd(plugin.Raise, svc, "rpc-timeout", wire.SevMinor)}},
		{name: "fault keeps its severity", r: withSev(report(4, plugin.SourceClient, wire.ReportFault, svc), wire.SevWarning, ""),
			want: []plugin.Verdict{vd(plugin.Raise, svc, "fault", wire.SevWarning)}},
		{name: "owner down", r: report(3, plugin.SourceClient, wire.ReportDown, svc),
			want: []plugin.Verdict{vd(plugin.MarkDown, svc, "", 0)}},
		{name: "owner up", r: report(3, plugin.SourceClient, wire.ReportUp, svc),
			want: []plugin.Verdict{vd(plugin.MarkUp, svc, "", 0)}},
		{name: "non-owner down ignored", r: report(4, plugin.SourceClient, wire.ReportDown, svc),
			want: []plugin.Verdict{}},
		{name: "register ignored", r: report(3, plugin.SourceClient, wire.ReportRegister, svc),
			want: []plugin.Verdict{}},
		{name: "unregister ignored", r: report(3, plugin.SourceClient, wire.ReportUnregister, svc),
			want: []plugin.Verdict{}},
	})
}

// runAll feeds reports through the chain, advancing the clock by step before
// each, and returns the verdicts of each report.
func runAll(c *plugin.Chain, v *fakeView, step int64, rs ...*plugin.Report) [][]plugin.Verdict {
	var res [][]plugin.Verdict
	for _, r := range rs {
		v.now += step
		r.At = v.now
		res = append(res, c.Run(v, r, nil))
	}
	return res
}

func targets(vs []plugin.Verdict, id uint64) bool {
	for _, v := range vs {
		if v.Entity == id {
			return true
		}
	}
	return false
}

// TestBlameCase is the case the blame plugin exists for, through the
// default chain: node 1 (A) keeps reporting RPC timeouts against node 2 (B)
// while nobody else complains and B is up: A is blamed, B is left alone.
func TestBlameCase(t *testing.T) {
	v := cluster(t, 5)
	v.hist = nil // the chain supplies its own
	c := plugin.DefaultChain()
	b := table.NodeName(2)
	res := runAll(c, v, sec, v.fault(1, b, "rpc-timeout"), v.fault(1, b, "rpc-timeout"), v.fault(1, b, "rpc-timeout"))

	// The first two are uncorroborated candidates: a minor alarm on B.
	for i := range 2 {
		assert.Equal(t, []plugin.Verdict{vd(plugin.Raise, b, "rpc-timeout", wire.SevMinor)}, res[i], "report %d", i+1)
	}
	// The third: A is blamed, and nothing is done to B.
	assert.Equal(t, []plugin.Verdict{{Kind: plugin.Blame, Entity: table.NodeEntityID(1),
		Cause: "blamed:rpc-timeout", Severity: wire.SevMajor}}, res[2])
	assert.False(t, targets(res[2], table.ID(b)))
}

// TestBlameCaseContrast: nodes 1, 3 and 4 each report against B. That is
// corroboration: threshold marks B down and nobody is blamed.
func TestBlameCaseContrast(t *testing.T) {
	v := cluster(t, 5)
	c := plugin.DefaultChain()
	b := table.NodeName(2)
	res := runAll(c, v, sec, v.fault(1, b, "rpc-timeout"), v.fault(3, b, "rpc-timeout"), v.fault(4, b, "rpc-timeout"))
	for i, vs := range res {
		for _, x := range vs {
			assert.NotEqual(t, plugin.Blame, x.Kind, "report %d blamed someone", i+1)
		}
	}
	assert.Equal(t, []plugin.Verdict{
		vd(plugin.MarkDown, b, "", 0),
		vd(plugin.Raise, b, "rpc-timeout", wire.SevCritical),
	}, res[2])
}

// TestDefaultChainRouting: each kind of report lands on the plugin meant for
// it.
func TestDefaultChainRouting(t *testing.T) {
	v := cluster(t, 5)
	c := plugin.DefaultChain()
	l := table.LinkName(3, wire.NetB)

	got := c.Run(v, withKind(report(1, plugin.SourceMembership, wire.ReportDown, l), wire.KindLink), nil)
	assert.Equal(t, []plugin.Verdict{vd(plugin.MarkDown, l, "", 0), vd(plugin.Raise, l, "link-down", wire.SevMajor)}, got)

	got = c.Run(v, report(2, plugin.SourceOwner, wire.ReportDown, procDB), nil)
	assert.Equal(t, []plugin.Verdict{vd(plugin.MarkDown, procDB, "", 0)}, got)

	got = c.Run(v, report(4, plugin.SourceOwner, wire.ReportDown, procDB), nil)
	assert.Empty(t, got, "a non-owner cannot mark a process down")

	assert.Equal(t, 0, c.History().Len(), "only faults are recorded")
	got = c.Run(v, v.fault(4, svc, "slow"), nil)
	assert.Equal(t, []plugin.Verdict{vd(plugin.Raise, svc, "slow", wire.SevMinor)}, got)
	assert.Equal(t, 1, c.History().Len())
}

package core_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/wire"
)

// newPairWith is newPair with both nodes' configs changed by set.
func newPairWith(t testing.TB, set func(*core.Config)) *pair {
	cfg := func(id wire.NodeID) core.Config {
		c := core.Config{Node: id, Cluster: 9, Key: []byte("k"), Priority: 100, Eligible: true}
		set(&c)
		return c
	}
	return &pair{a: core.New(cfg(1), t0), b: core.New(cfg(2), t0), now: t0, results: map[wire.NodeID][]core.Result{}}
}

// submitFrom2 submits r on node 2 (a follower) and returns its answer.
func (p *pair) submitFrom2(t *testing.T, r core.Request) core.Result {
	t.Helper()
	n := len(p.results[2])
	p.b.Submit(p.now, r)
	p.flush()
	p.run(20 * time.Millisecond)
	require.Greater(t, len(p.results[2]), n, "answered")
	return p.results[2][n]
}

// Registrations past the owner's limit are refused with ErrEntityLimit (the
// API's limit), and so is a report that would create an entity; what is
// registered stays, re-registering it is no new entity, and room made by an
// unregister can be used again.
func TestEntityLimitPerOwner(t *testing.T) {
	p := newPairWith(t, func(c *core.Config) { c.MaxEntitiesPerOwner = 5 })
	p.run(200 * time.Millisecond)
	require.Equal(t, wire.RoleMaster, p.a.Role().Role)
	reg := func(name string) error {
		return p.submitFrom2(t, core.Request{Kind: wire.ReportRegister, Name: name, EntityKind: wire.KindService}).Err
	}
	for i := range 8 {
		err := reg(fmt.Sprintf("svc/b%d", i))
		if i < 5 {
			require.NoError(t, err, "svc/b%d", i)
		} else {
			require.ErrorIs(t, err, core.ErrEntityLimit, "svc/b%d", i)
		}
	}
	require.NoError(t, reg("svc/b0"), "registering an entity the table holds again")
	res := p.submitFrom2(t, core.Request{Kind: wire.ReportRaise, Name: "svc/new", Severity: wire.SevMajor, Cause: "c"})
	require.ErrorIs(t, res.Err, core.ErrEntityLimit, "a raise that would create an entity")
	res = p.submitFrom2(t, core.Request{Kind: wire.ReportFault, Name: "svc/new2", Severity: wire.SevMajor, Cause: "c"})
	require.ErrorIs(t, res.Err, core.ErrEntityLimit, "a fault report that would create an entity")
	for _, n := range []*core.Node{p.a, p.b} {
		for _, name := range []string{"svc/b5", "svc/b6", "svc/b7", "svc/new", "svc/new2"} {
			_, ok := n.Table().Lookup(name)
			require.False(t, ok, "node %d holds %q", n.ID(), name)
		}
		_, ok := n.Table().Lookup("svc/b4")
		require.True(t, ok)
	}
	// Another owner has its own limit.
	p.a.Submit(p.now, core.Request{Kind: wire.ReportRegister, Name: "svc/a0", EntityKind: wire.KindService})
	p.flush()
	p.run(20 * time.Millisecond)
	_, ok := p.b.Table().Lookup("svc/a0")
	require.True(t, ok, "node 1's registration")
	require.NoError(t, p.submitFrom2(t, core.Request{Kind: wire.ReportUnregister, Name: "svc/b1"}).Err)
	require.NoError(t, reg("svc/b5"), "room made by an unregister")
}

// The cluster's limit counts every entity (nodes and links too).
func TestEntityLimitCluster(t *testing.T) {
	const limit = 12
	p := newPairWith(t, func(c *core.Config) { c.MaxEntities = limit })
	p.run(200 * time.Millisecond)
	require.Equal(t, wire.RoleMaster, p.a.Role().Role)
	base := p.a.Table().Len()
	require.Less(t, base, limit)
	ok, refused := 0, 0
	for i := range limit {
		res := p.submitFrom2(t, core.Request{Kind: wire.ReportRegister, Name: fmt.Sprintf("svc/c%d", i), EntityKind: wire.KindService})
		if res.Err != nil {
			require.ErrorIs(t, res.Err, core.ErrEntityLimit)
			refused++
			continue
		}
		ok++
	}
	require.Equal(t, limit-base, ok)
	require.Equal(t, base, refused)
	require.Equal(t, limit, p.a.Table().Len())
	require.Equal(t, limit, p.b.Table().Len())
}

// A raise flood with displacement leaves at most max_alarms raises per
// entity in the ledger (the table never holds more): 32 acknowledged raises
// of rising severity on one entity keep 8 in the ledger, the 8 the table
// holds, and the ledger does not grow with the flood.
func TestLedgerBoundedUnderRaiseFlood(t *testing.T) {
	p := newPairWith(t, func(c *core.Config) { c.MaxAlarms = 8 })
	p.run(200 * time.Millisecond)
	require.Equal(t, wire.RoleMaster, p.a.Role().Role)
	require.NoError(t, p.submitFrom2(t, core.Request{Kind: wire.ReportRegister, Name: "svc/x", EntityKind: wire.KindService}).Err)
	before := core.LedgerLen(p.b)
	sevs := []wire.Severity{wire.SevWarning, wire.SevMinor, wire.SevMajor, wire.SevCritical}
	for si, sev := range sevs {
		for i := range 8 {
			res := p.submitFrom2(t, core.Request{Kind: wire.ReportRaise, Name: "svc/x", Severity: sev, Cause: fmt.Sprintf("s%d-c%d", si, i)})
			require.NoError(t, res.Err)
		}
	}
	require.Equal(t, before+8, core.LedgerLen(p.b), "ledger after 32 raises, 24 of them displaced")
	e, ok := p.a.Table().Lookup("svc/x")
	require.True(t, ok)
	require.Len(t, e.Alarms, 8)
	for _, a := range e.Alarms {
		require.Equal(t, wire.SevCritical, a.Severity)
	}
}

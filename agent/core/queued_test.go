package core_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// A report that arrives while a transaction is in flight is decided when its
// turn comes, against the table it will change: decided on arrival, a
// re-asserted registration found the entity absent with no tombstone, and
// was applied after an unregister that had queued before it, bringing the
// unregistered entity back (netsim chaos seed 449, with the master answering
// each snapshot request once).
func TestReportQueuedBehindATransactionIsDecidedInTurn(t *testing.T) {
	p := formedPair(t)
	ep := p.a.Role().Epoch
	// A transaction in flight: node 2 has its prepare but has not answered.
	p.a.Submit(p.now, core.Request{Kind: wire.ReportRaise, Name: "svc/other", EntityKind: wire.KindService,
		Severity: wire.SevMajor, Cause: "outage", Txn: true})
	// A registration acknowledged by another master of this epoch (the
	// other side of a healed partition), re-asserted; the owner's
	// unregister; the same re-assertion again (asked twice: the first
	// answer was slow).
	acked := wire.WriteVersion{Epoch: ep, Seq: 3, Node: 7}
	reassert := core.Request{Kind: wire.ReportRegister, Name: "svc/gone", EntityKind: wire.KindService, Ver: acked}
	first := p.a.Submit(p.now, reassert)
	unreg := p.a.Submit(p.now, core.Request{Kind: wire.ReportUnregister, Name: "svc/gone"})
	again := p.a.Submit(p.now, reassert)
	require.Empty(t, resultsOf(p, 1, first, unreg, again), "nothing is answered while the transaction waits")

	p.flush() // node 2 acks the prepare: the transaction commits, the queue drains
	p.run(20 * time.Millisecond)

	res := resultsOf(p, 1, first, unreg, again)
	require.Len(t, res, 3)
	require.NoError(t, res[first].Err)
	require.NoError(t, res[unreg].Err)
	require.True(t, acked.Less(res[unreg].Ver), "the unregister is newer than the re-asserted registration")
	require.NotEqual(t, res[unreg].Seq, uint64(0))
	// The second re-assertion came after the unregister: older than its
	// tombstone, it is superseded: answered without a version, not
	// applied (an applied re-assertion keeps the version it carries).
	require.Equal(t, acked, res[first].Ver)
	require.NoError(t, res[again].Err)
	require.True(t, res[again].Ver.IsZero(), "superseded, not applied: %+v", res[again])
	for _, n := range []*core.Node{p.a, p.b} {
		_, present := n.Table().Get(table.ID("svc/gone"))
		require.False(t, present, "node %d shows an entity unregistered, and acknowledged as such", n.ID())
		_, raised := n.Table().Get(table.ID("svc/other"))
		require.True(t, raised, "node %d has the transaction", n.ID())
	}
}

// resultsOf returns node id's results among ids, by ID.
func resultsOf(p *pair, id wire.NodeID, ids ...uint64) map[uint64]core.Result {
	m := map[uint64]core.Result{}
	for _, r := range p.results[id] {
		for _, want := range ids {
			if r.ID == want {
				m[want] = r
			}
		}
	}
	return m
}

package core

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// The ledger holds the newest acknowledged word per entity and alarm
// whatever order the acknowledgements come in: the first write's
// acknowledgement lost on both networks is given again to its
// retransmission, after the second write's (netsim chaos seeds 19152 and
// 23118: a registration acknowledged after the owner's later "down" put
// "up" back in the ledger, and its re-assertion undid the down).
func TestLedgerKeepsTheNewestWordWhateverTheAckOrder(t *testing.T) {
	ver := func(seq uint64) wire.WriteVersion { return wire.WriteVersion{Epoch: 3, Seq: seq, Node: 3} }
	const name = "svc/x"
	id := table.ID(name)
	reg := Request{Kind: wire.ReportRegister, Name: name, EntityKind: wire.KindService}
	down := Request{Kind: wire.ReportDown, Name: name}
	raise := Request{Kind: wire.ReportRaise, Name: name, Cause: "c", Severity: wire.SevMajor}
	clr := Request{Kind: wire.ReportClear, Name: name, Cause: "c"}
	unreg := Request{Kind: wire.ReportUnregister, Name: name}
	type ack struct {
		r *Request
		v wire.WriteVersion
	}
	run := func(earlier bool, acks ...ack) *ledger {
		var l ledger
		l.init()
		if earlier {
			l.record(&reg, ver(19)) // registered in an earlier write
		}
		for _, a := range acks {
			l.record(a.r, a.v)
		}
		return &l
	}

	for _, earlier := range []bool{false, true} {
		for _, acks := range [][]ack{
			{{&reg, ver(31)}, {&down, ver(32)}},
			{{&down, ver(32)}, {&reg, ver(31)}},
		} {
			l := run(earlier, acks...)
			got, ok := l.items[ledgerKey{id, ""}]
			require.True(t, ok)
			require.Equal(t, wire.ReportRegister, got.Kind)
			require.Equal(t, ver(31), got.Ver)
			require.Equal(t, wire.StateDown, got.State, "earlier %v, acks %v", earlier, acks)
			require.Equal(t, ver(32), got.StateVer)
			_, ok = l.items[ledgerKey{id, stateKey}]
			require.False(t, ok, "the state is the registration's")
		}
	}

	// An alarm: the clear is newer than the raise.
	l := run(true, ack{&clr, ver(12)}, ack{&raise, ver(10)})
	require.Equal(t, wire.ReportClear, l.items[ledgerKey{id, "c"}].Kind)
	require.Equal(t, ver(12), l.items[ledgerKey{id, "c"}].Ver)

	// Unregistered, then registered again: the unregister's acknowledgement
	// last keeps the new registration and drops the alarm it superseded.
	l = run(false, ack{&raise, ver(10)}, ack{&reg, ver(30)}, ack{&unreg, ver(20)})
	got := l.items[ledgerKey{id, ""}]
	require.Equal(t, wire.ReportRegister, got.Kind)
	require.Equal(t, ver(30), got.Ver)
	_, ok := l.items[ledgerKey{id, "c"}]
	require.False(t, ok, "the alarm the unregister removed")

	// The same after an earlier unregister and registration: the newer
	// unregister takes the older one's place, before the registration.
	l = run(false, ack{&unreg, ver(5)}, ack{&reg, ver(8)}, ack{&raise, ver(10)}, ack{&reg, ver(30)}, ack{&unreg, ver(20)})
	require.Equal(t, []ledgerKey{{id, tombKey}, {id, ""}}, l.order)
	require.Equal(t, ver(20), l.items[ledgerKey{id, tombKey}].Ver)
	require.Equal(t, ver(30), l.items[ledgerKey{id, ""}].Ver)

	// A registration older than an unregister held changes nothing.
	l = run(false, ack{&unreg, ver(40)}, ack{&reg, ver(30)})
	require.Equal(t, wire.ReportUnregister, l.items[ledgerKey{id, ""}].Kind)
	require.Equal(t, 1, l.ledgerLen())
}

// The ledger holds at most the entity's alarm limit of this node's raises
// on one entity (issue 9's flood), forgetting first those the table shows
// cleared since, by anyone: node 1 raised cause-2, node 2 cleared it, node
// 1 raised cause-1 in its place (one alarm allowed). By severity alone the
// ledger forgot cause-1, the less severe, and kept the cleared cause-2;
// after the next master change no table showed cause-1 (netsim chaos
// -maxalarms 1, seed 878 of two nodes).
func TestLedgerBoundForgetsWhatWasClearedFirst(t *testing.T) {
	ver := func(seq uint64) wire.WriteVersion { return wire.WriteVersion{Epoch: 1, Seq: seq, Node: 1} }
	const name = "svc/s0"
	id := table.ID(name)
	tab := table.New(1)
	apply := func(c wire.Change) {
		c.Entity, c.Ver = id, ver(c.Seq)
		require.NoError(t, tab.Apply(&c))
	}
	apply(wire.Change{Seq: 1, Kind: wire.ChangeRegister, EntityKind: wire.KindService, State: wire.StateUp, Owner: 3, Name: []byte(name)})
	apply(wire.Change{Seq: 2, Kind: wire.ChangeRaise, Severity: wire.SevCritical, Cause: []byte("cause-2"), By: 1})
	apply(wire.Change{Seq: 3, Kind: wire.ChangeClear, Cause: []byte("cause-2"), By: 2})
	apply(wire.Change{Seq: 4, Kind: wire.ChangeRaise, Severity: wire.SevMinor, Cause: []byte("cause-1"), By: 1})

	var l ledger
	l.init()
	l.record(&Request{Kind: wire.ReportRaise, Name: name, Cause: "cause-2", Severity: wire.SevCritical}, ver(2))
	l.record(&Request{Kind: wire.ReportRaise, Name: name, Cause: "cause-1", Severity: wire.SevMinor}, ver(4))
	require.Equal(t, 1, l.boundAlarms(id, "cause-1", tab))
	require.Equal(t, 1, l.ledgerLen())
	_, kept := l.items[ledgerKey{id, "cause-1"}]
	require.True(t, kept, "the raise the table shows is kept")

	// Beyond the raises cleared since, the least severe goes, as the
	// master displaces it.
	l.record(&Request{Kind: wire.ReportRaise, Name: name, Cause: "cause-0", Severity: wire.SevMajor}, ver(5))
	apply(wire.Change{Seq: 5, Kind: wire.ChangeClear, Cause: []byte("cause-1"), By: 1})
	apply(wire.Change{Seq: 6, Kind: wire.ChangeRaise, Severity: wire.SevMajor, Cause: []byte("cause-0"), By: 1})
	l.record(&Request{Kind: wire.ReportRaise, Name: name, Cause: "cause-9", Severity: wire.SevCritical}, ver(7))
	require.Equal(t, 2, l.boundAlarms(id, "cause-9", tab), "cause-1, cleared since; then cause-0, the least severe")
	_, kept = l.items[ledgerKey{id, "cause-9"}]
	require.True(t, kept)
	require.Equal(t, 1, l.ledgerLen())
}

// The raise just acknowledged is never the one the bound forgets, even
// when the table has not yet applied the update that carried it: node 5's
// warning displaced its own critical raise (one alarm allowed), and the
// acknowledgement came first; by severity the warning went, and no table
// showed it after the next master change (netsim chaos -maxalarms 1, seed
// 7462 of five nodes).
func TestLedgerBoundKeepsTheRaiseJustAcknowledged(t *testing.T) {
	ver := func(seq uint64) wire.WriteVersion { return wire.WriteVersion{Epoch: 1, Seq: seq, Node: 2} }
	const name = "svc/s2"
	id := table.ID(name)
	tab := table.New(1)
	for _, c := range []wire.Change{
		{Seq: 1, Kind: wire.ChangeRegister, EntityKind: wire.KindService, State: wire.StateUp, Owner: 3, Name: []byte(name)},
		{Seq: 2, Kind: wire.ChangeRaise, Severity: wire.SevCritical, Cause: []byte("cause-1"), By: 5},
	} {
		c.Entity, c.Ver = id, ver(c.Seq)
		require.NoError(t, tab.Apply(&c))
	}
	var l ledger
	l.init()
	l.record(&Request{Kind: wire.ReportRaise, Name: name, Cause: "cause-1", Severity: wire.SevCritical}, ver(2))
	l.record(&Request{Kind: wire.ReportRaise, Name: name, Cause: "cause-2", Severity: wire.SevWarning}, ver(4))
	require.Equal(t, 1, l.boundAlarms(id, "cause-2", tab))
	_, kept := l.items[ledgerKey{id, "cause-2"}]
	require.True(t, kept, "the raise just acknowledged is kept")
}

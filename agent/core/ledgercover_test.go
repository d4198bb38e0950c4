package core

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/wire"
)

// The ledger forgets the raises and registrations its own table shows
// superseded by another node's clear or unregister, and keeps its own
// clears: netsim/testdata/tombstones.txt is the whole story (a raise
// re-asserted to a master whose table had forgotten the clear's
// tombstone came back in every table).
func TestLedgerForgetsWhatItsTableSuperseded(t *testing.T) {
	f := registeredFixture(t, 6)
	f.record(10, "c1", wire.SevMajor)
	f.record(11, "c2", wire.SevMajor)
	f.l.record(&Request{Kind: wire.ReportClear, Name: f.name, Cause: "c3"}, boundVer(12))

	f.l.clearApplied(f.id, []byte("c1"), boundVer(20))
	require.False(t, f.holds("c1"), "cleared under a newer version")
	f.l.clearApplied(f.id, []byte("c2"), boundVer(9))
	require.True(t, f.holds("c2"), "an older clear changes nothing")
	f.l.clearApplied(f.id, []byte("c3"), boundVer(30))
	require.True(t, f.holds("c3"), "this node's own clear is its word")
	f.l.clearApplied(f.id+1, []byte("c2"), boundVer(40))
	require.True(t, f.holds("c2"), "another entity's alarm")

	f.l.unregisterApplied(f.id, boundVer(5))
	require.True(t, f.holds(""), "an unregister older than the registration")
	require.True(t, f.holds("c2"))
	f.l.unregisterApplied(f.id, boundVer(50))
	require.False(t, f.holds(""), "registration")
	require.False(t, f.holds("c2"))
	require.True(t, f.holds("c3"), "this node's own clear is its word")
	require.Equal(t, 1, f.l.ledgerLen())
}

// What a snapshot's table shows superseded goes too (a node that was cut
// off when the clear was decided takes the new master's table whole).
func TestLedgerForgetsWhatASnapshotShowsSuperseded(t *testing.T) {
	f := registeredFixture(t, 1)
	f.raise(2, "c1", wire.SevMajor)
	f.record(2, "c1", wire.SevMajor)
	f.record(4, "c2", wire.SevMajor) // not in the table yet
	f.clear(3, "c1")
	f.l.forgetCovered(f.tab)
	require.False(t, f.holds("c1"), "the table shows it cleared since")
	require.True(t, f.holds("c2"), "raised after the clear the table holds")
	require.True(t, f.holds(""))

	f.apply(wire.Change{Seq: 9, Kind: wire.ChangeUnregister})
	f.l.forgetCovered(f.tab)
	require.Zero(t, f.l.ledgerLen(), "unregistered since")

	// Registered again by another node since: a new life, born of the
	// unregister, which the earlier life's raise does not survive.
	f.record(8, "c2", wire.SevMajor)
	f.apply(wire.Change{Seq: 10, Kind: wire.ChangeRegister, EntityKind: wire.KindService, State: wire.StateUp, Owner: 4, Name: []byte(f.name)})
	f.l.forgetCovered(f.tab)
	require.False(t, f.holds("c2"), "a raise on the entity's earlier life")
}

// registeredFixture: a boundFixture whose ledger holds svc/s0's
// registration, acknowledged at seq.
func registeredFixture(t *testing.T, seq uint64) *boundFixture {
	f := newBoundFixture(t, "svc/s0")
	f.l.record(&Request{Kind: wire.ReportRegister, Name: f.name, EntityKind: wire.KindService}, boundVer(seq))
	return f
}

// clearApplied runs for every clear every node applies: it allocates
// nothing, with the ledger holding the alarm or not.
func TestLedgerClearAppliedAllocs(t *testing.T) {
	f := newBoundFixture(t, "svc/s0")
	f.record(10, "c1", wire.SevMajor)
	cause, other := []byte("c1"), []byte("c9")
	require.Zero(t, testing.AllocsPerRun(200, func() {
		f.l.clearApplied(f.id, cause, boundVer(5))
		f.l.clearApplied(f.id, other, boundVer(20))
	}))
}

// An acknowledgement that comes after the update that superseded its
// write (the clear applied here first) leaves nothing in the ledger; only
// the acknowledged write's own item is looked at.
func TestLedgerForgetsAWriteAcknowledgedAfterItsSupersession(t *testing.T) {
	f := registeredFixture(t, 1)
	f.raise(2, "c1", wire.SevMajor)
	f.clear(3, "c1") // applied here before the raise's acknowledgement
	raise := Request{Kind: wire.ReportRaise, Name: f.name, Cause: "c1", Severity: wire.SevMajor}
	f.l.record(&raise, boundVer(2))
	f.l.forgetCoveredAck(f.tab, &raise)
	require.False(t, f.holds("c1"))

	clr := Request{Kind: wire.ReportClear, Name: f.name, Cause: "c1"}
	f.l.record(&clr, boundVer(3))
	f.l.forgetCoveredAck(f.tab, &clr)
	require.True(t, f.holds("c1"), "this node's own clear is its word")

	f.apply(wire.Change{Seq: 5, Kind: wire.ChangeUnregister})
	reg := Request{Kind: wire.ReportRegister, Name: f.name, EntityKind: wire.KindService}
	f.l.record(&reg, boundVer(4))
	f.l.forgetCoveredAck(f.tab, &reg)
	require.False(t, f.holds(""), "unregistered since")
	require.True(t, f.holds("c1"))
}

// The per-entity count that lets every node skip another node's
// unregister follows the items through puts and deletions.
func TestLedgerCountsItemsPerEntity(t *testing.T) {
	f := registeredFixture(t, 1)
	f.record(2, "c1", wire.SevMajor)
	f.record(3, "c2", wire.SevMajor)
	require.Equal(t, map[uint64]int{f.id: 3}, f.l.ents)
	f.l.clearApplied(f.id, []byte("c1"), boundVer(4))
	require.Equal(t, map[uint64]int{f.id: 2}, f.l.ents)
	f.l.unregisterApplied(f.id+1, boundVer(9))
	require.Equal(t, 2, f.l.ledgerLen(), "another entity's unregister")
	f.l.unregisterApplied(f.id, boundVer(9))
	require.Empty(t, f.l.ents)
	require.Zero(t, f.l.ledgerLen())
}

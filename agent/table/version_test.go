package table_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

func v(e, s uint64) wire.WriteVersion { return wire.WriteVersion{Epoch: e, Seq: s, Node: 1} }

// Versions and tombstones are kept per entity and alarm, survive a snapshot
// (with the digest), and a clear or unregister of what is absent still
// leaves its tombstone.
func TestVersionsAndTombstones(t *testing.T) {
	tb := table.New(4)
	id := table.ID("svc/a")
	apply := func(c wire.Change) { require.NoError(t, tb.Apply(&c)) }
	apply(wire.Change{Seq: 1, Kind: wire.ChangeUnregister, Entity: id, Ver: v(1, 1)})
	apply(wire.Change{Seq: 1, Kind: wire.ChangeRegister, Entity: id, Name: []byte("svc/a"), EntityKind: wire.KindService, Owner: 2, State: wire.StateUp, Ver: v(1, 1)})
	apply(wire.Change{Seq: 2, Kind: wire.ChangeRaise, Entity: id, Cause: []byte("x"), Severity: wire.SevMajor, Ver: v(1, 2)})
	apply(wire.Change{Seq: 3, Kind: wire.ChangeRegister, Entity: id, Name: []byte("svc/a"), EntityKind: wire.KindService, Owner: 2, State: wire.StateUp, Ver: v(1, 3)})
	apply(wire.Change{Seq: 4, Kind: wire.ChangeClear, Entity: id, Cause: []byte("x"), Ver: v(1, 4)})
	apply(wire.Change{Seq: 5, Kind: wire.ChangeClear, Entity: table.ID("svc/gone"), Cause: []byte("y"), Ver: v(1, 5)})
	apply(wire.Change{Seq: 6, Kind: wire.ChangeUnregister, Entity: table.ID("svc/gone"), Ver: v(1, 6)})

	ver, born, ok := tb.EntityVersion(id)
	require.True(t, ok)
	require.Equal(t, v(1, 3), ver)
	require.Equal(t, v(1, 1), born)
	av, ok := tb.AlarmVersion(id, "x")
	require.False(t, ok)
	require.Equal(t, v(1, 4), av, "the clear's tombstone")
	gv, _, ok := tb.EntityVersion(table.ID("svc/gone"))
	require.False(t, ok)
	require.Equal(t, v(1, 6), gv)

	other := table.New(4)
	for _, c := range tb.SnapshotChanges(nil) {
		require.NoError(t, other.Apply(&c))
	}
	require.Equal(t, tb.Digest(), other.Digest())
	ver, born, _ = other.EntityVersion(id)
	require.Equal(t, v(1, 3), ver)
	require.Equal(t, v(1, 1), born)
	av, _ = other.AlarmVersion(id, "x")
	require.Equal(t, v(1, 4), av)
	gv, _, _ = other.EntityVersion(table.ID("svc/gone"))
	require.Equal(t, v(1, 6), gv)

	// A raise after the clear removes the tombstone and carries its version.
	apply(wire.Change{Seq: 7, Kind: wire.ChangeRaise, Entity: id, Cause: []byte("x"), Severity: wire.SevMinor, Ver: v(2, 7)})
	av, ok = tb.AlarmVersion(id, "x")
	require.True(t, ok)
	require.Equal(t, v(2, 7), av)
	require.NotEqual(t, tb.Digest(), other.Digest())
}

// Tombstones are bounded: the oldest are forgotten first.
func TestTombstonesBounded(t *testing.T) {
	tb := table.New(4)
	for i := 0; i < table.MaxTombstones+10; i++ {
		c := wire.Change{Seq: uint64(i + 1), Kind: wire.ChangeUnregister, Entity: uint64(i + 1), Ver: v(1, uint64(i+1))}
		require.NoError(t, tb.Apply(&c))
	}
	first, _, _ := tb.EntityVersion(1)
	require.True(t, first.IsZero(), "the oldest tombstone is forgotten")
	last, _, _ := tb.EntityVersion(uint64(table.MaxTombstones + 10))
	require.Equal(t, v(1, uint64(table.MaxTombstones+10)), last)
	require.Len(t, tb.SnapshotChanges(nil), table.MaxTombstones)
}

// StateVer is the version of the owner's latest word on the state: a
// registration or a change of state the owner caused, never another's mark
// (the owner's word re-asserted on its return overrules those), never
// backwards, and carried by a snapshot.
func TestStateVerIsTheOwnersLatestWord(t *testing.T) {
	v := func(seq uint64) wire.WriteVersion { return wire.WriteVersion{Epoch: 2, Seq: seq, Node: 1} }
	tb := table.New(8)
	const owner, other = wire.NodeID(3), wire.NodeID(1)
	id := table.ID("svc/a")
	apply := func(c wire.Change) {
		t.Helper()
		c.Entity, c.Seq = id, tb.Seq()+1
		require.NoError(t, tb.Apply(&c))
	}
	stateVer := func() wire.WriteVersion {
		e, ok := tb.Get(id)
		require.True(t, ok)
		return e.StateVer
	}
	apply(wire.Change{Kind: wire.ChangeRegister, Name: []byte("svc/a"), EntityKind: wire.KindService, Owner: owner, By: owner, State: wire.StateUp, Ver: v(10)})
	require.Equal(t, v(10), stateVer())
	apply(wire.Change{Kind: wire.ChangeState, State: wire.StateDown, By: owner, Ver: v(12)})
	require.Equal(t, v(12), stateVer(), "the owner's down")
	apply(wire.Change{Kind: wire.ChangeState, State: wire.StateUp, By: other, Ver: v(14)})
	require.Equal(t, v(12), stateVer(), "another's mark is not the owner's word")
	apply(wire.Change{Kind: wire.ChangeState, State: wire.StateDown, By: owner, Ver: v(11)})
	require.Equal(t, v(12), stateVer(), "never backwards")

	rebuilt := table.New(8)
	for _, c := range tb.SnapshotChanges(nil) {
		require.NoError(t, rebuilt.Apply(&c))
	}
	e, ok := rebuilt.Get(id)
	require.True(t, ok)
	require.Equal(t, v(12), e.StateVer)
	require.Equal(t, v(10), e.Ver)
	require.Equal(t, wire.StateDown, e.State)
	require.Equal(t, tb.Digest(), rebuilt.Digest())
}

// OwnerState is what the owner's latest word said, whatever others marked
// since; a snapshot carries it (the rebuilt table has the same State,
// OwnerState, StateVer and digest).
func TestOwnerStateIsWhatTheOwnersLatestWordSaid(t *testing.T) {
	v := func(seq uint64) wire.WriteVersion { return wire.WriteVersion{Epoch: 2, Seq: seq, Node: 1} }
	const owner, master = wire.NodeID(3), wire.NodeID(1)
	for _, reg := range []bool{true, false} { // the word: the registration itself, or a later up
		tb := table.New(8)
		id := table.ID("svc/a")
		apply := func(c wire.Change) {
			t.Helper()
			c.Entity, c.Seq = id, tb.Seq()+1
			require.NoError(t, tb.Apply(&c))
		}
		get := func(tb *table.Table) *table.Entity {
			e, ok := tb.Get(id)
			require.True(t, ok)
			return e
		}
		apply(wire.Change{Kind: wire.ChangeRegister, Name: []byte("svc/a"), EntityKind: wire.KindService, Owner: owner, By: owner, State: wire.StateUp, Ver: v(10)})
		if !reg {
			apply(wire.Change{Kind: wire.ChangeState, State: wire.StateDown, By: owner, Ver: v(12)})
			apply(wire.Change{Kind: wire.ChangeState, State: wire.StateUp, By: owner, Ver: v(13)})
		}
		require.Equal(t, wire.StateUp, get(tb).OwnerState)
		// The membership's down of the unreachable owner's entities.
		apply(wire.Change{Kind: wire.ChangeState, State: wire.StateDown, By: master, Ver: v(14)})
		e := get(tb)
		require.Equal(t, wire.StateDown, e.State)
		require.Equal(t, wire.StateUp, e.OwnerState, "another's mark is not the owner's word")
		// An older word of the owner's, applied late: not its latest.
		apply(wire.Change{Kind: wire.ChangeState, State: wire.StateDown, By: owner, Ver: v(9)})
		require.Equal(t, wire.StateUp, get(tb).OwnerState, "never backwards")
		apply(wire.Change{Kind: wire.ChangeState, State: wire.StateDown, By: master, Ver: v(15)})

		rebuilt := table.New(8)
		for _, c := range tb.SnapshotChanges(nil) {
			require.NoError(t, rebuilt.Apply(&c))
		}
		r := get(rebuilt)
		require.Equal(t, wire.StateDown, r.State)
		require.Equal(t, wire.StateUp, r.OwnerState)
		require.Equal(t, get(tb).StateVer, r.StateVer)
		require.Equal(t, v(10), r.Ver)
		require.Equal(t, tb.Digest(), rebuilt.Digest(), "registration is the word: %v", reg)
	}
}

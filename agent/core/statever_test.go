package core_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// A re-asserted word on an entity's state never overrules the owner's later
// word the table holds: the owner's registration, re-asserted to a new
// master with the state it was acknowledged with (up), reached that master
// after the owner's down, acknowledged by it, and put "up" back on every
// node (netsim chaos seed 55423: the re-assertion of an owner's
// registration after a split brain healed, its down 200 µs before).
func TestReassertedStateNeverOverrulesTheOwnersLaterWord(t *testing.T) {
	p := formedPair(t)
	ep := p.a.Role().Epoch
	const name = "svc/x"
	id := table.ID(name)
	submit := func(r core.Request) core.Result {
		t.Helper()
		rid := p.a.Submit(p.now, r)
		p.run(5 * time.Millisecond)
		res := resultsOf(p, 1, rid)
		require.Contains(t, res, rid, "%+v answered", r)
		return res[rid]
	}
	state := func() wire.State {
		t.Helper()
		ea, ok := p.a.Table().Get(id)
		require.True(t, ok)
		eb, ok := p.b.Table().Get(id)
		require.True(t, ok)
		require.Equal(t, ea.State, eb.State, "the nodes agree")
		require.Equal(t, ea.StateVer, eb.StateVer, "the nodes agree")
		return ea.State
	}

	reg := submit(core.Request{Kind: wire.ReportRegister, Name: name, EntityKind: wire.KindService})
	require.NoError(t, reg.Err)
	down := submit(core.Request{Kind: wire.ReportDown, Name: name})
	require.NoError(t, down.Err)
	require.Equal(t, wire.StateDown, state())

	// The registration's re-assertion, with the state it was acknowledged
	// with, arrives after the down: there, and the down stands.
	stale := submit(core.Request{Kind: wire.ReportRegister, Name: name, EntityKind: wire.KindService,
		Ver: reg.Ver, State: wire.StateUp, StateVer: reg.Ver})
	require.NoError(t, stale.Err)
	require.Equal(t, wire.StateDown, state(), "a re-asserted registration undid the owner's later down")

	// An owner's up, re-asserted with a version older than the down:
	// superseded (answered without a version), not applied.
	old := submit(core.Request{Kind: wire.ReportUp, Name: name, Ver: reg.Ver})
	require.NoError(t, old.Err)
	require.True(t, old.Ver.IsZero(), "superseded: %+v", old)
	require.Equal(t, wire.StateDown, state(), "a re-asserted up older than the down undid it")

	// The owner's later word, re-asserted (acknowledged by another master
	// of this epoch, the other side of a healed partition): applied.
	later := wire.WriteVersion{Epoch: ep, Seq: down.Ver.Seq + 100, Node: 7}
	newer := submit(core.Request{Kind: wire.ReportRegister, Name: name, EntityKind: wire.KindService,
		Ver: reg.Ver, State: wire.StateUp, StateVer: later})
	require.NoError(t, newer.Err)
	require.Equal(t, wire.StateUp, state(), "the owner's newer word, re-asserted, is the table's")
	e, _ := p.a.Table().Get(id)
	require.Equal(t, later, e.StateVer, "applied with the version it was acknowledged with")
	// ... so the older down, re-asserted again, is superseded.
	again := submit(core.Request{Kind: wire.ReportDown, Name: name, Ver: down.Ver})
	require.True(t, again.Ver.IsZero(), "superseded: %+v", again)
	require.Equal(t, wire.StateUp, state())
	e, _ = p.a.Table().Get(id)
	stateVer := e.StateVer

	// A snapshot carries the state's version: a table rebuilt from it
	// orders the next re-assertion the same way.
	rebuilt := table.New(p.a.Table().MaxAlarms())
	for _, c := range p.a.Table().SnapshotChanges(nil) {
		require.NoError(t, rebuilt.Apply(&c))
	}
	re, ok := rebuilt.Get(id)
	require.True(t, ok)
	require.Equal(t, stateVer, re.StateVer)
	require.Equal(t, p.a.Table().Digest(), rebuilt.Digest())
}

package core_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/wire"
)

// A follower that asked for a snapshot does not ask again while the
// snapshot's chunks keep arriving (each request makes the master build,
// seal and send the whole table again on its real-time loop, and the
// follower drop what it had gathered for the newer one); it asks again
// once they stop for an interval (a chunk was lost), and the snapshot it
// then gets rebuilds the master's table.
func TestSnapshotNotAskedAgainWhileArriving(t *testing.T) {
	p := newLoadedPair(t, 1024)
	const interval = core.DefaultInterval

	core.WantSnapshot(p.b)
	// Time passes; the two hear each other's heartbeats (and nothing
	// else: the snapshots are the test's to deliver).
	tickB := func(d time.Duration) {
		p.now = p.now.Add(d)
		p.a.Tick(p.now)
		p.b.Tick(p.now)
		for _, hop := range [][2]*core.Node{{p.a, p.b}, {p.b, p.a}} {
			for _, pk := range hop[0].Ready().Packets {
				if wire.PeekType(pk.Data) == wire.TypeHeartbeat {
					_, err := hop[1].StepHeartbeat(p.now, wire.NetA, pk.Data)
					require.NoError(t, err)
				}
			}
		}
	}
	tickB(interval)
	asked := p.b.Stats().NacksSent
	require.Positive(t, asked, "a follower that wants a snapshot asks for one")

	// The master's answer: the whole table in chunks.
	core.SendSnapshot(p.a, p.b.ID())
	var chunks [][]byte
	for _, pk := range p.a.Ready().Packets {
		if pk.Nets&1 != 0 && wire.PeekType(pk.Data) == wire.TypeSnapshot {
			chunks = append(chunks, append([]byte(nil), pk.Data...))
		}
	}
	require.Greater(t, len(chunks), 8, "a table of 1,024 entities takes many datagrams")
	require.Equal(t, wire.RoleMaster, p.a.Role().Role)

	// The chunks arrive slowly, one every half interval, for several
	// intervals: no new request meanwhile.
	half := len(chunks) / 2
	for _, c := range chunks[:half] {
		tickB(interval / 2)
		_, err := p.b.Step(p.now, wire.NetA, c)
		require.NoError(t, err)
		p.b.Ready()
	}
	require.Greater(t, time.Duration(half)*interval/2, 3*interval, "the test spans several intervals")
	require.Equal(t, asked, p.b.Stats().NacksSent, "asked again while the snapshot was arriving")
	require.True(t, p.b.Syncing(), "the snapshot is not complete yet")

	// The rest is lost: one interval after the last chunk, it asks again.
	tickB(interval / 2)
	require.Equal(t, asked, p.b.Stats().NacksSent, "asked again before an interval without a chunk")
	tickB(interval)
	require.Greater(t, p.b.Stats().NacksSent, asked, "the chunks stopped: it asks again")

	// The new answer arrives whole and rebuilds the master's table.
	core.SendSnapshot(p.a, p.b.ID())
	for _, pk := range p.a.Ready().Packets {
		if pk.Nets&1 != 0 && wire.PeekType(pk.Data) == wire.TypeSnapshot {
			_, err := p.b.Step(p.now, wire.NetA, pk.Data)
			require.NoError(t, err)
		}
	}
	p.b.Ready()
	require.False(t, p.b.Syncing())
	require.Equal(t, p.a.Table().Digest(), p.b.Table().Digest())
}

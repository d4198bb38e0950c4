package core_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/wire"
)

func heartbeatPkt(c *wire.Codec, h *wire.Header) ([]byte, error) {
	return c.AppendHeartbeat(nil, h, &wire.Heartbeat{Role: wire.RoleMember, Priority: 50, Eligible: true})
}

// A heartbeat is taken only from the heartbeat socket (StepHeartbeat), and
// nothing else from it: each socket has its own replay window, so a packet
// crossing to the other socket would be fresh to that window (a replayed
// change through the heartbeat port, a replayed heartbeat proving a dead
// peer alive through the group port). Both are dropped before the MAC.
func TestHeartbeatOnlyThroughHeartbeatSocket(t *testing.T) {
	x := core.New(core.Config{Node: 1, Cluster: 9, Key: []byte("k"), Priority: 100, Eligible: true}, t0)
	hb := forge(t, 2, 1, 1, heartbeatPkt)
	_, err := x.Step(t0, wire.NetA, hb)
	require.ErrorIs(t, err, wire.ErrWrongSocket)
	from, err := x.StepHeartbeat(t0, wire.NetA, hb)
	require.NoError(t, err)
	require.Equal(t, wire.NodeID(2), from)
	_, err = x.StepHeartbeat(t0, wire.NetA, hb)
	require.ErrorIs(t, err, wire.ErrReplay, "the heartbeat socket's own window")
	_, err = x.StepHeartbeat(t0, wire.NetA, forge(t, 2, 1, 2, snapshotRequest))
	require.ErrorIs(t, err, wire.ErrWrongSocket)
}

// The heartbeat socket is read when the loop wakes, so a heartbeat is
// stepped after packets its sender sent later. Overtaken by more than a
// replay window's width of them, it is still accepted (its own window),
// where a window shared with the group socket would refuse it as a replay.
func TestHeartbeatOvertakenByAWindowOfPackets(t *testing.T) {
	x := core.New(core.Config{Node: 1, Cluster: 9, Key: []byte("k"), Priority: 100, Eligible: true}, t0)
	_, err := x.StepHeartbeat(t0, wire.NetA, forge(t, 2, 1, 1, heartbeatPkt))
	require.NoError(t, err)
	now := t0.Add(time.Millisecond)
	const later = 3 * wire.ReplayWidth
	for i := range uint64(later) {
		_, err := x.Step(now, wire.NetA, forge(t, 2, 1, 100+i, snapshotRequest))
		require.NotErrorIs(t, err, wire.ErrReplay)
	}
	_, err = x.StepHeartbeat(now, wire.NetA, forge(t, 2, 1, 50, heartbeatPkt))
	require.NoError(t, err, "a heartbeat overtaken by %d later packets", later)
	_, err = x.Step(now, wire.NetA, forge(t, 2, 1, 60, snapshotRequest))
	require.ErrorIs(t, err, wire.ErrReplay, "the group socket's window still refuses what it has passed")
}

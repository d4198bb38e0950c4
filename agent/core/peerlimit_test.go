package core_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/wire"
)

// A node hears at most wire.MaxPeers other nodes: a packet from one more is
// dropped with ErrPeerLimit (the shell logs it), and the known peers are
// still heard.
func TestPeerLimit(t *testing.T) {
	cfg := func(id wire.NodeID) core.Config {
		return core.Config{Node: id, Cluster: 9, Key: []byte("k"), Priority: 100, Eligible: true}
	}
	x := core.New(cfg(1000), t0)
	heartbeat := func(id wire.NodeID) []byte {
		n := core.New(cfg(id), t0)
		// A new node listens for its start window (a duplicate ID) before
		// it sends: tick until its first heartbeat.
		for now := t0; now.Before(t0.Add(time.Second)); now = now.Add(time.Millisecond) {
			n.Tick(now)
			for _, pk := range n.Ready().Packets {
				if pk.To == 0 {
					return append([]byte(nil), pk.Data...)
				}
			}
		}
		t.Fatalf("node %d sent no multicast", id)
		return nil
	}
	for id := wire.NodeID(1); id <= wire.MaxPeers; id++ {
		from, err := stepAny(x, t0, wire.NetA, heartbeat(id))
		require.NoError(t, err, "peer %d", id)
		require.Equal(t, id, from)
	}
	from, err := stepAny(x, t0, wire.NetA, heartbeat(wire.MaxPeers+1))
	require.ErrorIs(t, err, core.ErrPeerLimit)
	require.Equal(t, wire.NodeID(wire.MaxPeers+1), from)
	_, err = stepAny(x, t0, wire.NetB, heartbeat(1))
	require.NoError(t, err, "a known peer is still heard")
}

package netsim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/wire"
)

// TestFailoverOneSnapshot: a new master sends its table to the group once
// with its claim, and the followers' asks for the whole table that follow
// are left to it (core.groupSnapshot), where before it built and sent one
// snapshot per follower on request. A hundred failovers of five nodes,
// with the simulator's delays (which overtake a coordinator now and then,
// so a follower gets the snapshot and the old master's down before it
// follows: core.takeEarly): every survivor follows the vice, and the
// checker's invariants (the crash seen within its bound everywhere, the
// tables equal) hold throughout.
func TestFailoverOneSnapshot(t *testing.T) {
	const seeds, nodes = 100, 5
	var snapshots, covered uint64
	for seed := uint64(1); seed <= seeds; seed++ {
		s := New(Options{Seed: seed, Nodes: nodes})
		c := NewChecker(s)
		require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step), "seed %d", seed)
		var master wire.NodeID
		for _, n := range s.Nodes {
			if r := n.Core.Role(); r.Role == wire.RoleMaster {
				master = n.ID
			}
		}
		require.NotZero(t, master, "seed %d: no master", seed)
		vice := s.Node(master).Core.Role().Vice
		require.NotZero(t, vice, "seed %d: no vice", seed)
		before := s.Node(vice).Core.Stats()
		s.Crash(master)
		require.NoError(t, s.RunUntil(s.Now.Add(300*time.Millisecond), c.Step), "seed %d", seed)
		require.NoError(t, c.CheckHealed(vice), "seed %d", seed)
		after := s.Node(vice).Core.Stats()
		snapshots += after.SnapshotsSent - before.SnapshotsSent
		covered += after.NacksCoveredByGroup - before.NacksCoveredByGroup
	}
	// One per failover, and a few more for a follower that missed a
	// chunk or followed late; one per follower (4) before.
	require.LessOrEqual(t, snapshots, uint64(seeds*3/2), "snapshots sent by the new masters in %d failovers", seeds)
	require.GreaterOrEqual(t, covered, uint64(seeds*(nodes-2)/2), "followers' asks answered by the group's snapshot")
	t.Logf("%d failovers of %d nodes: %d snapshots sent by the new masters, %d asks covered by the group's", seeds, nodes, snapshots, covered)
}

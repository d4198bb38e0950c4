package netsim

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/wire"
)

// TestEpochReserve: the first epoch a node reaches is saved first with the
// reserve (core.DefaultEpochReserve) past it, so the failovers after it
// ask for no synced save (no Ready with MustSync) until the cluster's
// epoch passes the reserve; then one save covers the next reserve. A
// restarted node starts at its ceiling, follows the reigning master below
// it, and, once heir, claims above it. Four nodes, four failovers, the
// crashed master restarted after each; reserves 1 (every new epoch saved
// first, as before the reserve), 2 and the default.
func TestEpochReserve(t *testing.T) {
	for _, reserve := range []uint64{1, 2, 0} {
		t.Run(fmt.Sprint(reserve), func(t *testing.T) {
			s := New(Options{Seed: 5, Nodes: 4, EpochReserve: reserve, Trace: true})
			c := NewChecker(s)
			synced := map[wire.NodeID]int{} // Readies with MustSync, per node
			s.OnReady = chainReady(s.OnReady, func(n *Node, rd *core.Ready) {
				if rd.MustSync {
					synced[n.ID]++
				}
			})
			r := reserve
			if r == 0 {
				r = core.DefaultEpochReserve
			}
			require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
			m := masterOf(s)
			require.NotZero(t, m)
			epoch := s.Node(m).Core.Role().Epoch
			for _, n := range s.Nodes {
				require.Equal(t, epoch+r-1, n.persist.Epoch, "node %d: its first epoch saved with the reserve past it", n.ID)
			}

			// Failovers: the master crashes and comes back each time.
			saves := 0
			restarted := map[wire.NodeID]bool{}
			quiet := 0 // failovers to a heir that never restarted, in which no one saved
			for i := 0; i < 4; i++ {
				before := saves
				ceil := map[wire.NodeID]uint64{}
				for _, n := range s.Nodes {
					ceil[n.ID] = n.persist.Epoch
				}
				clear(synced)
				s.Crash(m)
				require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
				next := masterOf(s)
				require.NotZero(t, next, s.Trace(40))
				e := s.Node(next).Core.Role().Epoch
				require.Greater(t, e, epoch, "a new reign")
				t.Logf("failover %d: master %d -> %d, epoch %d -> %d", i, m, next, epoch, e)
				for _, n := range s.Nodes {
					if n.ID == m {
						continue
					}
					if e <= ceil[n.ID] {
						require.Zero(t, synced[n.ID], "node %d: a synced save at epoch %d, within its reserve up to %d\n%s", n.ID, e, ceil[n.ID], s.Trace(40))
						require.Equal(t, ceil[n.ID], n.persist.Epoch, "node %d", n.ID)
						continue
					}
					saves++
					require.NotZero(t, synced[n.ID], "node %d: epoch %d past its reserve (%d), saved first", n.ID, e, ceil[n.ID])
					require.Equal(t, e+r-1, n.persist.Epoch, "node %d: the new epoch and its reserve on disk", n.ID)
				}
				if reserve == 0 && !restarted[next] {
					// Its floor is the first epoch's reserve, as every
					// survivor's ceiling: within it.
					require.Equal(t, before, saves, "failover %d: a save, to a heir that never restarted", i)
					quiet++
				}
				s.Restart(m)
				restarted[m] = true
				require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
				// Restarted at its ceiling, it follows the master below it.
				rm := s.Node(m).Core.Role()
				require.Equal(t, next, rm.Master, "node %d follows the reigning master", m)
				require.Equal(t, e, rm.Epoch)
				m, epoch = next, e
			}
			switch reserve {
			case 1:
				require.Equal(t, 4*3, saves, "every survivor saves every new epoch")
			case 0:
				// A restarted heir claims above its ceiling (the jump of
				// DefaultEpochReserve's comment), and that epoch is past
				// the others' reserve: they save it, and its reserve.
				require.NotZero(t, quiet)
			default:
				require.NotZero(t, saves)
				require.Less(t, saves, 4*3, "some failovers within the reserve")
			}
			require.NoError(t, c.Err())
		})
	}
}

// chainReady calls prev (if any), then f.
func chainReady(prev func(*Node, *core.Ready), f func(*Node, *core.Ready)) func(*Node, *core.Ready) {
	return func(n *Node, rd *core.Ready) {
		if prev != nil {
			prev(n, rd)
		}
		f(n, rd)
	}
}

// TestStopExactEpoch: a node stopped cleanly saves the exact highest epoch
// it held (core.Node.StopPersist), comes back with that as the floor of
// its claims and a new reserve on disk before it sends anything, and when
// it later takes over, the epoch goes up by one: no jump, and no node
// saves anything first. Three nodes: 1 (the best), 2, 3. Node 1 is
// stopped; node 2 reigns; node 1 comes back; node 3 (the vice) crashes, so
// node 1 is the heir; node 2 crashes.
func TestStopExactEpoch(t *testing.T) {
	s := New(Options{Seed: 8, Nodes: 3, Trace: true, Priority: func(id wire.NodeID) uint8 { return uint8(103 - id) }})
	c := NewChecker(s)
	synced := map[wire.NodeID]int{}
	s.OnReady = chainReady(s.OnReady, func(n *Node, rd *core.Ready) {
		if rd.MustSync {
			synced[n.ID]++
		}
	})
	run := func() { require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step), s.Trace(40)) }
	run()
	require.Equal(t, wire.NodeID(1), masterOf(s))
	first := s.Node(1).Core.Role().Epoch

	s.Stop(1)
	require.True(t, s.Node(1).persist.EpochExact)
	require.Equal(t, first, s.Node(1).persist.Epoch, "the exact epoch, not its reserve")
	run()
	require.Equal(t, wire.NodeID(2), masterOf(s))
	reign := s.Node(2).Core.Role().Epoch
	require.Equal(t, first+1, reign)

	clear(synced)
	s.Restart(1)
	run()
	require.Equal(t, 1, synced[1], "node 1 saved a new reserve, once, as it started")
	require.Equal(t, first+core.DefaultEpochReserve-1, s.Node(1).persist.Epoch)
	require.False(t, s.Node(1).persist.EpochExact)
	require.Equal(t, wire.NodeID(2), s.Node(1).Core.Role().Master)

	s.Crash(3)
	run()
	require.Equal(t, wire.NodeID(1), s.Node(2).Core.Role().Vice, "node 1 is the heir")
	s.Restart(3)
	run()

	clear(synced)
	s.Crash(2)
	run()
	require.Equal(t, wire.NodeID(1), masterOf(s))
	require.Equal(t, reign+1, s.Node(1).Core.Role().Epoch, "no jump: the floor was exact")
	require.Zero(t, synced[1], "the heir saved nothing first")
	require.Zero(t, synced[3], "the follower saved nothing first")
	require.NoError(t, c.Err())
}

// TestStopAfterFollowingOlderMaster: a clean stop saves an exact epoch only
// when the node knows it. A two-node cluster splits; the vice-master
// reigns alone at a newer epoch, crashes (its ceiling stays on disk), and,
// back after the heal, follows the old master at the older epoch. Stopped
// cleanly then, it must not write that older epoch as exact: its earlier
// life reigned above it, and after a restart it would claim that epoch
// again (claims-above-earlier-lives).
func TestStopAfterFollowingOlderMaster(t *testing.T) {
	s := New(Options{Seed: 3, Nodes: 2, Trace: true})
	c := NewChecker(s)
	run := func() { require.NoError(t, s.RunUntil(s.Now.Add(300*time.Millisecond), c.Step), s.Trace(40)) }
	run()
	require.Equal(t, wire.NodeID(1), masterOf(s))
	old := s.Node(1).Core.Role().Epoch

	s.CutLink(2, wire.NetA, true)
	s.CutLink(2, wire.NetB, true)
	run()
	split := s.Node(2).Core.Role()
	require.Equal(t, wire.NodeID(2), split.Master, "the vice-master reigns alone")
	require.Greater(t, split.Epoch, old)
	require.Equal(t, old, s.Node(1).Core.Role().Epoch, "the old master keeps its epoch")

	s.Crash(2)
	s.CutLink(2, wire.NetA, false)
	s.CutLink(2, wire.NetB, false)
	s.Restart(2)
	run()
	r := s.Node(2).Core.Role()
	require.Equal(t, wire.NodeID(1), r.Master)
	require.Equal(t, old, r.Epoch, "back, it follows the old master at the older epoch")

	s.Stop(2)
	require.False(t, s.Node(2).persist.EpochExact, "the epoch it reigned at in its earlier life is above what it held since")
	require.GreaterOrEqual(t, s.Node(2).persist.Epoch, split.Epoch)

	s.Restart(2)
	run()
	s.Crash(1)
	run()
	require.Equal(t, wire.NodeID(2), masterOf(s))
	require.Greater(t, s.Node(2).Core.Role().Epoch, split.Epoch, "a new reign above the one of its earlier life")
	require.NoError(t, c.Err())
}

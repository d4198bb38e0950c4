package netsim

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/wire"
)

const fenceTimeout = 500 * time.Millisecond

func enableFence(s *Sim) {
	for _, n := range s.Nodes {
		if n.Up {
			n.Core.SetFence(core.FenceConfig{Enabled: true, Timeout: fenceTimeout})
		}
	}
}

// fenced lists the up nodes whose core decided to self-fence.
func fenced(s *Sim) []wire.NodeID {
	var out []wire.NodeID
	for _, n := range s.Nodes {
		if n.Up && n.Core.Fence().Fenced {
			out = append(out, n.ID)
		}
	}
	return out
}

// noFenceOf checks, at every step, that none of ids is fenced.
func noFenceOf(s *Sim, c *Checker, ids ...wire.NodeID) func() error {
	return func() error {
		if err := c.Step(); err != nil {
			return err
		}
		for _, id := range ids {
			if n := s.Node(id); n.Up && n.Core.Fence().Fenced {
				return fmt.Errorf("node %d fenced at %v: %+v", id, s.Now.Sub(Epoch0), n.Core.Fence())
			}
		}
		return nil
	}
}

// A member of a formed three-node cluster that loses both networks fences
// itself once it has had no master for the fence timeout, not before; the
// two others never do; it unfences when it is back.
func TestFenceIsolatedMember(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		s := New(Options{Seed: seed, Nodes: 3, Trace: true})
		enableFence(s)
		c := NewChecker(s)
		require.NoError(t, s.RunUntil(s.Now.Add(300*time.Millisecond), noFenceOf(s, c, 1, 2, 3)))
		require.NotZero(t, s.Node(3).Core.Role().Master, "seed %d: formed", seed)
		require.True(t, s.Node(3).Core.Fence().Joined)

		// Isolate node 3 at a random moment of the heartbeat period.
		require.NoError(t, s.RunUntil(s.Now.Add(time.Duration(s.Rng.IntN(10))*time.Millisecond), c.Step))
		cutAt := s.Now
		s.CutLink(3, wire.NetA, true)
		s.CutLink(3, wire.NetB, true)
		// Before the fence timeout: no one.
		require.NoError(t, s.RunUntil(cutAt.Add(fenceTimeout), noFenceOf(s, c, 1, 2, 3)), "seed %d", seed)
		// Detection (50 ms) then the fence timeout: node 3 only.
		require.NoError(t, s.RunUntil(cutAt.Add(fenceTimeout+200*time.Millisecond), noFenceOf(s, c, 1, 2)))
		require.Equal(t, []wire.NodeID{3}, fenced(s), "seed %d\n%s", seed, s.Trace(30))
		f := s.Node(3).Core.Fence()
		require.True(t, f.Isolated)
		require.GreaterOrEqual(t, f.NoMasterFor, fenceTimeout)
		require.Contains(t, f.Reason(), "self-fence")

		s.CutLink(3, wire.NetA, false)
		s.CutLink(3, wire.NetB, false)
		require.NoError(t, s.RunUntil(s.Now.Add(500*time.Millisecond), c.Step))
		require.Empty(t, fenced(s), "seed %d: back in the cluster, unfenced", seed)
	}
}

// One network lost is not isolation: nobody fences.
func TestFenceOneNetworkLost(t *testing.T) {
	s := New(Options{Seed: 3, Nodes: 3})
	enableFence(s)
	c := NewChecker(s)
	require.NoError(t, s.RunUntil(s.Now.Add(300*time.Millisecond), c.Step))
	s.CutLink(3, wire.NetA, true)
	require.NoError(t, s.RunUntil(s.Now.Add(3*fenceTimeout), noFenceOf(s, c, 1, 2, 3)))
}

// A node cold-booted alone (its switch not up yet, or the others not
// powered) never joined: it keeps kicking however long it waits.
func TestFenceLoneColdBoot(t *testing.T) {
	s := New(Options{Seed: 9, Nodes: 3})
	s.Crash(2)
	s.Crash(3)
	enableFence(s)
	c := NewChecker(s)
	require.NoError(t, s.RunUntil(s.Now.Add(20*fenceTimeout), noFenceOf(s, c, 1)))
	f := s.Node(1).Core.Fence()
	require.False(t, f.Joined)
	require.True(t, f.Isolated)
	require.Zero(t, s.Node(1).Core.Role().Master, "no quorum: no master")
	require.Greater(t, f.NoMasterFor, fenceTimeout)
}

// The survivor of a two-node pair is master by the cluster's own rules
// (the vice-master takes over alone): it does not fence, whichever of the
// two died. Nor does the survivor of a pair after a power loss, which boots
// alone and never joins.
func TestFenceTwoNodeSurvivor(t *testing.T) {
	for _, victim := range []int{0, 1} { // 0: the master dies; 1: the vice-master
		s := New(Options{Seed: 11, Nodes: 2})
		enableFence(s)
		c := NewChecker(s)
		require.NoError(t, s.RunUntil(s.Now.Add(300*time.Millisecond), c.Step))
		r := s.Node(1).Core.Role()
		require.NotZero(t, r.Master)
		dead := r.Master
		if victim == 1 {
			dead = r.Vice
		}
		survivor := 3 - dead
		s.Crash(dead)
		require.NoError(t, s.RunUntil(s.Now.Add(10*fenceTimeout), noFenceOf(s, c, survivor)))
		require.Equal(t, survivor, s.Node(survivor).Core.Role().Master, "the survivor leads")

		// Power loss of both, one comes back alone.
		s.Crash(survivor)
		s.Restart(survivor)
		enableFence(s)
		require.NoError(t, s.RunUntil(s.Now.Add(10*fenceTimeout), noFenceOf(s, c, survivor)))
		require.False(t, s.Node(survivor).Core.Fence().Joined)
	}
}

// Self-fencing is off unless configured.
func TestFenceDisabled(t *testing.T) {
	s := New(Options{Seed: 5, Nodes: 3})
	c := NewChecker(s)
	require.NoError(t, s.RunUntil(s.Now.Add(300*time.Millisecond), c.Step))
	s.CutLink(3, wire.NetA, true)
	s.CutLink(3, wire.NetB, true)
	require.NoError(t, s.RunUntil(s.Now.Add(3*fenceTimeout), noFenceOf(s, c, 1, 2, 3)))
	f := s.Node(3).Core.Fence()
	require.False(t, f.Enabled)
	require.True(t, f.Joined && f.Isolated)
}

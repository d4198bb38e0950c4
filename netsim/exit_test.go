package netsim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// roles finds the master and its vice of a settled cluster.
func roles(t *testing.T, s *Sim) (master, vice wire.NodeID) {
	t.Helper()
	for _, n := range s.Nodes {
		if n.Up && n.Core.Role().Role == wire.RoleMaster {
			master = n.ID
		}
	}
	require.NotZero(t, master, "no master")
	return master, s.Node(master).Core.Role().Vice
}

// settled is a cluster of nodes after 200 ms: formed, a master and a vice
// elected.
func settled(t *testing.T, seed uint64, nodes int) (*Sim, *Checker) {
	t.Helper()
	s := New(Options{Seed: seed, Nodes: nodes})
	c := NewChecker(s)
	require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
	return s, c
}

// settledFollower is a settled cluster of five and a node of it neither
// master nor vice.
func settledFollower(t *testing.T, seed uint64) (*Sim, *Checker, wire.NodeID) {
	t.Helper()
	s, c := settled(t, seed, 5)
	master, vice := roles(t, s)
	victim := wire.NodeID(1)
	for victim == master || victim == vice {
		victim++
	}
	return s, c, victim
}

// downEverywhere: every running node's table has node id down at an
// incarnation of at least inc.
func downEverywhere(s *Sim, id wire.NodeID, inc uint64) bool {
	for _, n := range s.Nodes {
		if !n.Up || n.ID == id {
			continue
		}
		e, ok := n.Core.Table().Get(table.NodeEntityID(id))
		if !ok || e.State != wire.StateDown || e.Incarnation < inc {
			return false
		}
	}
	return true
}

// until runs the simulation until cond holds (checking every invariant on
// the way) and returns how long that took, or fails after limit.
func until(t *testing.T, s *Sim, c *Checker, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := s.Now
	for !cond() {
		require.True(t, s.Now.Sub(start) <= limit, "not within %v", limit)
		require.NoError(t, s.RunUntil(s.Now.Add(100*time.Microsecond), c.Step))
	}
	return s.Now.Sub(start)
}

// TestKillIsSeenAtOnce: the process of a follower killed (Sim.Kill), its
// master hears the connection close and marks it down at once, not one
// detection time later: every table has it down within a few network
// delays, where a crash of its host (Sim.Crash) takes the bound.
func TestKillIsSeenAtOnce(t *testing.T) {
	for seed := uint64(1); seed <= 30; seed++ {
		s, c, victim := settledFollower(t, seed)
		inc := s.Node(victim).Core.Incarnation()
		s.Kill(victim)
		took := until(t, s, c, detection, func() bool { return downEverywhere(s, victim, inc) })
		require.Less(t, took, detection/10, "seed %d: killed %d", seed, victim)
		require.NoError(t, s.RunUntil(s.Now.Add(300*time.Millisecond), c.Step))
	}
}

// detection is the simulator's detection time (10 ms × 5).
const detection = 50 * time.Millisecond

// What closes no connection is left to the detector: a host's crash, a
// paused process, a process killed while network A (which the connection
// takes) is cut from its master. Each is down everywhere only after the
// detection time.
func TestNoExitWithoutAClosedConnection(t *testing.T) {
	cases := map[string]func(s *Sim, victim wire.NodeID){
		"crash": func(s *Sim, victim wire.NodeID) { s.Crash(victim) },
		"pause": func(s *Sim, victim wire.NodeID) { s.Pause(victim) },
		"kill with net A cut": func(s *Sim, victim wire.NodeID) {
			s.CutLink(victim, wire.NetA, true)
			s.Kill(victim)
		},
	}
	for name, fault := range cases {
		for seed := uint64(1); seed <= 10; seed++ {
			s, c, victim := settledFollower(t, seed)
			inc := s.Node(victim).Core.Incarnation()
			fault(s, victim)
			took := until(t, s, c, 3*detection, func() bool { return downEverywhere(s, victim, inc) })
			require.GreaterOrEqual(t, took, detection, "%s, seed %d", name, seed)
		}
	}
}

// TestKillOfTheMasterFailsOverAtOnce: the master's process killed, every
// follower hears its connection to it close, takes the master as gone and
// elects at once: the vice is master, followed by all and the old master
// down in every table, well within one detection time (a crash of the
// master's host takes more than one: TestFailoverOneSnapshot).
func TestKillOfTheMasterFailsOverAtOnce(t *testing.T) {
	for seed := uint64(1); seed <= 30; seed++ {
		s, c := settled(t, seed, 5)
		master, vice := roles(t, s)
		require.NotZero(t, vice)
		inc := s.Node(master).Core.Incarnation()
		s.Kill(master)
		took := until(t, s, c, 2*detection, func() bool {
			for _, n := range s.Nodes {
				if n.Up && n.Core.Role().Master != vice {
					return false
				}
			}
			return downEverywhere(s, master, inc)
		})
		require.Less(t, took, detection/2, "seed %d", seed)
		require.NoError(t, s.RunUntil(s.Now.Add(300*time.Millisecond), c.Step))
		require.NoError(t, c.CheckHealed(vice))
	}
}

// An exit says nothing of another incarnation of the node (a closed
// connection of a process since replaced) nor of a node never heard, nor
// of the node itself: none is taken, and the node stays up everywhere.
func TestExitOfAnotherIncarnationIsIgnored(t *testing.T) {
	s, c := settled(t, 1, 3)
	master, _ := roles(t, s)
	victim := wire.NodeID(1)
	if victim == master {
		victim = 2
	}
	m := s.Node(master)
	inc := s.Node(victim).Core.Incarnation()
	require.False(t, m.Core.PeerExited(s.Now, victim, inc-1), "an older incarnation")
	require.False(t, m.Core.PeerExited(s.Now, victim, inc+1), "a newer incarnation, never heard")
	require.False(t, m.Core.PeerExited(s.Now, victim, 0), "no incarnation")
	require.False(t, m.Core.PeerExited(s.Now, 9, 1), "a node never heard")
	require.False(t, m.Core.PeerExited(s.Now, master, m.Core.Incarnation()), "itself")
	s.collect(m)
	require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
	for _, n := range s.Nodes {
		e, ok := n.Core.Table().Get(table.NodeEntityID(victim))
		require.True(t, ok)
		require.Equal(t, wire.StateUp, e.State, "node %d's table", n.ID)
	}
	require.Zero(t, m.Core.Stats().PeersExited)
	require.True(t, m.Core.PeerExited(s.Now, victim, inc), "its own incarnation")
	require.Equal(t, uint64(1), m.Core.Stats().PeersExited)
	require.False(t, m.Core.PeerExited(s.Now, victim, inc), "taken once")
}

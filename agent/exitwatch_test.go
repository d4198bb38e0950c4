package agent

import (
	"context"
	"net"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/wire"
)

// slowDetection is a bound (200 ms × 10 = 2 s) no kill here is seen within
// by the heartbeats: a node down sooner was seen by its exit.
func slowDetection(c *config.Config) {
	c.Timing.Profile = config.ProfileCustom
	c.Timing.Interval, c.Timing.Misses = 200*time.Millisecond, 10
}

// node3Connected waits until node 3 is up in tc's segments, one of
// agents (nodes 1 and 2) is master, and node 3 is connected to its exit
// watch; it returns that master.
func node3Connected(t *testing.T, tc *testCluster, agents []*agent) *agent {
	t.Helper()
	for _, nd := range tc.nodes {
		waitShm(t, nd, 10*time.Second, "node 3 up", func() bool { st, _ := nd.state("node/3"); return st == wire.StateUp })
	}
	var master *agent
	require.Eventually(t, func() bool {
		for _, a := range agents {
			a.mu.Lock()
			m := a.core.Role().Master
			a.mu.Unlock()
			if m == a.self {
				master = a
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond, "a master among nodes 1 and 2")
	exitConnected(t, master, 3)
	return master
}

// exitConnected waits until a's exit watch holds a connection from node.
func exitConnected(t *testing.T, a *agent, node wire.NodeID) {
	t.Helper()
	require.Eventually(t, func() bool {
		a.exit.mu.Lock()
		defer a.exit.mu.Unlock()
		_, ok := a.exit.in[node]
		return ok
	}, 10*time.Second, 10*time.Millisecond, "node %d's exit-watch connection", node)
}

// A follower's agent killed with SIGKILL (a process of its own) is down,
// with node-unreachable, in every survivor's shared memory long before its
// heartbeats' bound: its master heard the exit-watch connection close
// without a goodbye, and took it (counted). Started again, it connects
// anew and comes back up.
func TestKilledAgentIsDownByItsExit(t *testing.T) {
	tc, byID, _ := startClusterAgents(t, 2, slowDetection)
	c1 := tc.nodes[0].cfg
	cfg := newTestConfig(t, 3, c1.ClusterID, c1.Networks[0].Group, c1.Networks[1].Group, c1.Networks[0].Port, filepath.Dir(c1.Paths.StateDir))
	slowDetection(cfg)
	require.NoError(t, cfg.Validate())
	proc, kill := startChildAgentProc(t, cfg)
	master := node3Connected(t, tc, []*agent{byID[1], byID[2]})
	bound := cfg.Timing.Detection()
	// As fmctl status shows it: the master lists its followers, a
	// follower its master.
	for _, nd := range tc.nodes {
		require.Eventually(t, func() bool {
			st, err := nd.client(t).Status(context.Background())
			if err != nil || st.ExitWatch == nil || !st.ExitWatch.Listening {
				return false
			}
			// Held by a thread with a table of its own (connhold): a
			// kill -9 ends them before the memory is freed.
			if st.ExitWatch.OwnTable == nil || !*st.ExitWatch.OwnTable {
				return false
			}
			if wire.NodeID(nd.id) == master.self {
				other := 3 - master.self // the other of nodes 1 and 2
				return slices.Equal(st.ExitWatch.Followers, []wire.NodeID{other, 3})
			}
			return st.ExitWatch.Master == master.self
		}, 10*time.Second, 20*time.Millisecond, "node %d's status of the exit watch", nd.id)
	}

	// Timed from the signal: the reap (kill) waits for the dead agent's
	// memory to be freed at SCHED_IDLE, seconds beside a CPU hog.
	killed := time.Now()
	require.NoError(t, proc.Signal(syscall.SIGKILL))
	for _, nd := range tc.nodes {
		waitShm(t, nd, bound, "node/3 down with node-unreachable", func() bool {
			st, e := nd.state("node/3")
			if st != wire.StateDown {
				return false
			}
			a, ok := e.FindAlarm([]byte(core.UnreachableCause))
			return ok && a.Severity == wire.SevCritical
		})
	}
	took := time.Since(killed)
	taken, _, _ := master.exitStats()
	require.Equal(t, uint64(1), taken, "exits taken by the master")
	require.Less(t, took, bound/2, "down everywhere %v after the kill, against a %v bound", took, bound)
	t.Logf("kill -9 of node 3 to down in both survivors' shared memory: %v (bound %v)", took, bound)

	kill() // reaped (and its segment removed) before it starts again
	startChildAgent(t, cfg)
	for _, nd := range tc.nodes {
		waitShm(t, nd, 10*time.Second, "node 3 back up", func() bool { st, _ := nd.state("node/3"); return st == wire.StateUp })
	}
	exitConnected(t, master, 3)
}

// A connection to the exit watch that does not prove the cluster's key is
// refused (counted), and its close, whatever it says, is no one's exit.
func TestExitWatchRefusesStrangers(t *testing.T) {
	_, byID, _ := startClusterAgents(t, 1, func(c *config.Config) { c.AllowAlone = true })
	a := byID[1]
	at := a.tr.LocalAddr(wire.NetA)
	hello := func(b []byte) {
		c, err := net.Dial("tcp4", at.String())
		require.NoError(t, err)
		defer c.Close()
		_, _ = c.Write(b)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		var buf [256]byte
		for {
			if _, err := c.Read(buf[:]); err != nil {
				return // closed by the agent
			}
		}
	}
	hello([]byte("GET / HTTP/1.0\r\n\r\n and some more to fill a hello"))
	// A well-formed hello in node 2's name, then a wrong proof.
	var h [exitHelloSz]byte
	require.NoError(t, a.exit.putHello(h[:], 2, 7))
	hello(append(h[:], make([]byte, exitMACSz)...))
	require.Eventually(t, func() bool { _, _, r := a.exitStats(); return r == 2 }, 5*time.Second, 10*time.Millisecond)
	taken, ignored, _ := a.exitStats()
	require.Zero(t, taken)
	require.Zero(t, ignored)
}

// An agent stopped (SIGTERM, its context here) says goodbye: the datagram,
// and the goodbye byte on its exit-watch connections, so that no survivor
// takes the connections' end for a failure: node/N is down with
// node-left, not node-unreachable, and no connection ended without the
// goodbye byte, five stops in a row (without it, the connection's end and
// the datagram race to the master).
func TestStoppedAgentIsLeftNotExited(t *testing.T) {
	tc, byID, agents := startClusterAgents(t, 3, slowDetection)
	survivors := []*agent{byID[1], byID[2]}
	victim := tc.nodes[2]
	for round := range 5 {
		node3Connected(t, tc, survivors)
		tc.stopNode(victim)
		for _, nd := range tc.nodes[:2] {
			waitShm(t, nd, 10*time.Second, "node/3 down with node-left", func() bool {
				st, e := nd.state("node/3")
				if st != wire.StateDown {
					return false
				}
				_, left := e.FindAlarm([]byte(core.LeftCause))
				return left
			})
			_, e := nd.state("node/3")
			_, unreachable := e.FindAlarm([]byte(core.UnreachableCause))
			require.False(t, unreachable, "round %d, node %d: node-unreachable on a planned stop", round, nd.id)
		}
		// Not even an exit read and left (PeerExited refuses a peer
		// already gone): the connection ended with the goodbye byte.
		for _, a := range survivors {
			taken, ignored, _ := a.exitStats()
			require.Zero(t, taken, "round %d, node %d: an exit taken on a planned stop", round, a.self)
			require.Zero(t, ignored, "round %d, node %d: a connection's end without the goodbye byte on a planned stop", round, a.self)
		}
		tc.startNode(victim)
		<-agents
	}
}

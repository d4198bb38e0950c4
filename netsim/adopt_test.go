package netsim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/wire"
)

// A node whose agent restarts faster than detection (it is never seen
// down) keeps what it owns up for the adoption grace period: what its new
// agent re-registers stays up, what it does not goes down when the grace
// period is over (core/adopt.go).
func TestRestartedAgentAdopts(t *testing.T) {
	s := New(Options{Seed: 11, Nodes: 4, Trace: true})
	c := NewChecker(s)
	require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
	for _, name := range []string{"node/4/proc/kept", "node/4/proc/died"} {
		_, ok := s.Submit(4, core.Request{Kind: wire.ReportRegister, Name: name, EntityKind: wire.KindProcess})
		require.True(t, ok)
	}
	require.NoError(t, s.RunUntil(s.Now.Add(50*time.Millisecond), c.Step))
	state := func(id wire.NodeID, name string) wire.State {
		e, ok := s.Node(id).Core.Table().Lookup(name)
		require.True(t, ok, "node %d: %s", id, name)
		return e.State
	}
	s.Crash(4)
	s.Restart(4) // at once: no silence long enough to be judged down
	grace := (&core.Config{Interval: s.Opt.Interval, Misses: s.Opt.Misses}).AdoptGrace()
	require.NoError(t, s.RunUntil(s.Now.Add(100*time.Millisecond), c.Step))
	// The new agent adopts the process still running.
	_, ok := s.Submit(4, core.Request{Kind: wire.ReportRegister, Name: "node/4/proc/kept", EntityKind: wire.KindProcess})
	require.True(t, ok)
	require.NoError(t, s.RunUntil(s.Now.Add(grace/2), c.Step))
	for id := wire.NodeID(1); id <= 4; id++ {
		require.Equal(t, wire.StateUp, state(id, "node/4/proc/kept"), "node %d\n%s", id, s.Trace(40))
		require.Equal(t, wire.StateUp, state(id, "node/4/proc/died"), "node %d: within the grace period\n%s", id, s.Trace(40))
	}
	require.NoError(t, s.RunUntil(s.Now.Add(grace), c.Step))
	for id := wire.NodeID(1); id <= 4; id++ {
		require.Equal(t, wire.StateUp, state(id, "node/4/proc/kept"), "node %d: adopted\n%s", id, s.Trace(40))
		require.Equal(t, wire.StateDown, state(id, "node/4/proc/died"), "node %d: not adopted\n%s", id, s.Trace(40))
	}
}

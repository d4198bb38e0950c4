package netsim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// A stall of the whole machine (a paused VM, or a CPU hog delaying every
// agent's thread) pauses every node at once, and they come back one after
// another as the CPUs take them. A node that finds its own ticks stalled
// does not judge anyone silent for as long as it was stalled (at most a
// detection bound): its peers were stalled too and need about as long to
// speak again. With a deferral of one interval, the node that came back
// first judged the last one silent before it had resumed: a false down (the
// 10 ms profile's soak saw 63 after a 133 ms stall of every agent).
func TestWholeMachineStallNoFalseDown(t *testing.T) {
	s := New(Options{Seed: 21, Nodes: 3, Interval: 2 * time.Millisecond, Misses: 5, Trace: true})
	c := NewChecker(s)
	require.NoError(t, s.RunUntil(s.Now.Add(300*time.Millisecond), c.Step))
	incs := map[wire.NodeID]uint64{}
	for _, n := range s.Nodes {
		incs[n.ID] = n.Core.Incarnation()
		s.Pause(n.ID)
	}
	require.NoError(t, s.RunUntil(s.Now.Add(150*time.Millisecond), c.Step))
	// They resume 3 ms apart: the last 6 ms after the first, beyond one
	// interval (2 ms) and within the bound (10 ms).
	for _, n := range s.Nodes {
		s.Resume(n.ID)
		require.NoError(t, s.RunUntil(s.Now.Add(3*time.Millisecond), c.Step))
	}
	require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
	for _, n := range s.Nodes {
		require.Equal(t, incs[n.ID], n.Core.Incarnation(), "node %d was declared down and reincarnated\n%s", n.ID, s.Trace(80))
		for _, m := range s.Nodes {
			e, ok := n.Core.Table().Get(table.NodeEntityID(m.ID))
			require.True(t, ok)
			require.Equal(t, wire.StateUp, e.State, "node %d's table: node %d", n.ID, m.ID)
		}
	}
}

package netsim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// Both links of one node cut, then restored: the node is marked down (with
// what it owns) by everyone else, the master stays master, and the node comes
// back under a new incarnation with its registered entity up again.
func TestIsolateNodeAndBack(t *testing.T) {
	s := New(Options{Seed: 5, Nodes: 5, Trace: true})
	c := NewChecker(s)
	require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
	_, ok := s.Submit(5, core.Request{Kind: wire.ReportRegister, Name: "node/5/proc/demo", EntityKind: wire.KindProcess})
	require.True(t, ok)
	require.NoError(t, s.RunUntil(s.Now.Add(50*time.Millisecond), c.Step))
	before := s.Node(1).Core.Role()
	inc := s.Node(5).Core.Incarnation()
	s.CutLink(5, wire.NetA, true)
	s.CutLink(5, wire.NetB, true)
	require.NoError(t, s.RunUntil(s.Now.Add(1100*time.Millisecond), c.Step))
	for id := wire.NodeID(1); id <= 4; id++ {
		for _, name := range []string{"node/5", "node/5/proc/demo"} {
			e, ok := s.Node(id).Core.Table().Lookup(name)
			require.True(t, ok)
			require.Equal(t, wire.StateDown, e.State, "node %d: %s\n%s", id, name, s.Trace(40))
		}
	}
	s.CutLink(5, wire.NetA, false)
	s.CutLink(5, wire.NetB, false)
	require.NoError(t, s.RunUntil(s.Now.Add(500*time.Millisecond), c.Step))
	for _, n := range s.Nodes {
		r := n.Core.Role()
		require.Equal(t, before.Master, r.Master, "node %d: the master stays\n%s", n.ID, s.Trace(60))
		require.Equal(t, before.Epoch, r.Epoch, "node %d: no election\n%s", n.ID, s.Trace(60))
		e, _ := n.Core.Table().Get(table.NodeEntityID(5))
		require.Equal(t, wire.StateUp, e.State, "node %d: node/5", n.ID)
		require.Greater(t, e.Incarnation, inc, "node %d: node/5 back under a new incarnation", n.ID)
		p, _ := n.Core.Table().Lookup("node/5/proc/demo")
		require.Equal(t, wire.StateUp, p.State, "node %d: its process is up again (re-asserted)\n%s", n.ID, s.Trace(60))
	}
	require.NoError(t, c.CheckHealed(before.Master))
}

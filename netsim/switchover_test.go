package netsim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/wire"
)

// A planned switchover, asked on a member: the vice-master takes over at the
// next epoch, every node follows it, nothing is marked down, tables agree.
func TestSwitchover(t *testing.T) {
	for _, nodes := range []int{2, 3, 5} {
		s := New(Options{Seed: uint64(nodes), Nodes: nodes, Trace: true})
		c := NewChecker(s)
		require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
		before := s.Node(1).Core.Role()
		require.Equal(t, wire.RoleMaster, before.Role)
		require.NotZero(t, before.Vice)
		asker := s.Node(wire.NodeID(nodes))
		require.NoError(t, asker.Core.Switchover(s.Now))
		s.collect(asker)
		require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step), s.Trace(60))
		for _, n := range s.Nodes {
			r := n.Core.Role()
			require.Equal(t, before.Vice, r.Master, "node %d follows the old vice\n%s", n.ID, s.Trace(60))
			require.Equal(t, before.Epoch+1, r.Epoch, "node %d: one election, one epoch\n%s", n.ID, s.Trace(60))
		}
		require.NoError(t, c.CheckHealed(before.Vice))
	}
}

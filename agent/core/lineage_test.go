package core

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/wire"
)

func TestLineageHoldsOnlyWhatItsReignsStamped(t *testing.T) {
	ver := func(epoch, seq uint64, node wire.NodeID) wire.WriteVersion {
		return wire.WriteVersion{Epoch: epoch, Seq: seq, Node: node}
	}
	var l lineage
	l.init()
	require.False(t, l.holds(ver(1, 1, 2)), "nothing known")

	// Following node 2 at epoch 1: its own stamps extend the reign.
	l.note(1, 2, ver(1, 10, 2))
	l.note(1, 2, ver(1, 16, 2))
	require.True(t, l.holds(ver(1, 3, 2)))
	require.True(t, l.holds(ver(1, 16, 2)))
	require.False(t, l.holds(ver(1, 17, 2)), "not applied yet")

	// A re-asserted write keeps another reign's version: it says nothing
	// of that reign's other writes (the losing side of a split brain).
	l.note(1, 2, ver(1, 40, 3))
	require.False(t, l.holds(ver(1, 39, 3)))
	require.False(t, l.holds(ver(1, 40, 3)))
	l.note(1, 2, ver(0, 0, 0))
	require.False(t, l.holds(ver(0, 0, 0)))

	// Node 1 leads at epoch 2, its table the same: both reigns held.
	l.note(2, 1, ver(2, 20, 1))
	require.True(t, l.holds(ver(1, 16, 2)))
	require.True(t, l.holds(ver(2, 20, 1)))
	require.False(t, l.holds(ver(2, 20, 2)), "same epoch, another master")

	// A snapshot replaces the table, and the lineage with it.
	l.reset()
	require.False(t, l.holds(ver(1, 16, 2)))

	// Bounded: the oldest reigns go first, and note never allocates.
	for e := uint64(1); e <= 2*maxLineage; e++ {
		l.note(e, 1, ver(e, e, 1))
	}
	require.Len(t, l.reigns, maxLineage)
	require.False(t, l.holds(ver(1, 1, 1)))
	require.True(t, l.holds(ver(2*maxLineage, 2*maxLineage, 1)))
	e := uint64(100)
	require.Zero(t, testing.AllocsPerRun(200, func() {
		e++
		l.note(e, 1, ver(e, 1, 1))
		l.note(e, 1, ver(e, 2, 1))
	}))
}

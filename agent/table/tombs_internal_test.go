package table

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/wire"
)

// At the bound every new tombstone forgets the oldest: the queue's array,
// the forgotten places before its head included, stays within a small
// multiple of the bound, and so does a flapping alarm's below it.
func TestTombstoneQueueStaysBounded(t *testing.T) {
	tb := New(4)
	tb.SetMaxTombstones(64)
	seq := uint64(0)
	clearOne := func(entity uint64, cause string) {
		seq++
		c := wire.Change{Seq: seq, Kind: wire.ChangeClear, Entity: entity, Cause: []byte(cause), Ver: wire.WriteVersion{Epoch: 1, Seq: seq, Node: 1}}
		require.NoError(t, tb.Apply(&c))
	}
	for i := range 100_000 {
		clearOne(uint64(i%7+1), fmt.Sprintf("c%d", i))
	}
	require.Len(t, tb.cleared.m, 64)
	require.LessOrEqual(t, cap(tb.cleared.q), 4*64+70, "the queue's array")
	for range 100_000 {
		clearOne(1, "flap")
	}
	require.LessOrEqual(t, cap(tb.cleared.q), 4*64+70, "the queue's array, one alarm cleared again and again")
}

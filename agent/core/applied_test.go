package core

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/wire"
)

// The applied requests a node remembers: the last appliedKeep, the later
// of two marks of one request winning; none after a reset.
func TestAppliedReqsKeepsTheLast(t *testing.T) {
	var a appliedReqs
	a.init()
	mark := func(by wire.NodeID, req, seq uint64) *wire.Change {
		return &wire.Change{By: by, Req: req, Seq: seq, Ver: wire.WriteVersion{Epoch: 1, Seq: seq, Node: 1}}
	}
	total := appliedKeep + 904
	for i := 1; i <= total; i++ {
		a.put(mark(wire.NodeID(2+i%2), uint64(i), uint64(10+i)))
	}
	m := a.index(nil)
	require.Len(t, m, appliedKeep)
	_, ok := m[appliedKey{wire.NodeID(2 + 904%2), 904}]
	require.False(t, ok, "pushed out")
	got, ok := m[appliedKey{wire.NodeID(2 + 905%2), 905}]
	require.True(t, ok)
	require.Equal(t, ackMemo{seq: 915, ver: wire.WriteVersion{Epoch: 1, Seq: 915, Node: 1}, code: ackOK}, got)
	_, ok = m[appliedKey{wire.NodeID(3 - 905%2), 905}]
	require.False(t, ok, "another reporter's request of the same ID")

	a.put(mark(wire.NodeID(2+905%2), 905, 9999))
	m = a.index(m)
	require.EqualValues(t, 9999, m[appliedKey{wire.NodeID(2 + 905%2), 905}].seq, "the later mark")

	a.reset()
	require.Empty(t, a.index(m))
}

// Recording an applied request allocates nothing: it is on the follower's
// apply path.
func TestAppliedReqsPutAllocs(t *testing.T) {
	var a appliedReqs
	a.init()
	c := &wire.Change{By: 4, Req: 7, Seq: 8}
	require.Zero(t, testing.AllocsPerRun(100, func() { a.put(c) }))
}

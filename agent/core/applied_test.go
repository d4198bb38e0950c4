package core

import (
	"testing"
	"time"

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
	got, ok = a.find(appliedKey{wire.NodeID(2 + 905%2), 905})
	require.True(t, ok)
	require.EqualValues(t, 9999, got.seq, "find: the later mark")
	_, ok = a.find(appliedKey{wire.NodeID(2 + 904%2), 904})
	require.False(t, ok, "find: pushed out")

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

// A snapshot carries the marks of the newest requests decided within the
// window, at most keep, oldest first; put back in order on the other side,
// they are what the sender remembered of them.
func TestAppliedReqsMarks(t *testing.T) {
	var a appliedReqs
	a.init()
	t0 := time.Unix(1_700_000_000, 0)
	for i := 1; i <= 600; i++ {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		c := wire.Change{By: 3, Req: uint64(i), Seq: uint64(100 + i), At: at.UnixNano(),
			Ver: wire.WriteVersion{Epoch: 2, Seq: uint64(100 + i), Node: 1}}
		if i%7 == 0 { // a raise that displaced an alarm
			c.Flags = wire.ChangeReqDisplaced
		}
		a.put(&c)
	}
	now := t0.Add(600 * time.Millisecond)
	require.Empty(t, a.appendMarks(nil, now.Add(time.Second), 500*time.Millisecond, marksKeep), "none in the window")

	ms := a.appendMarks(nil, now, 100*time.Millisecond, marksKeep)
	require.Len(t, ms, 101, "decided at 500 to 600 ms")
	require.EqualValues(t, 500, ms[0].Req, "oldest first")
	require.EqualValues(t, 600, ms[100].Req)

	ms = a.appendMarks(nil, now, time.Hour, marksKeep)
	require.Len(t, ms, marksKeep, "the newest keep")
	require.EqualValues(t, 600-marksKeep+1, ms[0].Req)
	for i := range ms {
		require.Equal(t, wire.ChangeApplied, ms[i].Kind)
		require.Equal(t, ms[i].Req%7 == 0, ms[i].Flags == wire.ChangeReqDisplaced, "request %d: displaced or not", ms[i].Req)
	}

	var b appliedReqs
	b.init()
	for i := range ms {
		b.put(&ms[i])
	}
	want := a.index(nil)
	for k, v := range b.index(nil) {
		require.Equal(t, want[k], v, "request %d", k.id)
	}
	require.Equal(t, ms, b.appendMarks(nil, now, time.Hour, marksKeep), "and sent on as they came")
	got, ok := b.find(appliedKey{3, 600 - marksKeep + 1})
	require.True(t, ok, "find in a ring not yet full: the oldest")
	require.EqualValues(t, 100+600-marksKeep+1, got.seq)
	_, ok = b.find(appliedKey{3, 600 - marksKeep})
	require.False(t, ok, "nor what was never put")
	got, ok = b.find(appliedKey{3, 595})
	require.True(t, ok)
	require.Equal(t, ackMemo{seq: 695, ver: wire.WriteVersion{Epoch: 2, Seq: 695, Node: 1}, code: ackDisplaced}, got, "answered displaced, as it was")
	require.Equal(t, uint8(ackOK), want[appliedKey{3, 596}].code)
}

// BenchmarkAppliedFind is the master's lookup of an earlier life's request
// (decide): a scan of the whole ring, the worst case being a request it
// does not hold. It runs once per such request (its answer is then kept
// in the master's answers), in the burst a fenced node's return sends.
func BenchmarkAppliedFind(b *testing.B) {
	var a appliedReqs
	a.init()
	for i := 1; i <= appliedKeep; i++ {
		a.put(&wire.Change{By: wire.NodeID(2 + i%7), Req: uint64(i), Seq: uint64(i)})
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := a.find(appliedKey{9, 1 << 50}); ok {
			b.Fatal("found")
		}
	}
}

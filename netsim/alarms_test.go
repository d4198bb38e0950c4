package netsim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// alarmOn returns the alarm cause on entity name in node id's table.
func alarmOn(s *Sim, id wire.NodeID, name, cause string) (*table.Alarm, bool) {
	e, ok := s.Node(id).Core.Table().Lookup(name)
	if !ok {
		return nil, false
	}
	return e.Alarm(cause)
}

// A node that dies raises node-unreachable (critical) on every node's table
// until it comes back; a node that says goodbye raises node-left (warning).
func TestNodeUnreachableAlarm(t *testing.T) {
	s := New(Options{Seed: 11, Nodes: 4, Trace: true})
	c := NewChecker(s)
	require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
	for id := wire.NodeID(1); id <= 4; id++ {
		_, ok := alarmOn(s, id, "node/3", core.UnreachableCause)
		require.False(t, ok, "node %d: no alarm while node 3 lives", id)
	}
	s.Crash(3)
	require.NoError(t, s.RunUntil(s.Now.Add(300*time.Millisecond), c.Step))
	for _, id := range []wire.NodeID{1, 2, 4} {
		a, ok := alarmOn(s, id, "node/3", core.UnreachableCause)
		require.True(t, ok, "node %d: node/3 carries node-unreachable\n%s", id, s.Trace(40))
		require.Equal(t, wire.SevCritical, a.Severity)
		e, _ := s.Node(id).Core.Table().Lookup("node/3")
		require.Equal(t, wire.StateDown, e.State)
	}
	// Still raised a while later (not cleared, not raised again).
	a1, _ := alarmOn(s, 1, "node/3", core.UnreachableCause)
	raisedAt := a1.RaisedAt
	require.NoError(t, s.RunUntil(s.Now.Add(500*time.Millisecond), c.Step))
	a1, ok := alarmOn(s, 1, "node/3", core.UnreachableCause)
	require.True(t, ok)
	require.Equal(t, raisedAt, a1.RaisedAt)

	s.Restart(3)
	require.NoError(t, s.RunUntil(s.Now.Add(400*time.Millisecond), c.Step))
	for id := wire.NodeID(1); id <= 4; id++ {
		e, _ := s.Node(id).Core.Table().Lookup("node/3")
		require.Equal(t, wire.StateUp, e.State, "node %d", id)
		_, ok := e.Alarm(core.UnreachableCause)
		require.False(t, ok, "node %d: cleared when node 3 is back\n%s", id, s.Trace(40))
	}

	// A planned stop: node-left, a warning, not a page.
	s.Node(4).Core.Shutdown(s.Now)
	s.collect(s.Node(4))
	s.Crash(4)
	require.NoError(t, s.RunUntil(s.Now.Add(300*time.Millisecond), c.Step))
	for _, id := range []wire.NodeID{1, 2, 3} {
		a, ok := alarmOn(s, id, "node/4", core.LeftCause)
		require.True(t, ok, "node %d: node/4 carries node-left\n%s", id, s.Trace(40))
		require.Equal(t, wire.SevWarning, a.Severity)
		_, ok = alarmOn(s, id, "node/4", core.UnreachableCause)
		require.False(t, ok)
	}
}

// The master dies: the new master raises node-unreachable on it, and the
// alarm survives the failover on every table.
func TestNodeUnreachableAlarmOnMaster(t *testing.T) {
	s := New(Options{Seed: 12, Nodes: 3, Trace: true})
	c := NewChecker(s)
	require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
	m := s.Node(1).Core.Role().Master
	require.NotZero(t, m)
	s.Crash(m)
	require.NoError(t, s.RunUntil(s.Now.Add(400*time.Millisecond), c.Step))
	for _, n := range s.Nodes {
		if n.ID == m {
			continue
		}
		_, ok := alarmOn(s, n.ID, table.NodeName(m), core.UnreachableCause)
		require.True(t, ok, "node %d: the dead master carries node-unreachable\n%s", n.ID, s.Trace(40))
	}
}

// Network A split {1,2} | {3,4} (B whole): every node stays up and every
// link stays up (each works, within its half), and net/a carries
// network-partitioned, with the halves named; healed, it is cleared.
func TestNetworkPartitionedAlarm(t *testing.T) {
	s := New(Options{Seed: 13, Nodes: 4, Trace: true})
	c := NewChecker(s)
	var events []core.Event
	s.OnReady = func(n *Node, rd *core.Ready) {
		for _, e := range rd.Events {
			if e.Kind == core.EvPartitioned || e.Kind == core.EvPartitionHealed {
				events = append(events, e)
			}
		}
	}
	require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
	s.Partition(wire.NetA, []int{0, 0, 1, 1})
	require.NoError(t, s.RunUntil(s.Now.Add(400*time.Millisecond), c.Step))
	for id := wire.NodeID(1); id <= 4; id++ {
		a, ok := alarmOn(s, id, "net/a", core.PartitionedCause)
		require.True(t, ok, "node %d: net/a partitioned\n%s", id, s.Trace(40))
		require.Equal(t, wire.SevMajor, a.Severity)
		_, ok = alarmOn(s, id, "net/b", core.PartitionedCause)
		require.False(t, ok, "node %d: net/b is whole", id)
		for j := wire.NodeID(1); j <= 4; j++ {
			e, _ := s.Node(id).Core.Table().Lookup(table.NodeName(j))
			require.Equal(t, wire.StateUp, e.State, "node %d: node/%d stays up", id, j)
		}
		// Every node can name the halves, not only the master.
		parts := s.Node(id).Core.Partitions()
		require.Equal(t, [][]wire.NodeID{{1, 2}, {3, 4}}, parts[wire.NetA], "node %d", id)
		require.Len(t, parts[wire.NetB], 1, "node %d", id)
	}
	require.NotEmpty(t, events)
	require.Equal(t, core.EvPartitioned, events[0].Kind)
	require.Equal(t, wire.NetA, events[0].Net)
	require.Equal(t, "{1,2} | {3,4}", events[0].Reason)

	s.Partition(wire.NetA, nil)
	require.NoError(t, s.RunUntil(s.Now.Add(400*time.Millisecond), c.Step))
	for id := wire.NodeID(1); id <= 4; id++ {
		_, ok := alarmOn(s, id, "net/a", core.PartitionedCause)
		require.False(t, ok, "node %d: cleared after the heal\n%s", id, s.Trace(40))
	}
	require.Equal(t, core.EvPartitionHealed, events[len(events)-1].Kind)

	// One node's link lost is a link alarm, not a partition.
	s.CutLink(4, wire.NetA, true)
	require.NoError(t, s.RunUntil(s.Now.Add(400*time.Millisecond), c.Step))
	for id := wire.NodeID(1); id <= 3; id++ {
		_, ok := alarmOn(s, id, "net/a", core.PartitionedCause)
		require.False(t, ok, "node %d: a lost link is no partition\n%s", id, s.Trace(40))
		e, _ := s.Node(id).Core.Table().Lookup(table.LinkName(4, wire.NetA))
		require.Equal(t, wire.StateDown, e.State)
	}
	require.NoError(t, c.Err())
}

// Both networks split {1,2} | {3,4}: each side has a master; the heal is
// seen by the masters as a split brain, reported once when found and once
// when healed (the higher epoch wins).
func TestSplitBrainReportedOnce(t *testing.T) {
	s := New(Options{Seed: 14, Nodes: 4, Trace: true, Priority: func(id wire.NodeID) uint8 { return uint8(200 - id) }})
	c := NewChecker(s)
	evs := map[core.EventKind]map[wire.NodeID]int{core.EvSplitBrain: {}, core.EvSplitBrainHealed: {}}
	s.OnReady = func(n *Node, rd *core.Ready) {
		for _, e := range rd.Events {
			if m, ok := evs[e.Kind]; ok {
				m[n.ID]++
			}
		}
	}
	require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
	s.Partition(wire.NetA, []int{0, 0, 1, 1})
	s.Partition(wire.NetB, []int{0, 0, 1, 1})
	require.NoError(t, s.RunUntil(s.Now.Add(500*time.Millisecond), c.Step))
	m12, m34 := s.Node(1).Core.Role(), s.Node(3).Core.Role()
	require.NotZero(t, m12.Master)
	require.NotZero(t, m34.Master, "%s", s.Trace(60))
	require.NotEqual(t, m12.Master, m34.Master)
	s.HealAll()
	require.NoError(t, s.RunUntil(s.Now.Add(800*time.Millisecond), c.Step))
	found, healed := 0, 0
	for _, n := range evs[core.EvSplitBrain] {
		require.Equal(t, 1, n, "once per master")
		found += n
	}
	for _, n := range evs[core.EvSplitBrainHealed] {
		require.Equal(t, 1, n, "once per master")
		healed += n
	}
	require.NotZero(t, found, "split brain found\n%s", s.Trace(60))
	require.Equal(t, found, healed, "every master that found it saw it healed: %v", evs)
}

package netsim

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// Regression tests for the misbehaviours listed in issue 8 that live in the
// core. Each builds the reported situation on the simulator.

// submitAndWait submits r on node id and runs until its result arrives.
func submitAndWait(t *testing.T, s *Sim, c *Checker, id wire.NodeID, r core.Request) core.Result {
	t.Helper()
	n := s.Node(id)
	before := len(n.Results)
	rid, ok := s.Submit(id, r)
	require.True(t, ok)
	for i := 0; i < 100; i++ {
		for _, res := range n.Results[before:] {
			if res.ID == rid {
				return res.Result
			}
		}
		require.NoError(t, s.RunUntil(s.Now.Add(10*time.Millisecond), c.Step))
	}
	t.Fatalf("no result for %v on node %d\n%s", r, id, s.Trace(60))
	return core.Result{}
}

func hasAlarm(s *Sim, id wire.NodeID, name, cause string) bool {
	e, ok := s.Node(id).Core.Table().Lookup(name)
	if !ok {
		return false
	}
	_, ok = e.Alarm(cause)
	return ok
}

func masterOf(s *Sim) wire.NodeID {
	for _, n := range s.Nodes {
		if n.Up && n.Core.Role().Role == wire.RoleMaster {
			return n.ID
		}
	}
	return 0
}

// "A cleared alarm comes back": node 2 raises, node 3 clears (acked), the
// master is lost; under the new master the alarm must stay cleared on every
// node, though node 2 re-asserts what it raised. The same for an entity
// unregistered from another node than its owner.
func TestIssue8ClearedAlarmStaysClearedAfterFailover(t *testing.T) {
	s := New(Options{Seed: 11, Nodes: 4, Trace: true})
	c := NewChecker(s)
	require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
	require.Equal(t, wire.NodeID(1), masterOf(s))
	r := submitAndWait(t, s, c, 2, core.Request{Kind: wire.ReportRaise, Name: "svc/a", Cause: "outage", Severity: wire.SevMajor})
	require.NoError(t, r.Err)
	r = submitAndWait(t, s, c, 3, core.Request{Kind: wire.ReportRegister, Name: "svc/b", EntityKind: wire.KindService})
	require.NoError(t, r.Err)
	r = submitAndWait(t, s, c, 3, core.Request{Kind: wire.ReportClear, Name: "svc/a", Cause: "outage"})
	require.NoError(t, r.Err)
	r = submitAndWait(t, s, c, 4, core.Request{Kind: wire.ReportUnregister, Name: "svc/b"})
	require.NoError(t, r.Err)
	require.NoError(t, s.RunUntil(s.Now.Add(50*time.Millisecond), c.Step))
	s.Crash(1)
	require.NoError(t, s.RunUntil(s.Now.Add(500*time.Millisecond), c.Step))
	require.NotZero(t, masterOf(s))
	for id := wire.NodeID(2); id <= 4; id++ {
		require.False(t, hasAlarm(s, id, "svc/a", "outage"), "node %d: the cleared alarm came back\n%s", id, s.Trace(80))
		_, ok := s.Node(id).Core.Table().Lookup("svc/b")
		require.False(t, ok, "node %d: the unregistered entity came back", id)
	}
	require.NoError(t, c.Err())
}

// "A clear acknowledged on the losing side of a split brain is lost at the
// heal": the alarm is raised everywhere, the cluster splits, the losing
// side clears it; after the heal it stays cleared (its version is newer than
// the raise the winning side still holds).
func TestIssue8ClearOnLosingSideSurvivesHeal(t *testing.T) {
	s := New(Options{Seed: 12, Nodes: 5, Trace: true})
	c := NewChecker(s)
	require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
	require.Equal(t, wire.NodeID(1), masterOf(s))
	require.NoError(t, submitAndWait(t, s, c, 2, core.Request{Kind: wire.ReportRaise, Name: "svc/a", Cause: "outage", Severity: wire.SevMajor}).Err)
	require.NoError(t, s.RunUntil(s.Now.Add(50*time.Millisecond), c.Step))
	// Master 1 keeps 1 and 2; 3, 4, 5 elect a master at a later epoch, which
	// will win the heal.
	labels := []int{0, 0, 1, 1, 1}
	s.Partition(wire.NetA, labels)
	s.Partition(wire.NetB, labels)
	require.NoError(t, s.RunUntil(s.Now.Add(300*time.Millisecond), c.Step))
	require.NoError(t, submitAndWait(t, s, c, 2, core.Request{Kind: wire.ReportClear, Name: "svc/a", Cause: "outage"}).Err)
	require.False(t, hasAlarm(s, 1, "svc/a", "outage"))
	require.True(t, hasAlarm(s, 3, "svc/a", "outage"))
	s.HealAll()
	require.NoError(t, s.RunUntil(s.Now.Add(600*time.Millisecond), c.Step))
	m := masterOf(s)
	require.True(t, m >= 3, "the later-elected side wins, master %d", m)
	for _, n := range s.Nodes {
		require.False(t, hasAlarm(s, n.ID, "svc/a", "outage"), "node %d: the clear of the losing side was lost\n%s", n.ID, s.Trace(80))
	}
	require.NoError(t, c.CheckHealed(m))
}

// "Tables diverge for good": a master that restarts must not form again at
// the same epoch (the epoch is persisted), and a follower re-syncs with it
// (new incarnation), so every table converges, two nodes included.
func TestIssue8RestartedMasterNewEpochTablesConverge(t *testing.T) {
	for _, nodes := range []int{2, 3} {
		t.Run(fmt.Sprint(nodes), func(t *testing.T) {
			s := New(Options{Seed: 13, Nodes: nodes, Trace: true})
			c := NewChecker(s)
			require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
			require.Equal(t, wire.NodeID(1), masterOf(s))
			epoch := s.Node(1).Core.Role().Epoch
			// Cut node 2 off, write on the master, restart the master.
			s.CutLink(2, wire.NetA, true)
			s.CutLink(2, wire.NetB, true)
			require.NoError(t, submitAndWait(t, s, c, 1, core.Request{Kind: wire.ReportRegister, Name: "svc/x", EntityKind: wire.KindService}).Err)
			s.Crash(1)
			s.Restart(1)
			require.NoError(t, s.RunUntil(s.Now.Add(300*time.Millisecond), c.Step))
			s.HealAll()
			require.NoError(t, s.RunUntil(s.Now.Add(600*time.Millisecond), c.Step))
			m := masterOf(s)
			require.NotZero(t, m)
			require.Greater(t, s.Node(m).Core.Role().Epoch, epoch, "a new reign, at a new epoch")
			require.NoError(t, c.CheckHealed(m), s.Trace(80))
			require.NoError(t, c.Err())
		})
	}
}

// "A refused write is answered as success": with an entity's alarms full, a
// raise no more severe than any of them is an error; a more severe one
// displaces the least severe and says so.
func TestIssue8AlarmsFullIsAnErrorOrDisplaces(t *testing.T) {
	s := New(Options{Seed: 14, Nodes: 2, Trace: true})
	c := NewChecker(s)
	require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
	limit := s.Node(1).Core.Config().MaxAlarms
	for i := 0; i < limit; i++ {
		sev := wire.SevMajor
		if i == 3 {
			sev = wire.SevMinor
		}
		r := submitAndWait(t, s, c, 2, core.Request{Kind: wire.ReportRaise, Name: "svc/a", Cause: fmt.Sprintf("c%d", i), Severity: sev})
		require.NoError(t, r.Err)
		require.False(t, r.Displaced)
	}
	r := submitAndWait(t, s, c, 2, core.Request{Kind: wire.ReportRaise, Name: "svc/a", Cause: "minor-one", Severity: wire.SevMinor})
	require.ErrorIs(t, r.Err, core.ErrAlarmsFull, "refused, and said so")
	r = submitAndWait(t, s, c, 2, core.Request{Kind: wire.ReportRaise, Name: "svc/a", Cause: "outage", Severity: wire.SevCritical})
	require.NoError(t, r.Err)
	require.True(t, r.Displaced, "a more severe alarm displaces the least severe")
	require.NoError(t, s.RunUntil(s.Now.Add(50*time.Millisecond), c.Step))
	for _, n := range s.Nodes {
		require.True(t, hasAlarm(s, n.ID, "svc/a", "outage"), "node %d", n.ID)
		require.False(t, hasAlarm(s, n.ID, "svc/a", "c3"), "node %d: the minor alarm was displaced", n.ID)
		e, _ := n.Core.Table().Lookup("svc/a")
		require.Len(t, e.Alarms, limit)
	}
}

// "A restarted node wipes the cluster's table": node 2 restarts with an empty
// table; the master goes quiet (busy) just after; node 2 must not take over
// with its empty table, which would replace everyone's.
func TestIssue8RestartedNodeDoesNotWipeTable(t *testing.T) {
	for _, nodes := range []int{2, 3} {
		t.Run(fmt.Sprint(nodes), func(t *testing.T) {
			s := New(Options{Seed: 15, Nodes: nodes, Trace: true})
			c := NewChecker(s)
			require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
			for i := 0; i < 200; i++ {
				_, ok := s.Submit(1, core.Request{Kind: wire.ReportRegister, Name: fmt.Sprintf("svc/e%d", i), EntityKind: wire.KindService})
				require.True(t, ok)
			}
			require.NoError(t, s.RunUntil(s.Now.Add(100*time.Millisecond), c.Step))
			want := s.Node(1).Core.Table().Len()
			require.Greater(t, want, 200)
			s.Crash(2)
			s.Restart(2)
			// Node 2 hears the master, then the master stalls for longer
			// than a detection time, while node 2 has no table yet.
			require.NoError(t, s.RunUntil(s.Now.Add(15*time.Millisecond), nil))
			s.Pause(1)
			require.NoError(t, s.RunUntil(s.Now.Add(120*time.Millisecond), c.Step))
			s.Resume(1)
			require.NoError(t, s.RunUntil(s.Now.Add(500*time.Millisecond), c.Step))
			for _, n := range s.Nodes {
				require.GreaterOrEqual(t, n.Core.Table().Len(), want, "node %d lost the table\n%s", n.ID, s.Trace(60))
			}
			require.NoError(t, c.CheckHealed(0))
		})
	}
}

// "An isolated ex-master flags its table stale after one detection time":
// it must wait for the stale timeout.
func TestIssue8IsolatedMasterStaleOnlyAfterTimeout(t *testing.T) {
	s := New(Options{Seed: 16, Nodes: 3, Trace: true})
	c := NewChecker(s)
	require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
	require.Equal(t, wire.NodeID(1), masterOf(s))
	s.CutLink(1, wire.NetA, true)
	s.CutLink(1, wire.NetB, true)
	cut := s.Now
	for s.Now.Sub(cut) < s.Opt.Stale-s.Opt.Interval {
		require.NoError(t, s.RunUntil(s.Now.Add(10*time.Millisecond), c.Step))
		require.False(t, s.Node(1).Core.Stale(), "stale %v after being cut off (timeout %v)", s.Now.Sub(cut), s.Opt.Stale)
	}
	require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
	require.True(t, s.Node(1).Core.Stale(), "stale after the timeout")
	e, ok := s.Node(1).Core.Table().Get(table.NodeEntityID(1))
	require.True(t, ok)
	_, ok = e.Alarm(core.StaleCause)
	require.True(t, ok)
}

// Multi-change transactions while one member is paused and cannot ack: a
// raise on an entity not yet in the table (its registration and the alarm)
// and a raise that displaces another (a clear and the raise), each asked as
// a transaction. The master does not wait for the paused member beyond the
// transaction timeout, and no node — the paused one included, once it
// resumes — ever shows part of either, checked after every step.
func TestIssue8MultiChangeTransactionAllOrNothing(t *testing.T) {
	s := New(Options{Seed: 17, Nodes: 4, Trace: true, Nets: [wire.NumNets]NetConditions{
		{MinDelay: 50 * time.Microsecond, MaxDelay: 400 * time.Microsecond}, {MinDelay: 50 * time.Microsecond, MaxDelay: 400 * time.Microsecond}}})
	c := NewChecker(s)
	limit := s.Node(1).Core.Config().MaxAlarms
	partial, armed := "", false
	prev := s.OnReady
	s.OnReady = func(n *Node, rd *core.Ready) {
		prev(n, rd)
		if partial != "" {
			return
		}
		if e, ok := n.Core.Table().Lookup("svc/new"); ok {
			if _, on := e.Alarm("outage"); !on {
				partial = fmt.Sprintf("node %d shows svc/new without its alarm", n.ID)
			}
		}
		if e, ok := n.Core.Table().Lookup("svc/full"); ok && armed && len(e.Alarms) < limit {
			partial = fmt.Sprintf("node %d shows svc/full with the displaced alarm cleared and the new one not raised", n.ID)
		}
	}
	require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
	require.Equal(t, wire.NodeID(1), masterOf(s))
	for i := 0; i < limit; i++ {
		require.NoError(t, submitAndWait(t, s, c, 3, core.Request{Kind: wire.ReportRaise, Name: "svc/full", Cause: fmt.Sprintf("c%d", i), Severity: wire.SevMinor}).Err)
	}
	require.NoError(t, s.RunUntil(s.Now.Add(50*time.Millisecond), c.Step))
	seq := s.Node(1).Core.Table().Seq()
	armed = true
	s.Pause(4)
	r := submitAndWait(t, s, c, 2, core.Request{Kind: wire.ReportRaise, Name: "svc/new", Cause: "outage", Severity: wire.SevMajor, Txn: true})
	require.NoError(t, r.Err)
	require.Greater(t, r.Seq, seq+1, "a group of two changes")
	r = submitAndWait(t, s, c, 2, core.Request{Kind: wire.ReportRaise, Name: "svc/full", Cause: "outage", Severity: wire.SevCritical, Txn: true})
	require.NoError(t, r.Err)
	require.True(t, r.Displaced)
	require.Greater(t, r.Seq, seq+3, "a group of two changes")
	require.NoError(t, s.RunUntil(s.Now.Add(20*time.Millisecond), c.Step))
	s.Resume(4)
	require.NoError(t, s.RunUntil(s.Now.Add(300*time.Millisecond), c.Step))
	require.NoError(t, c.Err())
	require.Empty(t, partial)
	for _, n := range s.Nodes {
		require.True(t, hasAlarm(s, n.ID, "svc/new", "outage"), "node %d", n.ID)
		require.True(t, hasAlarm(s, n.ID, "svc/full", "outage"), "node %d", n.ID)
	}
}

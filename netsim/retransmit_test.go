package netsim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/wire"
)

// A request the master applied, whose answer never reached its reporter,
// is sent again to the next master after a failover. That master applied
// it already (through the replication) and answers it as the first did; it
// does not decide it again over what was written since. Here: node 3's
// raise is applied by master 1 and its answer lost (node 3 cut off for a
// moment); node 2 clears the alarm, acknowledged; master 1 dies; node 2,
// the vice, takes over and gets node 3's raise again. Decided again, the
// raise undid the acknowledged clear in every table.
func TestRetransmissionToTheNextMaster(t *testing.T) {
	o := Options{Seed: 5, Nodes: 3, Trace: true}
	for i := range o.Nets {
		o.Nets[i].MinDelay = time.Millisecond
		o.Nets[i].MaxDelay = time.Millisecond
	}
	s := New(o)
	c := NewChecker(s)
	require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
	master, vice := s.Node(3).Core.Role().Master, s.Node(3).Core.Role().Vice
	require.Equal(t, wire.NodeID(1), master)
	require.Equal(t, wire.NodeID(2), vice)
	const name = "svc/n3-0"
	_, ok := s.Submit(3, core.Request{Kind: wire.ReportRegister, Name: name, EntityKind: wire.KindService})
	require.True(t, ok)
	require.NoError(t, s.RunUntil(s.Now.Add(50*time.Millisecond), c.Step))
	alarmed := func(id wire.NodeID) bool {
		e, ok := s.Node(id).Core.Table().Lookup(name)
		require.True(t, ok, "node %d holds %s", id, name)
		_, on := e.Alarm("disk")
		return on
	}
	answer := func(id wire.NodeID, req uint64) (error, bool) {
		for _, r := range s.Node(id).Results {
			if r.ID == req {
				return r.Err, true
			}
		}
		return nil, false
	}

	// The raise leaves node 3; node 3 is cut off before the answer comes.
	raise, ok := s.Submit(3, core.Request{Kind: wire.ReportRaise, Name: name, Severity: wire.SevMajor, Cause: "disk"})
	require.True(t, ok)
	require.NoError(t, s.RunUntil(s.Now.Add(500*time.Microsecond), c.Step))
	s.CutLink(3, wire.NetA, true)
	s.CutLink(3, wire.NetB, true)
	require.NoError(t, s.RunUntil(s.Now.Add(2*time.Millisecond), c.Step))
	require.True(t, alarmed(master), "applied by the master\n%s", s.Trace(30))
	require.True(t, alarmed(vice), "replicated to the vice\n%s", s.Trace(30))
	_, answered := answer(3, raise)
	require.False(t, answered, "the answer lost")

	clr, ok := s.Submit(vice, core.Request{Kind: wire.ReportClear, Name: name, Cause: "disk"})
	require.True(t, ok)
	require.NoError(t, s.RunUntil(s.Now.Add(15*time.Millisecond), c.Step))
	err, answered := answer(vice, clr)
	require.True(t, answered)
	require.NoError(t, err, "the clear acknowledged")
	require.False(t, alarmed(vice))

	// The master dies; node 3 is back, and sends its raise to the next.
	s.Crash(master)
	s.CutLink(3, wire.NetA, false)
	s.CutLink(3, wire.NetB, false)
	require.NoError(t, s.RunUntil(s.Now.Add(500*time.Millisecond), c.Step))
	require.Equal(t, vice, s.Node(3).Core.Role().Master)
	err, answered = answer(3, raise)
	require.True(t, answered, "the raise answered by the next master\n%s", s.Trace(30))
	require.NoError(t, err, "it was applied")
	require.EqualValues(t, 1, s.Node(vice).Core.Stats().ReportsInherited, "answered as the first master had")
	for _, id := range []wire.NodeID{vice, 3} {
		require.False(t, alarmed(id), "node %d: the acknowledged clear undone by the raise decided again\n%s", id, s.Trace(30))
	}
	require.NoError(t, c.CheckAppliedOnce())
	require.NoError(t, c.Err())
}

// The same retransmission two masters later: the master that applied the
// raise dies before the reporter's retransmission reaches it, the vice
// takes over and sends its table to node 3 as a snapshot, and dies in turn
// before the next retransmission. Node 3, whose table came whole in that
// snapshot, becomes master and gets the raise. The snapshot carries the
// requests the table applied lately (their marks, wire.ChangeApplied):
// without them node 3 decided the raise again and undid the acknowledged
// clear in every table.
func TestRetransmissionAfterASnapshot(t *testing.T) {
	o := Options{Seed: 5, Nodes: 4, Trace: true}
	for i := range o.Nets {
		o.Nets[i].MinDelay = time.Millisecond
		o.Nets[i].MaxDelay = time.Millisecond
	}
	s := New(o)
	c := NewChecker(s)
	require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
	require.Equal(t, wire.NodeID(1), s.Node(4).Core.Role().Master)
	require.Equal(t, wire.NodeID(2), s.Node(4).Core.Role().Vice)
	const name = "svc/n4-0"
	_, ok := s.Submit(4, core.Request{Kind: wire.ReportRegister, Name: name, EntityKind: wire.KindService})
	require.True(t, ok)
	require.NoError(t, s.RunUntil(s.Now.Add(50*time.Millisecond), c.Step))
	alarmed := func(id wire.NodeID) bool {
		e, ok := s.Node(id).Core.Table().Lookup(name)
		require.True(t, ok, "node %d holds %s", id, name)
		_, on := e.Alarm("disk")
		return on
	}
	answer := func(id wire.NodeID, req uint64) (error, bool) {
		for _, r := range s.Node(id).Results {
			if r.ID == req {
				return r.Err, true
			}
		}
		return nil, false
	}
	cut := func(id wire.NodeID, on bool) {
		s.CutLink(id, wire.NetA, on)
		s.CutLink(id, wire.NetB, on)
	}

	// Node 4's raise is applied by master 1; node 4 is cut off for the
	// moment its answer comes.
	raise, ok := s.Submit(4, core.Request{Kind: wire.ReportRaise, Name: name, Severity: wire.SevMajor, Cause: "disk"})
	require.True(t, ok)
	require.NoError(t, s.RunUntil(s.Now.Add(500*time.Microsecond), c.Step))
	cut(4, true)
	require.NoError(t, s.RunUntil(s.Now.Add(2*time.Millisecond), c.Step))
	cut(4, false)
	for _, id := range []wire.NodeID{1, 2, 3} {
		require.True(t, alarmed(id), "node %d: applied\n%s", id, s.Trace(30))
	}
	_, answered := answer(4, raise)
	require.False(t, answered, "the answer lost")
	clr, ok := s.Submit(2, core.Request{Kind: wire.ReportClear, Name: name, Cause: "disk"})
	require.True(t, ok)
	require.NoError(t, s.RunUntil(s.Now.Add(10*time.Millisecond), c.Step))
	err, answered := answer(2, clr)
	require.True(t, answered)
	require.NoError(t, err, "the clear acknowledged")

	// Master 1 dies before node 4 asks again; node 2 takes over and sends
	// node 3 its table; node 2 dies as soon as node 3 has it.
	snaps := s.Node(3).Core.Stats().SnapshotsApplied
	s.Crash(1)
	for s.Node(3).Core.Role().Master != 2 || s.Node(3).Core.Stats().SnapshotsApplied == snaps {
		require.NoError(t, s.RunUntil(s.Now.Add(100*time.Microsecond), c.Step))
		require.Less(t, s.Now.Sub(Epoch0), 2*time.Second, "node 3 never took node 2's snapshot\n%s", s.Trace(40))
	}
	s.Crash(2)
	_, answered = answer(4, raise)
	require.False(t, answered, "node 4's retransmission reached neither master 1 nor 2\n%s", s.Trace(40))

	require.NoError(t, s.RunUntil(s.Now.Add(500*time.Millisecond), c.Step))
	require.Equal(t, wire.NodeID(3), s.Node(4).Core.Role().Master, "%s", s.Trace(40))
	err, answered = answer(4, raise)
	require.True(t, answered, "the raise answered by node 3\n%s", s.Trace(30))
	require.NoError(t, err, "it was applied")
	require.NoError(t, c.CheckAppliedOnce())
	require.EqualValues(t, 1, s.Node(3).Core.Stats().ReportsInherited, "answered as master 1 had\n%s", s.Trace(60))
	require.NoError(t, c.CheckAppliedOnce())
	for _, id := range []wire.NodeID{3, 4} {
		require.False(t, alarmed(id), "node %d: the acknowledged clear undone by the raise decided again\n%s", id, s.Trace(30))
	}
	require.NoError(t, c.CheckAppliedOnce())
	require.NoError(t, c.Err())
}

// A raise whose answer was lost, retransmitted by its reporter's next
// life: node 4 is cut off after its raise was applied, marked down, and on
// its return reincarnates (fenced) and asks again, with the request's ID
// of its earlier life. Master 1 applied it; decided again as the new
// life's word, it undid node 2's acknowledged clear in every table. An
// alarm's raise or clear was applied or not whatever the reporter's life:
// the answer is the first one.
func TestRetransmissionFromTheReportersNextLife(t *testing.T) {
	o := Options{Seed: 5, Nodes: 4, Trace: true}
	for i := range o.Nets {
		o.Nets[i].MinDelay = time.Millisecond
		o.Nets[i].MaxDelay = time.Millisecond
	}
	s := New(o)
	c := NewChecker(s)
	require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
	require.Equal(t, wire.NodeID(1), s.Node(4).Core.Role().Master)
	const name = "svc/n4-0"
	_, ok := s.Submit(4, core.Request{Kind: wire.ReportRegister, Name: name, EntityKind: wire.KindService})
	require.True(t, ok)
	require.NoError(t, s.RunUntil(s.Now.Add(50*time.Millisecond), c.Step))
	alarmed := func(id wire.NodeID) bool {
		e, ok := s.Node(id).Core.Table().Lookup(name)
		require.True(t, ok, "node %d holds %s", id, name)
		_, on := e.Alarm("disk")
		return on
	}
	answer := func(id wire.NodeID, req uint64) (error, bool) {
		for _, r := range s.Node(id).Results {
			if r.ID == req {
				return r.Err, true
			}
		}
		return nil, false
	}
	cut := func(id wire.NodeID, on bool) {
		s.CutLink(id, wire.NetA, on)
		s.CutLink(id, wire.NetB, on)
	}

	raise, ok := s.Submit(4, core.Request{Kind: wire.ReportRaise, Name: name, Severity: wire.SevMajor, Cause: "disk"})
	require.True(t, ok)
	require.NoError(t, s.RunUntil(s.Now.Add(500*time.Microsecond), c.Step))
	cut(4, true)
	require.NoError(t, s.RunUntil(s.Now.Add(2*time.Millisecond), c.Step))
	require.True(t, alarmed(1), "applied\n%s", s.Trace(30))
	clr, ok := s.Submit(2, core.Request{Kind: wire.ReportClear, Name: name, Cause: "disk"})
	require.True(t, ok)
	require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
	err, answered := answer(2, clr)
	require.True(t, answered)
	require.NoError(t, err, "the clear acknowledged")
	_, answered = answer(4, raise)
	require.False(t, answered, "the raise's answer lost")
	inc := s.Node(4).Core.Incarnation()

	cut(4, false)
	require.NoError(t, s.RunUntil(s.Now.Add(500*time.Millisecond), c.Step))
	require.Greater(t, s.Node(4).Core.Incarnation(), inc, "node 4 came back as a new life\n%s", s.Trace(40))
	require.Equal(t, wire.NodeID(1), s.Node(4).Core.Role().Master)
	err, answered = answer(4, raise)
	require.True(t, answered, "the raise answered\n%s", s.Trace(30))
	require.NoError(t, err, "it was applied")
	require.NoError(t, c.CheckAppliedOnce())
	require.EqualValues(t, 1, s.Node(1).Core.Stats().ReportsOfAnEarlierLife, "answered as it was the first time")
	require.NoError(t, c.CheckAppliedOnce())
	for _, id := range []wire.NodeID{1, 2, 3, 4} {
		require.False(t, alarmed(id), "node %d: the acknowledged clear undone by the raise decided again\n%s", id, s.Trace(40))
	}
	require.NoError(t, c.CheckAppliedOnce())
	require.NoError(t, c.Err())
}

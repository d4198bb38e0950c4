package netsim

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/wire"
)

// lostAnswer is the cluster of the tests below: nodes on 1 ms links, formed
// with master 1 and vice 2, where the reporter registered svc/nR-0 and
// raised the alarm "disk" on it; master 1 applied the raise (and the other
// nodes with it), and its answer was lost: the reporter was cut off from
// both networks as it came, and still is. With displace, the entity's
// alarms were full of minor ones when the (major) raise came, and the
// raise displaced the oldest of them.
type lostAnswer struct {
	t        *testing.T
	s        *Sim
	c        *Checker
	name     string
	reporter wire.NodeID
	raise    uint64 // the raise's request ID
	displace bool
}

func newLostAnswer(t *testing.T, nodes int, reporter wire.NodeID, displace bool) *lostAnswer {
	o := Options{Seed: 5, Nodes: nodes, Trace: true}
	for i := range o.Nets {
		o.Nets[i].MinDelay = time.Millisecond
		o.Nets[i].MaxDelay = time.Millisecond
	}
	l := &lostAnswer{t: t, s: New(o), name: fmt.Sprintf("svc/n%d-0", reporter), reporter: reporter, displace: displace}
	l.c = NewChecker(l.s)
	l.run(200 * time.Millisecond)
	require.Equal(t, wire.NodeID(1), l.s.Node(reporter).Core.Role().Master)
	require.Equal(t, wire.NodeID(2), l.s.Node(reporter).Core.Role().Vice)
	_, ok := l.s.Submit(reporter, core.Request{Kind: wire.ReportRegister, Name: l.name, EntityKind: wire.KindService})
	require.True(t, ok)
	l.run(50 * time.Millisecond)
	if displace {
		for i := range core.DefaultMaxAlarms {
			id, ok := l.s.Submit(reporter, core.Request{Kind: wire.ReportRaise, Name: l.name, Severity: wire.SevMinor, Cause: fmt.Sprintf("minor-%d", i)})
			require.True(t, ok)
			l.run(10 * time.Millisecond)
			err, answered := l.answer(reporter, id)
			require.True(t, answered && err == nil, "minor alarm %d raised", i)
		}
	}

	l.raise, ok = l.s.Submit(reporter, core.Request{Kind: wire.ReportRaise, Name: l.name, Severity: wire.SevMajor, Cause: "disk"})
	require.True(t, ok)
	l.run(500 * time.Microsecond)
	l.cut(reporter, true)
	l.run(2 * time.Millisecond)
	for id := wire.NodeID(1); int(id) <= nodes; id++ {
		if id != reporter {
			require.True(t, l.alarmed(id), "node %d: the raise applied\n%s", id, l.s.Trace(30))
		}
	}
	_, answered := l.answer(reporter, l.raise)
	require.False(t, answered, "the answer lost")
	return l
}

func (l *lostAnswer) run(d time.Duration) {
	require.NoError(l.t, l.s.RunUntil(l.s.Now.Add(d), l.c.Step))
}

// alarmed reports whether node id's table has the alarm raised.
func (l *lostAnswer) alarmed(id wire.NodeID) bool {
	e, ok := l.s.Node(id).Core.Table().Lookup(l.name)
	require.True(l.t, ok, "node %d holds %s", id, l.name)
	_, on := e.Alarm("disk")
	return on
}

// answer is what node id's client was answered to request req, if it was.
func (l *lostAnswer) answer(id wire.NodeID, req uint64) (error, bool) {
	r, ok := l.result(id, req)
	return r.Err, ok
}

// result is node id's client's result of request req, if it came.
func (l *lostAnswer) result(id wire.NodeID, req uint64) (core.Result, bool) {
	for _, r := range l.s.Node(id).Results {
		if r.ID == req {
			return r.Result, true
		}
	}
	return core.Result{}, false
}

// cut cuts node id off both networks (on) or puts it back.
func (l *lostAnswer) cut(id wire.NodeID, on bool) {
	l.s.CutLink(id, wire.NetA, on)
	l.s.CutLink(id, wire.NetB, on)
}

// clearBy has node by clear the alarm and requires the clear acknowledged
// within d.
func (l *lostAnswer) clearBy(by wire.NodeID, d time.Duration) {
	clr, ok := l.s.Submit(by, core.Request{Kind: wire.ReportClear, Name: l.name, Cause: "disk"})
	require.True(l.t, ok)
	l.run(d)
	err, answered := l.answer(by, clr)
	require.True(l.t, answered)
	require.NoError(l.t, err, "the clear acknowledged")
	require.False(l.t, l.alarmed(by))
}

// raiseAnsweredOnce requires the reporter's raise answered, as applied,
// no table to have applied it twice, and the clear to stand in every
// table of nodes.
func (l *lostAnswer) raiseAnsweredOnce(nodes ...wire.NodeID) {
	r, answered := l.result(l.reporter, l.raise)
	require.True(l.t, answered, "the raise answered\n%s", l.s.Trace(30))
	require.NoError(l.t, r.Err, "it was applied")
	require.NoError(l.t, l.c.CheckAppliedOnce())
	for _, id := range nodes {
		require.False(l.t, l.alarmed(id), "node %d: the acknowledged clear undone by the raise decided again\n%s", id, l.s.Trace(40))
	}
	require.Equal(l.t, l.displace, r.Displaced, "answered as it was applied: displacing an alarm or not")
	require.NoError(l.t, l.c.Err())
}

// A request the master applied, whose answer never reached its reporter,
// is sent again to the next master after a failover. That master applied
// it already (through the replication) and answers it as the first did; it
// does not decide it again over what was written since. Here: node 3's
// raise is applied by master 1 and its answer lost; node 2 clears the
// alarm, acknowledged; master 1 dies; node 2, the vice, takes over and
// gets node 3's raise again. Decided again, the raise undid the
// acknowledged clear in every table.
func TestRetransmissionToTheNextMaster(t *testing.T) {
	for _, displace := range []bool{false, true} {
		t.Run(fmt.Sprintf("displace=%v", displace), func(t *testing.T) { retransmitToTheNextMaster(t, displace) })
	}
}

// A raise that displaced a less severe alarm is a request applied like
// any other: without its mark (wire.ChangeReqDisplaced) the next master
// decided it again and undid the acknowledged clear.
func retransmitToTheNextMaster(t *testing.T, displace bool) {
	l := newLostAnswer(t, 3, 3, displace)
	l.clearBy(2, 15*time.Millisecond)

	// The master dies; node 3 is back, and sends its raise to the next.
	l.s.Crash(1)
	l.cut(3, false)
	l.run(500 * time.Millisecond)
	require.Equal(t, wire.NodeID(2), l.s.Node(3).Core.Role().Master)
	l.raiseAnsweredOnce(2, 3)
	require.EqualValues(t, 1, l.s.Node(2).Core.Stats().ReportsInherited, "answered as the first master had")
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
	for _, displace := range []bool{false, true} {
		t.Run(fmt.Sprintf("displace=%v", displace), func(t *testing.T) { retransmitAfterASnapshot(t, displace) })
	}
}

func retransmitAfterASnapshot(t *testing.T, displace bool) {
	l := newLostAnswer(t, 4, 4, displace)
	l.cut(4, false) // back at once: not fenced, still unanswered
	l.clearBy(2, 10*time.Millisecond)

	// Master 1 dies before node 4 asks again; node 2 takes over and sends
	// node 3 its table; node 2 dies as soon as node 3 has it.
	s := l.s
	snaps := s.Node(3).Core.Stats().SnapshotsApplied
	s.Crash(1)
	for s.Node(3).Core.Role().Master != 2 || s.Node(3).Core.Stats().SnapshotsApplied == snaps {
		l.run(100 * time.Microsecond)
		require.Less(t, s.Now.Sub(Epoch0), 2*time.Second, "node 3 never took node 2's snapshot\n%s", s.Trace(40))
	}
	s.Crash(2)
	_, answered := l.answer(4, l.raise)
	require.False(t, answered, "node 4's retransmission reached neither master 1 nor 2\n%s", s.Trace(40))

	l.run(500 * time.Millisecond)
	require.Equal(t, wire.NodeID(3), s.Node(4).Core.Role().Master, "%s", s.Trace(40))
	l.raiseAnsweredOnce(3, 4)
	require.EqualValues(t, 1, s.Node(3).Core.Stats().ReportsInherited, "answered as master 1 had\n%s", s.Trace(60))
}

// A raise whose answer was lost, retransmitted by its reporter's next
// life: node 4 stays cut off after its raise was applied, is marked down,
// and on its return reincarnates (fenced) and asks again, with the
// request's ID of its earlier life. Master 1 applied it; decided again as
// the new life's word, it undid node 2's acknowledged clear in every
// table. An alarm's raise or clear was applied or not whatever the
// reporter's life: the answer is the first one.
func TestRetransmissionFromTheReportersNextLife(t *testing.T) {
	for _, displace := range []bool{false, true} {
		t.Run(fmt.Sprintf("displace=%v", displace), func(t *testing.T) { retransmitFromTheNextLife(t, displace) })
	}
}

func retransmitFromTheNextLife(t *testing.T, displace bool) {
	l := newLostAnswer(t, 4, 4, displace)
	l.clearBy(2, 200*time.Millisecond)
	_, answered := l.answer(4, l.raise)
	require.False(t, answered, "the raise's answer lost")
	inc := l.s.Node(4).Core.Incarnation()

	l.cut(4, false)
	l.run(500 * time.Millisecond)
	require.Greater(t, l.s.Node(4).Core.Incarnation(), inc, "node 4 came back as a new life\n%s", l.s.Trace(40))
	require.Equal(t, wire.NodeID(1), l.s.Node(4).Core.Role().Master)
	l.raiseAnsweredOnce(1, 2, 3, 4)
	require.EqualValues(t, 1, l.s.Node(1).Core.Stats().ReportsOfAnEarlierLife, "answered as it was the first time")
}

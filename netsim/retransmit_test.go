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
	require.NoError(t, c.Err())
}

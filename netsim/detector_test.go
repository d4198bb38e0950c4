package netsim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// downs counts, per observer, the peer-down verdicts on node id.
func downs(s *Sim, id wire.NodeID) map[wire.NodeID]int {
	m := make(map[wire.NodeID]int)
	prev := s.OnReady
	s.OnReady = func(n *Node, rd *core.Ready) {
		if prev != nil {
			prev(n, rd)
		}
		for _, e := range rd.Events {
			if e.Kind == core.EvPeerDown && e.Node == id {
				m[n.ID]++
			}
		}
	}
	return m
}

func boundAt(s *Sim, observer, peer wire.NodeID) time.Duration {
	for _, p := range s.Node(observer).Core.Status().Peers {
		if p.Node == peer {
			return p.Bound
		}
	}
	return 0
}

func formed(t *testing.T, s *Sim, c *Checker) (master, other wire.NodeID) {
	t.Helper()
	require.NoError(t, s.RunUntil(s.Now.Add(300*time.Millisecond), c.Step))
	master, _, ok := c.Calm()
	require.True(t, ok, "calm\n%s", s.Trace(40))
	// The highest node that is not the master is the slow one.
	for id := wire.NodeID(len(s.Nodes)); id >= 1; id-- {
		if id != master {
			return master, id
		}
	}
	return master, 0
}

// A slow node (its process paused longer than the bound) is judged down —
// wrongly — and speaks again at once under the same incarnation: that is a
// false down, and its bound is widened by one bound at every observer, so
// the same pause again is not judged. The widening decays back.
func TestDetectorSlowNotDead(t *testing.T) {
	s := New(Options{Seed: 11, Nodes: 5, Trace: true})
	c := NewChecker(s)
	master, slow := formed(t, s, c)
	det := s.Opt.Interval * time.Duration(s.Opt.Misses)
	d := downs(s, slow)

	s.Pause(slow)
	require.NoError(t, s.RunUntil(s.Now.Add(det+2*s.Opt.Interval), c.Step))
	s.Resume(slow)
	require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
	require.Positive(t, d[master], "the first pause, longer than the bound, is judged down\n%s", s.Trace(60))
	require.Positive(t, s.Node(master).Core.DetectorStats().FalseDowns, "and counted as a false down")
	require.Equal(t, 2*det, boundAt(s, master, slow), "its bound is widened by one bound")
	e, _ := s.Node(master).Core.Table().Get(table.NodeEntityID(slow))
	require.Equal(t, wire.StateUp, e.State, "back up (under a new incarnation)")

	// The same pause again: within the widened bound, no verdict.
	before := d[master]
	s.Pause(slow)
	require.NoError(t, s.RunUntil(s.Now.Add(det+2*s.Opt.Interval), c.Step))
	s.Resume(slow)
	require.NoError(t, s.RunUntil(s.Now.Add(100*time.Millisecond), c.Step))
	require.Equal(t, before, d[master], "a slow node within its widened bound is not judged down\n%s", s.Trace(60))
	e2, _ := s.Node(master).Core.Table().Get(table.NodeEntityID(slow))
	require.Equal(t, wire.StateUp, e2.State)
	require.Equal(t, e.Incarnation, e2.Incarnation, "not fenced this time")

	// The widening halves every 10 s it is not renewed.
	require.NoError(t, s.RunUntil(s.Now.Add(10*time.Second+det), c.Step))
	require.Equal(t, det+det/2, boundAt(s, master, slow), "halved after 10 s")
	require.NoError(t, s.RunUntil(s.Now.Add(30*time.Second), c.Step))
	require.Equal(t, det, boundAt(s, master, slow), "back to the configured bound")
}

// A widened bound lasts through the new incarnation a falsely judged node
// takes, but not through a real death: a node judged down whose judged
// incarnation never speaks again, and that comes back restarted, is judged
// at the configured bound again, so its next real death is detected within
// it (the widening used to stay for tens of seconds of halvings, and every
// kill of that node meanwhile was detected a bound late).
func TestDetectorWideningEndsWithARealDeath(t *testing.T) {
	s := New(Options{Seed: 13, Nodes: 5, Trace: true})
	c := NewChecker(s)
	master, slow := formed(t, s, c)
	interval := s.Opt.Interval
	det := interval * time.Duration(s.Opt.Misses)
	d := downs(s, slow)

	// A false down: widened, and still widened under the incarnation the
	// slow node takes when it learns of the verdict.
	s.Pause(slow)
	require.NoError(t, s.RunUntil(s.Now.Add(det+2*interval), c.Step))
	s.Resume(slow)
	require.NoError(t, s.RunUntil(s.Now.Add(200*time.Millisecond), c.Step))
	require.Positive(t, s.Node(master).Core.DetectorStats().FalseDowns, "a false down\n%s", s.Trace(60))
	require.Equal(t, 2*det, boundAt(s, master, slow), "widened")
	e, _ := s.Node(master).Core.Table().Get(table.NodeEntityID(slow))
	require.Equal(t, wire.StateUp, e.State, "back up under a new incarnation, still widened")

	// A real death, judged at the widened bound, then a restart.
	before, inc := d[master], s.Node(slow).Core.Incarnation()
	s.Crash(slow)
	require.NoError(t, s.RunUntil(s.Now.Add(2*det+2*interval), c.Step))
	require.Equal(t, before+1, d[master], "the crash is judged\n%s", s.Trace(60))
	s.Restart(slow)
	require.NoError(t, s.RunUntil(s.Now.Add(300*time.Millisecond), c.Step))
	e2, _ := s.Node(master).Core.Table().Get(table.NodeEntityID(slow))
	require.Equal(t, wire.StateUp, e2.State, "restarted\n%s", s.Trace(60))
	require.Greater(t, s.Node(slow).Core.Incarnation(), inc, "a new incarnation")
	require.Equal(t, det, boundAt(s, master, slow), "the verdict was true: the restarted node is judged at the configured bound")

	// Its next death is detected within the configured bound.
	before = d[master]
	s.Crash(slow)
	require.NoError(t, s.RunUntil(s.Now.Add(det+interval), c.Step))
	require.Equal(t, before+1, d[master], "detected within the bound plus an interval\n%s", s.Trace(60))
}

// One-sided loss: the master hears a node on neither network for longer
// than the bound, but other members hear it (their heartbeats vouch for
// it): the master does not mark it down. A cut that lasts past one more
// bound is judged as before.
func TestDetectorOneSidedLoss(t *testing.T) {
	s := New(Options{Seed: 12, Nodes: 5, Trace: true})
	c := NewChecker(s)
	master, victim := formed(t, s, c)
	det := s.Opt.Interval * time.Duration(s.Opt.Misses)
	d := downs(s, victim)
	// Net A: the master alone. Net B: the victim alone. The master and the
	// victim share no network; every other node hears both.
	cut := func() {
		a, b := make([]int, len(s.Nodes)), make([]int, len(s.Nodes))
		a[master-1], b[victim-1] = 1, 1
		s.Partition(wire.NetA, a)
		s.Partition(wire.NetB, b)
	}
	heal := func() {
		s.Partition(wire.NetA, nil)
		s.Partition(wire.NetB, nil)
	}

	cut()
	require.NoError(t, s.RunUntil(s.Now.Add(det+det/2), c.Step))
	heal()
	require.NoError(t, s.RunUntil(s.Now.Add(100*time.Millisecond), c.Step))
	require.Zero(t, d[master], "vouched for: not judged down by the master\n%s", s.Trace(60))
	require.Positive(t, s.Node(master).Core.DetectorStats().Vouched)
	e, _ := s.Node(master).Core.Table().Get(table.NodeEntityID(victim))
	require.Equal(t, wire.StateUp, e.State)

	// A lasting cut: down within two bounds (and a tick).
	cut()
	require.NoError(t, s.RunUntil(s.Now.Add(2*det+2*s.Opt.Interval), c.Step))
	require.Positive(t, d[master], "a lasting one-sided cut is judged\n%s", s.Trace(60))
	e, _ = s.Node(master).Core.Table().Get(table.NodeEntityID(victim))
	require.Equal(t, wire.StateDown, e.State)
	heal()
	require.NoError(t, s.RunUntil(s.Now.Add(500*time.Millisecond), c.Step))
}

// A dead node is still detected within the bound while others vouched for
// it a moment before: a vouch is withdrawn before the bound runs out.
func TestDetectorDeadInBoundDespiteVouch(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		s := New(Options{Seed: seed, Nodes: 5})
		c := NewChecker(s)
		_, victim := formed(t, s, c)
		det := s.Opt.Interval * time.Duration(s.Opt.Misses)
		inc := s.Node(victim).Core.Incarnation()
		at := s.Now
		s.Crash(victim)
		require.NoError(t, s.RunUntil(s.Now.Add(det+s.Opt.Interval), c.Step))
		require.NoError(t, c.CheckCrashDetected(victim, inc, at), "seed %d", seed)
	}
}

// A node's death reaches every table as one update: the node down, its
// links and contents down and its node-unreachable alarm in one group, so
// no table shows the node down without the alarm, and every follower
// applies and publishes the verdict once (the alarm used to follow in a
// group of its own).
func TestDeathIsOneUpdate(t *testing.T) {
	s := New(Options{Seed: 15, Nodes: 5, Trace: true})
	c := NewChecker(s)
	master, victim := formed(t, s, c)
	id := table.NodeEntityID(victim)
	type seen struct {
		down, alarm bool
	}
	first := map[wire.NodeID]seen{} // each survivor's first Ready with the node down
	s.OnReady = func(n *Node, rd *core.Ready) {
		if _, ok := first[n.ID]; ok || n.ID == victim {
			return
		}
		e, ok := n.Core.Table().Get(id)
		if !ok || e.State != wire.StateDown {
			return
		}
		_, unreach := e.Alarm(core.UnreachableCause)
		first[n.ID] = seen{down: true, alarm: unreach}
	}
	s.Crash(victim)
	det := s.Opt.Interval * time.Duration(s.Opt.Misses)
	require.NoError(t, s.RunUntil(s.Now.Add(det+2*s.Opt.Interval), c.Step))
	require.Len(t, first, len(s.Nodes)-1, "every survivor has the node down\n%s", s.Trace(40))
	for obs, f := range first {
		require.True(t, f.alarm, "node %d (master %d) had node %d down without its unreachable alarm\n%s", obs, master, victim, s.Trace(40))
	}
}

package elect

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/wire"
)

var t0 = time.Unix(1_700_000_000, 0)

const settle = 50 * time.Millisecond

func newE(node wire.NodeID, prio uint8, gen uint64, members ...wire.NodeID) *Elector {
	return New(Config{
		Self:      Candidate{Node: node, Priority: prio, Eligible: true, Generation: gen},
		Members:   members,
		Settle:    settle,
		ViceGrace: 20 * time.Millisecond,
	}, t0, 0)
}

func peer(node wire.NodeID, prio uint8, role wire.Role, epoch uint64, master, vice wire.NodeID) Peer {
	return Peer{Candidate: Candidate{Node: node, Priority: prio, Eligible: true}, Role: role, Epoch: epoch, Master: master, Vice: vice}
}

// evalUntil evaluates every 10 ms (as the core does on its ticks) from
// t0+from to t0+to, and returns the first event other than Nothing.
func evalUntil(e *Elector, from, to time.Duration, peers []Peer) Event {
	for dt := from; dt <= to; dt += 10 * time.Millisecond {
		if ev := e.Evaluate(t0.Add(dt), peers); ev != Nothing {
			return ev
		}
	}
	return Nothing
}

func TestOutranks(t *testing.T) {
	assert.True(t, Outranks(Candidate{Node: 5, Priority: 200}, Candidate{Node: 1, Priority: 100}), "priority first")
	assert.True(t, Outranks(Candidate{Node: 1, Priority: 100}, Candidate{Node: 2, Priority: 100}), "then the lower node ID")
	assert.False(t, Outranks(Candidate{Node: 2, Priority: 100}, Candidate{Node: 2, Priority: 100}))
}

func TestColdStartBestClaimsAfterSettle(t *testing.T) {
	e := newE(1, 100, 0)
	others := []Peer{peer(2, 100, wire.RoleJoining, 0, 0, 0), peer(3, 100, wire.RoleJoining, 0, 0, 0)}
	assert.Equal(t, Nothing, evalUntil(e, 0, settle-time.Millisecond, others), "still settling")
	require.Equal(t, Claimed, e.Evaluate(t0.Add(settle), others))
	st := e.State()
	assert.Equal(t, wire.RoleMaster, st.Role)
	assert.Equal(t, uint64(1), st.Epoch, "every election increments the epoch")
	assert.Equal(t, wire.NodeID(2), st.Vice, "a vice-master is named when two or more eligible nodes are up")

	// Node 2 is not the best: it waits, then follows the claim.
	e2 := newE(2, 100, 0)
	assert.Equal(t, Nothing, e2.Evaluate(t0.Add(settle), []Peer{peer(1, 100, wire.RoleJoining, 0, 0, 0)}))
	assert.Equal(t, Followed, e2.Observe(t0.Add(settle), peer(1, 100, wire.RoleMaster, 1, 1, 2)))
	assert.Equal(t, wire.RoleVice, e2.State().Role)
}

func TestStickyMaster(t *testing.T) {
	// Node 1 outranks everyone but joins late: it follows the live master.
	e := newE(1, 250, 0)
	master := peer(3, 100, wire.RoleMaster, 4, 3, 2)
	for _, dt := range []time.Duration{0, settle, 10 * settle} {
		e.Evaluate(t0.Add(dt), []Peer{master, peer(2, 100, wire.RoleVice, 4, 3, 2)})
		assert.Equal(t, wire.RoleMember, e.State().Role, "never preempts a live master")
		assert.Equal(t, wire.NodeID(3), e.State().Master)
	}
}

func TestSplitBrainHigherEpochStays(t *testing.T) {
	a := newE(1, 100, 0) // elected last: epoch 5
	a.st = State{Role: wire.RoleMaster, Epoch: 5, Master: 1}
	a.formed = true
	b := newE(2, 200, 0) // outranks a, but elected earlier: epoch 3
	b.st = State{Role: wire.RoleMaster, Epoch: 3, Master: 2}
	b.formed = true
	now := t0.Add(time.Second)
	assert.NotEqual(t, SteppedDown, a.Evaluate(now, []Peer{peer(2, 200, wire.RoleMaster, 3, 2, 0)}))
	assert.Equal(t, wire.RoleMaster, a.State().Role)
	assert.Equal(t, SteppedDown, b.Evaluate(now, []Peer{peer(1, 100, wire.RoleMaster, 5, 1, 0)}))
	assert.Equal(t, State{Role: wire.RoleMember, Epoch: 5, Master: 1}, b.State())
	// Once b follows, a names it vice-master.
	assert.Equal(t, ViceChanged, a.Evaluate(now, []Peer{peer(2, 200, wire.RoleMember, 5, 1, 0)}))
	assert.Equal(t, wire.NodeID(2), a.State().Vice)
}

func TestSplitBrainSameEpochRankDecides(t *testing.T) {
	a := newE(1, 100, 0)
	a.st = State{Role: wire.RoleMaster, Epoch: 4, Master: 1}
	b := newE(2, 100, 0)
	b.st = State{Role: wire.RoleMaster, Epoch: 4, Master: 2}
	now := t0.Add(time.Second)
	// The better candidate stays master; once the heal has settled (a
	// newer master would have been heard by then) it claims above the
	// shared epoch, so that its writes from now on are ordered after both
	// sides'.
	assert.Equal(t, Nothing, a.Evaluate(now, []Peer{peer(2, 100, wire.RoleMaster, 4, 2, 0)}))
	assert.Equal(t, SteppedDown, b.Evaluate(now, []Peer{peer(1, 100, wire.RoleMaster, 4, 1, 0)}))
	later := now.Add(a.cfg.Settle)
	for at := now.Add(10 * time.Millisecond); at.Before(later); at = at.Add(10 * time.Millisecond) {
		assert.NotEqual(t, Claimed, a.Evaluate(at, []Peer{peer(2, 100, wire.RoleMember, 4, 1, 0)}), "settling")
	}
	assert.Equal(t, Claimed, a.Evaluate(later, []Peer{peer(2, 100, wire.RoleMember, 4, 1, 0)}))
	assert.Equal(t, State{Role: wire.RoleMaster, Epoch: 5, Master: 1, Vice: 2}, a.State())
	assert.Equal(t, Followed, b.Observe(later, peer(1, 100, wire.RoleMaster, 5, 1, 2)))
	assert.Equal(t, uint64(5), b.State().Epoch)
	assert.Equal(t, Nothing, a.Evaluate(later.Add(settle/2), []Peer{peer(2, 100, wire.RoleVice, 5, 1, 2)}))

	// A master of a newer epoch heard while settling wins; no claim.
	c := newE(3, 100, 0)
	c.st = State{Role: wire.RoleMaster, Epoch: 4, Master: 3}
	assert.Equal(t, Nothing, c.Observe(now, peer(4, 100, wire.RoleMaster, 4, 4, 0)))
	assert.Equal(t, SteppedDown, c.Evaluate(now.Add(time.Millisecond), []Peer{peer(4, 100, wire.RoleMember, 4, 3, 0), peer(2, 100, wire.RoleMaster, 5, 2, 0)}))
	assert.Equal(t, Nothing, c.Evaluate(later, []Peer{peer(2, 100, wire.RoleMaster, 5, 2, 0)}))
	assert.Equal(t, uint64(5), c.State().Epoch)

	// An older master heard is no rival: it just steps down.
	d := newE(1, 100, 0)
	d.st = State{Role: wire.RoleMaster, Epoch: 4, Master: 1}
	assert.Equal(t, Nothing, d.Evaluate(now, []Peer{peer(2, 100, wire.RoleMaster, 3, 2, 0)}))
	assert.Equal(t, ViceChanged, d.Evaluate(now.Add(10*time.Millisecond), []Peer{peer(2, 100, wire.RoleMember, 4, 1, 0)}))
	for at := now.Add(20 * time.Millisecond); !at.After(later.Add(settle)); at = at.Add(10 * time.Millisecond) {
		assert.Equal(t, Nothing, d.Evaluate(at, []Peer{peer(2, 100, wire.RoleVice, 4, 1, 2)}))
	}
}

func TestOlderEpochClaimIgnored(t *testing.T) {
	e := newE(3, 100, 0)
	e.Observe(t0, peer(1, 100, wire.RoleMaster, 7, 1, 0))
	assert.Equal(t, Nothing, e.Observe(t0, peer(2, 100, wire.RoleMaster, 6, 2, 0)))
	assert.Equal(t, wire.NodeID(1), e.State().Master)
}

func TestViceTakesOverAtOnce(t *testing.T) {
	e := newE(2, 100, 0)
	now := t0.Add(time.Second)
	e.Evaluate(now, []Peer{peer(1, 100, wire.RoleMaster, 3, 1, 2), peer(3, 100, wire.RoleMember, 3, 1, 2)})
	require.Equal(t, wire.RoleVice, e.State().Role)
	// The master goes silent: the vice claims in the same evaluation.
	assert.Equal(t, Claimed, e.Evaluate(now.Add(time.Millisecond), []Peer{peer(3, 100, wire.RoleMember, 3, 1, 2)}))
	assert.Equal(t, uint64(4), e.State().Epoch)
	assert.Equal(t, wire.NodeID(3), e.State().Vice)
}

func TestOthersWaitForTheVice(t *testing.T) {
	e := newE(1, 200, 0) // outranks the vice, but the vice claims first
	now := t0.Add(time.Second)
	e.Evaluate(now, []Peer{peer(2, 100, wire.RoleMaster, 3, 2, 3), peer(3, 100, wire.RoleVice, 3, 2, 3)})
	assert.Equal(t, Lost, e.Evaluate(now.Add(time.Millisecond), []Peer{peer(3, 100, wire.RoleVice, 3, 2, 3)}))
	assert.Equal(t, wire.RoleJoining, e.State().Role, "the vice is alive: wait for its claim")
}

func TestAmnesiaGuard(t *testing.T) {
	e := newE(1, 250, 3) // best rank, but its membership generation is behind
	peers := []Peer{peer(2, 100, wire.RoleJoining, 0, 0, 0)}
	peers[0].Generation = 7
	assert.Equal(t, Nothing, e.Evaluate(t0.Add(2*settle), peers), "behind a live peer: may not lead")
	e2 := newE(2, 100, 7)
	p1 := peer(1, 250, wire.RoleJoining, 0, 0, 0)
	p1.Generation = 3
	assert.Equal(t, Claimed, evalUntil(e2, 0, 2*settle, []Peer{p1}), "the up-to-date node leads")
}

func TestColdStartQuorum(t *testing.T) {
	alone := newE(1, 100, 5, 1, 2, 3)
	assert.Equal(t, Nothing, alone.Evaluate(t0.Add(10*settle), nil), "alone: 1 of 3 is no quorum")
	withOne := newE(1, 100, 5, 1, 2, 3)
	assert.Equal(t, Claimed, evalUntil(withOne, 9*settle, 11*settle, []Peer{peer(3, 90, wire.RoleJoining, 0, 0, 0)}), "2 of 3 is")
	override := New(Config{Self: Candidate{Node: 1, Priority: 100, Eligible: true}, Members: []wire.NodeID{1, 2, 3},
		AllowAlone: true, Settle: settle, ViceGrace: 20 * time.Millisecond}, t0, 0)
	assert.Equal(t, Claimed, override.Evaluate(t0.Add(settle), nil), "the operator's override")
}

func TestIsolatedMasterStepsDown(t *testing.T) {
	e := newE(1, 100, 0)
	now := t0.Add(time.Second)
	e.st = State{Role: wire.RoleMaster, Epoch: 2, Master: 1, Vice: 2}
	e.Evaluate(now, []Peer{peer(2, 100, wire.RoleVice, 2, 1, 2), peer(3, 100, wire.RoleMember, 2, 1, 2)})
	assert.Equal(t, Lost, e.Evaluate(now.Add(5*time.Millisecond), nil), "all peers at once: our links")
	assert.Equal(t, Nothing, e.Evaluate(now.Add(time.Second), nil), "and it does not claim alone")
}

func TestIneligibleNeverLeads(t *testing.T) {
	e := New(Config{Self: Candidate{Node: 1, Priority: 250}, AllowAlone: true, Settle: settle, ViceGrace: settle}, t0, 0)
	assert.Equal(t, Nothing, e.Evaluate(t0.Add(10*settle), nil))
	assert.Equal(t, wire.RoleJoining, e.State().Role)
}

// Freshness: the best-ranked node does not claim while an eligible live peer
// holds a newer table; the freshest does (as raft compares logs).
func TestFresherTableWins(t *testing.T) {
	e1 := newE(1, 200, 0)
	e1.SetLog(Log{Epoch: 3, Seq: 10}, true)
	p2 := peer(2, 100, wire.RoleJoining, 3, 0, 0)
	p2.Log = Log{Epoch: 3, Seq: 11}
	assert.Equal(t, Nothing, evalUntil(e1, 0, 4*settle, []Peer{p2}), "node 1 outranks node 2 but holds an older table")

	e2 := newE(2, 100, 0)
	e2.SetLog(Log{Epoch: 3, Seq: 11}, true)
	p1 := peer(1, 200, wire.RoleJoining, 3, 0, 0)
	p1.Log = Log{Epoch: 3, Seq: 10}
	assert.Equal(t, Claimed, evalUntil(e2, 0, 4*settle, []Peer{p1}), "the freshest claims")
	assert.True(t, Log{Epoch: 2, Seq: 99}.Less(Log{Epoch: 3, Seq: 1}), "the epoch first, then seq")
}

// A node that has not synced in this life may not lead while it has heard,
// recently, of a newer table, even from a peer gone quiet (the restarted node
// that would wipe the cluster's table); long after, it may.
func TestUnsyncedNodeDoesNotLeadOverANewerTableItHeardOf(t *testing.T) {
	e := New(Config{Self: Candidate{Node: 2, Priority: 100, Eligible: true}, Settle: settle, ViceGrace: 20 * time.Millisecond, AllowAlone: true}, t0, 0)
	e.SetLog(Log{}, false)
	m := peer(1, 100, wire.RoleMaster, 4, 1, 0)
	m.Log = Log{Epoch: 4, Seq: 20000}
	require.Equal(t, Followed, e.Evaluate(t0.Add(settle), []Peer{m}))
	// The master goes quiet; we never got its table.
	assert.Equal(t, Lost, e.Evaluate(t0.Add(settle+10*time.Millisecond), nil))
	assert.Equal(t, Nothing, evalUntil(e, settle+20*time.Millisecond, 5*settle, nil), "an empty table must not take over")
	assert.Equal(t, uint64(4), e.State().Epoch)
	// A synced node in the same place claims once it has listened.
	f := New(Config{Self: Candidate{Node: 2, Priority: 100, Eligible: true}, Settle: settle, ViceGrace: 20 * time.Millisecond, AllowAlone: true}, t0, 0)
	require.Equal(t, Followed, f.Evaluate(t0.Add(settle), []Peer{m}))
	f.SetLog(Log{Epoch: 4, Seq: 20000}, true)
	assert.Equal(t, Lost, f.Evaluate(t0.Add(settle+10*time.Millisecond), nil))
	assert.Equal(t, Claimed, evalUntil(f, settle+20*time.Millisecond, 5*settle, nil))
	// Long after (the master is gone for good), availability wins.
	assert.Equal(t, Claimed, evalUntil(e, 5*settle+10*time.Millisecond, 8*settle, nil))
}

// A follower takes its master's epoch, even an older one than it held; its
// own claims stay above the highest it ever held (the persisted floor).
func TestFollowTakesMasterEpochClaimsAboveFloor(t *testing.T) {
	e := New(Config{Self: Candidate{Node: 2, Priority: 100, Eligible: true}, Settle: settle, ViceGrace: 20 * time.Millisecond, AllowAlone: true}, t0, 9)
	m := peer(1, 100, wire.RoleMaster, 3, 1, 2)
	require.Equal(t, Followed, e.Evaluate(t0.Add(settle), []Peer{m}))
	assert.Equal(t, uint64(3), e.State().Epoch, "the master's epoch")
	// The master is lost; the vice claims above its floor, not at 4.
	require.Equal(t, Claimed, e.Evaluate(t0.Add(settle+10*time.Millisecond), nil))
	assert.Equal(t, uint64(10), e.State().Epoch)
}

// A write acknowledged in a reign newer than the master's was re-asserted
// to it (chaos seed 1483): the master claims above that epoch at once;
// a non-master, or an epoch below the master's, changes nothing.
func TestClaimAboveAReassertedEpoch(t *testing.T) {
	m := newE(2, 100, 0)
	m.st = State{Role: wire.RoleMaster, Epoch: 1, Master: 2}
	peers := []Peer{peer(6, 100, wire.RoleMember, 1, 2, 0)}
	assert.Equal(t, Claimed, m.ClaimAbove(2, peers))
	assert.Equal(t, State{Role: wire.RoleMaster, Epoch: 3, Master: 2, Vice: 6}, m.State())
	assert.Equal(t, Nothing, m.ClaimAbove(2, peers), "already above it")
	f := newE(3, 100, 0)
	f.st = State{Role: wire.RoleMember, Epoch: 1, Master: 2}
	assert.Equal(t, Nothing, f.ClaimAbove(5, peers))
	assert.Equal(t, uint64(1), f.State().Epoch)
}

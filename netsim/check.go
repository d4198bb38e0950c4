package netsim

import (
	"fmt"
	"time"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/elect"
	"github.com/fmagent/fmagent/wire"
)

// Violation is a broken invariant: which, when, and the details.
type Violation struct {
	Invariant string
	At        time.Duration // since the start of the run
	Detail    string
}

func (v *Violation) Error() string {
	return fmt.Sprintf("invariant %q violated at %v: %s", v.Invariant, v.At, v.Detail)
}

// The invariants, by name.
const (
	InvOneMaster     = "one-master-per-epoch"
	InvHealedMaster  = "healed-one-master-last-elected"
	InvFalseDown     = "no-down-while-reaching-master"
	InvCrashDetected = "crash-detected-in-bound"
	InvConverged     = "tables-converge"
	InvAlarmKept     = "acked-alarm-not-lost"
	InvAtomicGroup   = "no-partial-transaction"
	InvNewReign      = "claims-above-earlier-lives"
	InvAppliedOnce   = "request-applied-once"
)

// Checker checks the cluster invariants after every step of a Sim.
type Checker struct {
	s           *Sim
	appliedSeen map[[2]uint64]uint64 // CheckAppliedOnce's, reused
	det         time.Duration
	slack       time.Duration
	// since[a][b]: since when a and b have reached each other without a
	// break (zero: they do not now).
	since [][]time.Time
	// masterView[m-1]: node states in master m's table after its last
	// change, while m was master (nil otherwise); viewBuf is spare storage.
	masterView, viewBuf [][]wire.State
	topo                uint64
	// lossUntil: the end of the last loss burst (impairment the detector
	// is allowed to mistake for silence).
	LossUntil time.Time
	conflict  map[[2]wire.NodeID]time.Time // same-epoch masters, since when
	// hadMaster[i]: the last time node i+1 had a master (or was one).
	hadMaster []time.Time
	// lastMaster[i]: the master node i+1 last followed (or itself).
	lastMaster []wire.NodeID
	// masterWord[i]: the last packet delivered to node i+1 from its master
	// while it followed it (or the last check while it was master).
	masterWord []time.Time
	// Writes, when set, is told of every table change (the chaos clients'
	// acknowledged-write checks).
	Writes *WriteLog
	// life[i]: when node i+1's current life started; heldEpoch[i]: the
	// highest epoch it held (followed or reigned) in this life, and
	// earlierEpoch[i] in every earlier one (checkNewReign).
	life                    []time.Time
	heldEpoch, earlierEpoch []uint64
	err                     *Violation
}

// NewChecker attaches a checker to s.
func NewChecker(s *Sim) *Checker {
	c := &Checker{s: s, det: s.Opt.Interval * time.Duration(s.Opt.Misses), conflict: map[[2]wire.NodeID]time.Time{}}
	maxDelay := max(s.Opt.Nets[0].MaxDelay, s.Opt.Nets[1].MaxDelay)
	c.slack = s.Opt.Interval + 2*maxDelay
	c.hadMaster = make([]time.Time, len(s.Nodes))
	c.lastMaster = make([]wire.NodeID, len(s.Nodes))
	c.masterWord = make([]time.Time, len(s.Nodes))
	c.masterView = make([][]wire.State, len(s.Nodes))
	c.viewBuf = make([][]wire.State, len(s.Nodes))
	c.topo = ^uint64(0)
	c.life = make([]time.Time, len(s.Nodes))
	c.heldEpoch = make([]uint64, len(s.Nodes))
	c.earlierEpoch = make([]uint64, len(s.Nodes))
	c.since = make([][]time.Time, len(s.Nodes))
	for i := range c.since {
		c.since[i] = make([]time.Time, len(s.Nodes))
	}
	prev := s.OnReady
	s.OnReady = func(n *Node, rd *core.Ready) {
		if prev != nil {
			prev(n, rd)
		}
		if c.err == nil && (len(rd.Changed) > 0 || len(rd.Removed) > 0 || rd.Reset) {
			c.checkAtomic(n)
			c.checkFalseDown(n)
			c.checkSameSeq(n)
			if c.Writes != nil {
				c.Writes.checkResurrection(n)
			}
		}
	}
	return c
}

func (v *Violation) orNil() error {
	if v == nil {
		return nil
	}
	return v
}

func (c *Checker) fail(inv, format string, args ...any) error {
	if c.err == nil {
		c.err = &Violation{Invariant: inv, At: c.s.Now.Sub(Epoch0), Detail: fmt.Sprintf(format, args...)}
	}
	return c.err
}

// Err returns the first violation seen, if any.
func (c *Checker) Err() error {
	if c.err == nil {
		return nil
	}
	return c.err
}

// Step checks the invariants that hold after every step.
func (c *Checker) Step() error {
	if c.err != nil {
		return c.err
	}
	s := c.s
	c.refreshTopo()
	// At most one master per epoch among nodes that reach each other (once
	// they have had a heartbeat's time to see each other).
	var masters []*Node
	for _, n := range s.Nodes {
		if n.Up && !n.Paused && n.Core.Role().Role == wire.RoleMaster {
			masters = append(masters, n)
		}
	}
	seen := map[[2]wire.NodeID]bool{}
	for i, a := range masters {
		for _, b := range masters[i+1:] {
			if a.Core.Role().Epoch != b.Core.Role().Epoch || c.reachSince(a.ID, b.ID).IsZero() {
				continue
			}
			// Two masters of one epoch that can talk: allowed only for
			// the moment it takes them to hear each other (one claim may
			// be in flight while the other is made).
			k := [2]wire.NodeID{a.ID, b.ID}
			seen[k] = true
			since, ok := c.conflict[k]
			if !ok {
				c.conflict[k] = s.Now
				since = s.Now
			}
			if t := c.reachSince(a.ID, b.ID); s.Now.Sub(since) > 2*c.slack && s.Now.Sub(t) > 2*c.slack {
				return c.fail(InvOneMaster, "nodes %d and %d are both master of epoch %d since %v, reaching each other since %v",
					a.ID, b.ID, a.Core.Role().Epoch, since.Sub(Epoch0), t.Sub(Epoch0))
			}
		}
	}
	for k := range c.conflict {
		if !seen[k] {
			delete(c.conflict, k)
		}
	}
	for i, n := range s.Nodes {
		if !n.Up || n.Core.Role().Role != wire.RoleMaster {
			c.masterView[i] = nil
		}
	}
	c.checkStale()
	c.checkNewReign()
	return c.err.orNil()
}

// CheckAppliedOnce: no node's table applied one client request twice (two
// changes marked with it at different seqs, core.Node.AppliedRequests). A
// retransmission decided again by a master that had applied it, or by a
// later one whose table held it, is applied twice, and a raise applied
// twice undoes a clear acknowledged in between; the acknowledged-write
// checks see that only when such a clear came between. What a node
// remembers is what its table applied since its last snapshot, with the
// marks that snapshot carried; chaos checks it at every harvest.
func (c *Checker) CheckAppliedOnce() error {
	for _, n := range c.s.Nodes {
		if !n.Up {
			continue
		}
		if c.appliedSeen == nil {
			c.appliedSeen = map[[2]uint64]uint64{}
		}
		clear(c.appliedSeen)
		n.Core.AppliedRequests(func(from wire.NodeID, id, seq uint64) {
			k := [2]uint64{uint64(from), id}
			if first, dup := c.appliedSeen[k]; dup && first != seq && c.err == nil {
				c.fail(InvAppliedOnce, "node %d's table applied node %d's request %#x twice: at seq %d and %d", n.ID, from, id, first, seq)
			}
			c.appliedSeen[k] = seq
		})
	}
	return c.err.orNil()
}

// checkNewReign: a node reigns only above every epoch it held (followed or
// reigned at) in an earlier life. Its disk must say so (core.Ready.MustSync,
// core.DefaultEpochReserve): a restarted node that claimed an epoch it had
// followed, or reigned at, before its crash would make two reigns of one
// (master, epoch), which its peers cannot tell apart.
func (c *Checker) checkNewReign() {
	for i, n := range c.s.Nodes {
		if !n.Up {
			continue
		}
		if !n.StartedAt.Equal(c.life[i]) {
			c.life[i] = n.StartedAt
			c.earlierEpoch[i] = max(c.earlierEpoch[i], c.heldEpoch[i])
			c.heldEpoch[i] = 0
		}
		r := n.Core.Role()
		if r.Master == 0 {
			continue // joining: the epoch it starts at is its floor, not one held
		}
		c.heldEpoch[i] = max(c.heldEpoch[i], r.Epoch)
		if r.Role == wire.RoleMaster && r.Epoch <= c.earlierEpoch[i] {
			c.fail(InvNewReign, "node %d reigns at epoch %d, at or below epoch %d it held in an earlier life", n.ID, r.Epoch, c.earlierEpoch[i])
			return
		}
	}
}

// checkStale: a node flags its table stale only after the stale timeout
// without a word from its master: counted from the later of the last
// word the simulator delivered to it from the master it last followed (a
// packet at that master's epoch, Node.MasterWordAt; or its own tick while
// it was the master) and its start, less the slack of a tick and a
// delivery.
func (c *Checker) checkStale() {
	s := c.s
	for i, n := range s.Nodes {
		if !n.Up {
			continue
		}
		if n.StartedAt.After(c.hadMaster[i]) {
			c.hadMaster[i] = n.StartedAt
		}
		if n.Paused {
			continue
		}
		if m := n.Core.Role().Master; m != 0 {
			c.hadMaster[i] = s.Now
			c.lastMaster[i] = m
			if m == n.ID {
				c.masterWord[i] = s.Now // it is the master itself
			} else {
				c.masterWord[i] = n.MasterWordAt
			}
			continue
		}
		// What it hears from that node once it no longer follows it
		// (fenced, or before a new election) is not a master's word.
		ref := later(n.StartedAt, c.masterWord[i])
		if n.Core.Stale() && s.Now.Sub(ref) < s.Opt.Stale-c.slack {
			c.fail(InvStaleEarly, "node %d flags its table stale %v after the last word from its master %d (stale timeout %v)",
				n.ID, s.Now.Sub(ref), c.lastMaster[i], s.Opt.Stale)
			return
		}
	}
}

// checkSameSeq: a node synced with its master holds, at a given seq, the
// same table as every other node synced with the same master at the same
// epoch and seq: content, not just seq.
func (c *Checker) checkSameSeq(n *Node) {
	if n.Core.Syncing() || n.Core.Stale() {
		return
	}
	r := n.Core.Role()
	if r.Master == 0 {
		return
	}
	seq := n.Core.Table().Seq()
	for _, o := range c.s.Nodes {
		if o == n || !o.Up || o.Paused || o.Core.Syncing() || o.Core.Stale() {
			continue
		}
		if or := o.Core.Role(); or.Master != r.Master || or.Epoch != r.Epoch || o.Core.Table().Seq() != seq {
			continue
		}
		if d, od := n.Core.Table().Digest(), o.Core.Table().Digest(); d != od {
			c.fail(InvSameSeqSameContent, "nodes %d and %d follow master %d at epoch %d and are both at seq %d, with different tables (%016x, %d entities; %016x, %d entities)",
				n.ID, o.ID, r.Master, r.Epoch, seq, d, n.Core.Table().Len(), od, o.Core.Table().Len())
			return
		}
		if d, od := n.Core.Table().TombstoneDigest(), o.Core.Table().TombstoneDigest(); d != od {
			c.fail(InvSameSeqSameContent, "nodes %d and %d follow master %d at epoch %d and are both at seq %d, with different tombstones (%016x; %016x): either may be the next master",
				n.ID, o.ID, r.Master, r.Epoch, seq, d, od)
			return
		}
	}
}

// checkFalseDown: no node marked down by the master while one of its
// networks reaches it. Run when a master's table changed.
func (c *Checker) checkFalseDown(n *Node) {
	s := c.s
	c.refreshTopo()
	i := n.ID - 1
	if n.Core.Role().Role != wire.RoleMaster {
		c.masterView[i] = nil
		return
	}
	prev := c.masterView[i]
	cur := c.viewBuf[i][:0]
	for _, o := range s.Nodes {
		st := wire.State(0)
		if e, ok := n.Core.Table().Get(table.NodeEntityID(o.ID)); ok {
			st = e.State
		}
		cur = append(cur, st)
		if prev != nil && prev[o.ID-1] == wire.StateUp && st == wire.StateDown {
			t := c.reachSince(n.ID, o.ID)
			if !t.IsZero() && t.After(c.LossUntil) && s.Now.Sub(t) > c.det+c.slack {
				c.fail(InvFalseDown, "master %d marked node %d down while reaching it since %v", n.ID, o.ID, t.Sub(Epoch0))
				return
			}
		}
	}
	c.viewBuf[i], c.masterView[i] = prev, cur
}

// refreshTopo updates who has reached whom since when, after a change.
func (c *Checker) refreshTopo() {
	s := c.s
	if s.Topo == c.topo {
		return
	}
	c.topo = s.Topo
	for i := range s.Nodes {
		for j := i + 1; j < len(s.Nodes); j++ {
			r := s.Reach(wire.NodeID(i+1), wire.NodeID(j+1))
			switch {
			case !r:
				c.since[i][j] = time.Time{}
			case c.since[i][j].IsZero():
				c.since[i][j] = s.Now
			}
		}
	}
}

func (c *Checker) reachSince(a, b wire.NodeID) time.Time {
	if a > b {
		a, b = b, a
	}
	return c.since[a-1][b-1]
}

// checkAtomic: a node's table never shows part of a change group. A node
// marked down takes its contained entities down in the same group, so any
// entity of a down node that last changed before the node went down must
// be down too.
func (c *Checker) checkAtomic(n *Node) {
	tab := n.Core.Table()
	tab.Range(func(e *table.Entity) bool {
		if e.Kind != wire.KindNode || e.State != wire.StateDown {
			return true
		}
		for _, id := range tab.Contained(e.Owner, nil) {
			ce, ok := tab.Get(id)
			if ok && ce.State == wire.StateUp && ce.ChangedSeq < e.ChangedSeq {
				c.fail(InvAtomicGroup, "node %d shows node/%d down (seq %d) but its %s up (seq %d)",
					n.ID, e.Owner, e.ChangedSeq, ce.Name, ce.ChangedSeq)
				return false
			}
		}
		return true
	})
}

// Calm reports whether the cluster is whole and agrees on one master and
// vice-master: the condition under which a crash must be detected in bound.
func (c *Checker) Calm() (master, vice wire.NodeID, ok bool) {
	s := c.s
	var st elect.State
	first := true
	for _, n := range s.Nodes {
		if !n.Up {
			continue
		}
		if n.Paused {
			return 0, 0, false
		}
		r := n.Core.Role()
		if first {
			st, first = r, false
		} else if r.Master != st.Master || r.Epoch != st.Epoch || r.Vice != st.Vice {
			return 0, 0, false
		}
	}
	if first || st.Master == 0 {
		return 0, 0, false
	}
	// Every running node is a member in good standing (not fenced, not
	// still rejoining) in the master's table.
	if !s.node(st.Master).Up || st.Vice != 0 && !s.node(st.Vice).Up {
		// A vice that died while its master was paused is still named
		// until the master has judged it (chaos seed 5104, 4-9 nodes and
		// 30 actions: the master crashed 50 ms after it resumed, before it
		// named another; no vice took over, an election did, and the
		// crash was in the tables 120 ms after it).
		return 0, 0, false
	}
	mt := s.node(st.Master).Core.Table()
	for _, n := range s.Nodes {
		if !n.Up {
			continue
		}
		e, ok := mt.Get(table.NodeEntityID(n.ID))
		if !ok || e.State != wire.StateUp || e.Incarnation != n.Core.Incarnation() {
			return 0, 0, false
		}
	}
	for i := range s.Nodes {
		for j := range s.Nodes {
			if i != j && (!s.Connected(wire.NodeID(i+1), wire.NodeID(j+1), wire.NetA) || !s.Connected(wire.NodeID(i+1), wire.NodeID(j+1), wire.NetB)) {
				return 0, 0, false
			}
		}
	}
	return st.Master, st.Vice, true
}

// CheckCrashDetected: every running node shows node id (incarnation inc) down.
func (c *Checker) CheckCrashDetected(id wire.NodeID, inc uint64, crashedAt time.Time) error {
	for _, n := range c.s.Nodes {
		if !n.Up || n.Paused {
			continue
		}
		e, ok := n.Core.Table().Get(table.NodeEntityID(id))
		if !ok || e.State != wire.StateDown || e.Incarnation < inc {
			state := "absent"
			if ok {
				state = fmt.Sprintf("state %d inc %d", e.State, e.Incarnation)
			}
			return c.fail(InvCrashDetected, "node %d still shows crashed node %d (inc %d) as %s %v after the crash (bound %v)",
				n.ID, id, inc, state, c.s.Now.Sub(crashedAt), c.det+c.s.Opt.Interval)
		}
	}
	return nil
}

// CheckHealed: after healing and a quiet period, exactly one master, the
// expected one (the last elected in the partition: RunChaos names it an
// interval and the longest delay after the heal), every running node
// following it, and every table equal to the master's.
func (c *Checker) CheckHealed(expect wire.NodeID) error {
	s := c.s
	var master *Node
	for _, n := range s.Nodes {
		if !n.Up {
			continue
		}
		if n.Core.Role().Role == wire.RoleMaster {
			if master != nil {
				return c.fail(InvHealedMaster, "nodes %d and %d are both master after healing", master.ID, n.ID)
			}
			master = n
		}
	}
	if master == nil {
		return c.fail(InvHealedMaster, "no master after healing")
	}
	if expect != 0 && master.ID != expect {
		return c.fail(InvHealedMaster, "node %d is master after healing; the last elected before it was node %d", master.ID, expect)
	}
	ms := master.Core.Role()
	for _, n := range s.Nodes {
		if !n.Up || n == master {
			continue
		}
		r := n.Core.Role()
		if r.Master != master.ID || r.Epoch != ms.Epoch {
			return c.fail(InvHealedMaster, "node %d follows %d at epoch %d, not master %d at epoch %d", n.ID, r.Master, r.Epoch, master.ID, ms.Epoch)
		}
	}
	md := master.Core.Table().Digest()
	for _, n := range s.Nodes {
		if !n.Up || n == master {
			continue
		}
		if d := n.Core.Table().Digest(); d != md {
			return c.fail(InvConverged, "node %d table digest %016x (seq %d, %d entities) != master %d's %016x (seq %d, %d entities)",
				n.ID, d, n.Core.Table().Seq(), n.Core.Table().Len(), master.ID, md, master.Core.Table().Seq(), master.Core.Table().Len())
		}
		if n.Core.Table().Seq() != master.Core.Table().Seq() {
			continue // tombstones are compared at the same seq
		}
		if d, md := n.Core.Table().TombstoneDigest(), master.Core.Table().TombstoneDigest(); d != md {
			return c.fail(InvConverged, "node %d's tombstones %016x != master %d's %016x (seq %d)",
				n.ID, d, master.ID, md, master.Core.Table().Seq())
		}
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

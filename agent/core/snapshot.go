package core

// Snapshots: a whole table in one transfer, for a node that follows a new
// master or fell too far behind.

import (
	"time"

	"github.com/fmagent/fmagent/wire"
)

func (n *Node) sendSnapshot(to wire.NodeID) {
	n.ms.nextSnap++
	n.stats.SnapshotsSent++
	cs := n.tab.SnapshotChanges(n.group[:0])
	cs = n.applied.appendMarks(cs, n.now, marksWindow*n.cfg.Interval, marksKeep)
	n.group = cs[:0]
	snap := wire.Snapshot{ID: n.ms.nextSnap, UpToSeq: n.tab.Seq(), Last: true}
	for idx := 0; ; idx++ {
		snap.Index = uint16(idx)
		h := n.header()
		b, k, err := n.codec.AppendSnapshot(n.buf(), &h, &snap, cs)
		if err != nil {
			n.event(Event{Kind: EvRejected, Reason: "encode snapshot: " + err.Error()})
			return
		}
		n.send(to, false, b)
		cs = cs[k:]
		if len(cs) == 0 {
			return
		}
	}
}

// groupSnapshot multicasts the table to every member once, right behind
// the coordinator that claims the reign. Every follower of a new reign
// needs the whole table (followNew asks for it at once), and answered one
// by one the master built and sent a snapshot per follower on its
// real-time loop just when the old master's down had to reach every
// table: nine agents, a failover's decision reached the followers 2–4 ms
// after the claim, and the new master's own reader, behind the loops
// building and applying them, came last (docs/bench.md). The followers'
// nacks for the whole table that follow within an interval are answered by
// this one (onNack): what the master changed after it went to the group
// as updates, which a follower holds until its snapshot is in (hold,
// applyPending). One that missed a chunk or took the coordinator late
// asks again after an interval (followerTick) and is answered alone.
func (n *Node) groupSnapshot(now time.Time) {
	if n.liveCount() == 0 {
		return // no one to follow: the first answer to a nack will do
	}
	n.sendSnapshot(0)
	n.ms.groupSnapAt = now
}

// snapAssembly gathers one snapshot's chunks.
type snapAssembly struct {
	id     uint64
	upTo   uint64
	chunks map[uint16][]*heldChange
	last   int       // index of the last chunk, -1 until seen
	at     time.Time // when its latest chunk arrived (followerTick)
	// early: the chunks are the claimant's of Node.early, whose
	// coordinator has not been taken yet: kept for followNew, never
	// applied before (onEarlySnapshot).
	early bool
}

// reset drops the chunks gathered, their held changes recycled into free
// (Node.free: a snapshot of thousands of entities allocated one held
// change each, 2.4 MB at 4,096 entities, on the real-time loop).
func (s *snapAssembly) reset(free *[]*heldChange) {
	s.id, s.upTo, s.last, s.at = 0, 0, -1, time.Time{}
	s.early = false
	for _, hs := range s.chunks {
		*free = append(*free, hs...)
	}
	clear(s.chunks)
}

// gather adds m's chunk to s (a newer snapshot's first chunk replaces an
// older one's); it reports whether m was taken.
func (n *Node) gather(now time.Time, m *wire.Snapshot) bool {
	s := &n.snap
	if m.ID < s.id {
		return false // an older answer (we asked twice): the newer one is coming
	}
	if s.id != m.ID {
		s.reset(&n.free)
		s.id, s.upTo = m.ID, m.UpToSeq
		if s.chunks == nil {
			s.chunks = make(map[uint16][]*heldChange)
		}
	}
	if _, dup := s.chunks[m.Index]; dup {
		return false
	}
	hs := make([]*heldChange, 0, m.NChanges)
	for i := 0; i < int(m.NChanges); i++ {
		hs = append(hs, n.held(&m.Changes[i]))
	}
	s.chunks[m.Index] = hs
	s.at = now
	if m.Last {
		s.last = int(m.Index)
	}
	return true
}

// complete reports whether every chunk of the snapshot gathered is in.
func (s *snapAssembly) complete() bool {
	return s.id != 0 && s.last >= 0 && len(s.chunks) == s.last+1
}

// early is what a claimant of a newer epoch multicast before this node
// took its coordinator (lost on one network, or overtaken on the other):
// the snapshot it sends the group with its claim (groupSnapshot, gathered
// in Node.snap marked early) and its first updates (the old master's
// down, decided right behind them). followNew uses them if this node then
// follows that claimant at that epoch (takeEarly), and drops them
// otherwise. Dropped, the down was learnt only from the new master's next
// heartbeat (netsim: a crashed master's down past its bound at one
// follower).
type early struct {
	from    wire.NodeID
	epoch   uint64
	changes []*heldChange
}

// maxEarlyUpdates bounds the changes kept from a claimant before its
// coordinator; beyond, they are asked for again as any gap is.
const maxEarlyUpdates = 256

// dropEarly forgets what a claimant sent before its coordinator.
func (n *Node) dropEarly() {
	e := &n.early
	n.free = append(n.free, e.changes...)
	clear(e.changes)
	e.changes, e.from, e.epoch = e.changes[:0], 0, 0
	if n.snap.early {
		n.snap.reset(&n.free)
	}
}

// keepEarly reports whether a packet of from at epoch is kept for
// followNew: from a claimant of an epoch newer than ours, to a node that
// is not master. A claimant other than the one kept so far replaces it.
func (n *Node) keepEarly(from wire.NodeID, epoch uint64) bool {
	if n.isMaster() || epoch <= n.el.State().Epoch {
		return false
	}
	if e := &n.early; e.from != from || e.epoch != epoch {
		n.dropEarly()
		e.from, e.epoch = from, epoch
	}
	return true
}

// onEarlySnapshot gathers a chunk of the claimant's group snapshot (see
// early), unless this node is gathering its own master's.
func (n *Node) onEarlySnapshot(now time.Time, from wire.NodeID, epoch uint64, m *wire.Snapshot) {
	if n.snap.id != 0 && !n.snap.early {
		return // gathering our master's: not to be dropped for a claim
	}
	if n.keepEarly(from, epoch) && n.gather(now, m) {
		n.snap.early = true
	}
}

// onEarlyUpdate keeps the claimant's changes (see early).
func (n *Node) onEarlyUpdate(from wire.NodeID, epoch uint64, m *wire.Update) {
	if !n.keepEarly(from, epoch) {
		return
	}
	e := &n.early
	for i := 0; i < int(m.NChanges) && len(e.changes) < maxEarlyUpdates; i++ {
		e.changes = append(e.changes, n.held(&m.Changes[i]))
	}
}

// takeEarly hands followNew what the claimant it now follows sent before
// its coordinator: its snapshot's chunks stay gathered, its updates are
// held as if they had come now; what anyone else sent is dropped. It
// reports whether the snapshot is complete.
func (n *Node) takeEarly() bool {
	st := n.el.State()
	if n.early.from != st.Master || n.early.epoch != st.Epoch {
		n.dropEarly()
		n.snap.reset(&n.free) // the old reign's, if any
		return false
	}
	if !n.snap.early {
		n.snap.reset(&n.free) // the old reign's, if any
	}
	n.snap.early = false // now our master's
	for _, hc := range n.early.changes {
		n.hold(&hc.c)
	}
	n.dropEarly()
	return n.snap.complete()
}

func (n *Node) onSnapshot(now time.Time, m *wire.Snapshot) {
	if !n.wantSnapshot {
		// The master answers a gap it no longer holds in its ring with
		// the whole table (onNack). A follower with that gap takes it:
		// ignored, as it was, the follower asked again every interval
		// and the master built, sealed and sent the whole table every
		// time, in vain — traced in a registration storm, a master's
		// loop ran 90–100 ms at a stretch in sendSnapshot, twice in 200
		// ms. A snapshot that covers nothing we lack is an old answer.
		if !n.tableSynced || n.masterSeq <= n.tab.Seq() || m.UpToSeq <= n.tab.Seq() {
			return
		}
		n.wantSnapshot = true
	}
	if n.snap.early {
		// A claimant's, gathered before its coordinator: our master's
		// comes first (their IDs are not comparable).
		n.snap.reset(&n.free)
	}
	if n.gather(now, m) && n.snap.complete() {
		n.applySnapshot()
	}
}

// applySnapshot replaces the table with the snapshot gathered (complete).
func (n *Node) applySnapshot() {
	s := &n.snap
	n.tab.Reset()
	// What this node remembers of requests (applied ones, and its own
	// answers as an earlier reign's master) is what the table it
	// replaces held: answered from that memory, a write the new table
	// does not hold (the other side's, after a split brain) would pass
	// for applied.
	// The marks the snapshot carries after the table (the requests its
	// sender's table applied lately) are remembered in their place.
	n.applied.reset()
	n.ms.forgetAnswers()
	n.lineage.reset()
	st := n.el.State()
	for i := 0; i <= s.last; i++ {
		for _, hc := range s.chunks[uint16(i)] {
			n.lineage.note(st.Epoch, st.Master, hc.c.Ver)
			if hc.c.Kind == wire.ChangeApplied {
				n.applied.put(&hc.c)
				continue
			}
			if err := n.tab.Apply(&hc.c); err != nil {
				n.event(Event{Kind: EvRejected, Reason: "snapshot apply: " + err.Error()})
			}
		}
	}
	n.tab.SetSeq(s.upTo)
	n.tab.SetHeadEpoch(n.el.State().Epoch)
	n.ledger.forgetCovered(n.tab)
	n.tableSynced = true
	n.masterSeq = max(n.masterSeq, s.upTo)
	s.reset(&n.free)
	n.wantSnapshot = false
	n.rd.Reset = true
	n.stats.SnapshotsApplied++
	n.event(Event{Kind: EvSnapshotApplied, Node: n.el.State().Master})
	for seq := range n.pending {
		if seq <= n.tab.Seq() {
			delete(n.pending, seq)
		}
	}
	if n.stale {
		n.raiseStaleLocal()
	}
	n.applyPending()
}

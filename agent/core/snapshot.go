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

// snapAssembly gathers one snapshot's chunks.
type snapAssembly struct {
	id     uint64
	upTo   uint64
	chunks map[uint16][]*heldChange
	last   int       // index of the last chunk, -1 until seen
	at     time.Time // when its latest chunk arrived (followerTick)
}

// reset drops the chunks gathered, their held changes recycled into free
// (Node.free: a snapshot of thousands of entities allocated one held
// change each, 2.4 MB at 4,096 entities, on the real-time loop).
func (s *snapAssembly) reset(free *[]*heldChange) {
	s.id, s.upTo, s.last, s.at = 0, 0, -1, time.Time{}
	for _, hs := range s.chunks {
		*free = append(*free, hs...)
	}
	clear(s.chunks)
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
	s := &n.snap
	if m.ID < s.id {
		return // an older answer (we asked twice): the newer one is coming
	}
	if s.id != m.ID {
		s.reset(&n.free)
		s.id, s.upTo = m.ID, m.UpToSeq
		if s.chunks == nil {
			s.chunks = make(map[uint16][]*heldChange)
		}
	}
	if _, dup := s.chunks[m.Index]; dup {
		return
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
	if s.last < 0 || len(s.chunks) != s.last+1 {
		return
	}
	// Complete: replace the table in one go.
	n.tab.Reset()
	for i := 0; i <= s.last; i++ {
		for _, hc := range s.chunks[uint16(i)] {
			if err := n.tab.Apply(&hc.c); err != nil {
				n.event(Event{Kind: EvRejected, Reason: "snapshot apply: " + err.Error()})
			}
		}
	}
	n.tab.SetSeq(s.upTo)
	n.tab.SetHeadEpoch(n.el.State().Epoch)
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

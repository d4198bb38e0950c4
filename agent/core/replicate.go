package core

import (
	"time"

	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// heldChange is a change copied out of a packet buffer, so it can wait (in
// the pending set, a staged transaction, a snapshot, the retransmit ring).
type heldChange struct {
	c     wire.Change
	name  [wire.MaxName]byte
	cause [wire.MaxCause]byte
}

func (h *heldChange) set(c *wire.Change) {
	h.c = *c
	h.c.Name = h.name[:copy(h.name[:], c.Name)]
	h.c.Cause = h.cause[:copy(h.cause[:], c.Cause)]
}

// held copies c into a recycled heldChange (applyPending recycles them),
// so a follower's steady stream of updates allocates nothing.
func (n *Node) held(c *wire.Change) *heldChange {
	if k := len(n.free); k > 0 {
		h := n.free[k-1]
		n.free = n.free[:k-1]
		h.set(c)
		return h
	}
	return newHeld(c)
}

func newHeld(c *wire.Change) *heldChange {
	h := new(heldChange)
	h.set(c)
	return h
}

// group is a set of changes the master issues together: one seq range,
// applied all at once by every node (the last carries ChangeGroupEnd).
type group struct {
	changes []wire.Change
	prio    bool // down changes: first, on both networks, high priority
	txn     bool // prepare / ack / commit
	acks    []reportRef
}

type reportRef struct {
	from wire.NodeID
	inc  uint64 // the reporter's incarnation
	id   uint64
}

// pendingTxn is the master's one transaction in flight.
type pendingTxn struct {
	id       uint64
	g        *group
	waiting  []wire.NodeID
	deadline time.Time
}

// masterState is what only the master keeps.
type masterState struct {
	active   bool
	since    time.Time
	ring     []heldChange // retransmit ring, indexed by seq % len
	oldest   uint64       // oldest seq still in the ring (0: empty)
	txn      *pendingTxn
	queue    []*group // groups waiting behind the transaction
	nextTxn  uint64
	nextSnap uint64
	members  []wire.NodeID
	scratch  []wire.NodeID
	memo     map[uint64]memo // last membership report per entity
	dedup    map[reportRef]uint64
	dedupQ   []reportRef
}

type memo struct {
	kind wire.ReportKind
	inc  uint64
	at   time.Time
}

func (m *masterState) init(ringSize int) {
	m.ring = make([]heldChange, ringSize)
	m.memo = make(map[uint64]memo)
	m.dedup = make(map[reportRef]uint64)
}

func (m *masterState) stop() {
	m.active = false
	m.txn = nil
	m.queue = m.queue[:0]
	m.oldest = 0
	clear(m.memo)
}

func (m *masterState) put(c *wire.Change) {
	m.ring[c.Seq%uint64(len(m.ring))].set(c)
	if m.oldest == 0 {
		m.oldest = c.Seq
	}
	if c.Seq-m.oldest >= uint64(len(m.ring)) {
		m.oldest = c.Seq - uint64(len(m.ring)) + 1
	}
}

func (m *masterState) get(seq uint64) *wire.Change {
	if m.oldest == 0 || seq < m.oldest {
		return nil
	}
	h := &m.ring[seq%uint64(len(m.ring))]
	if h.c.Seq != seq {
		return nil
	}
	return &h.c
}

func (n *Node) becomeMaster(now time.Time) {
	n.synced = n.el.State()
	n.ms.stop()
	n.ms.active = true
	n.ms.since = now
	clear(n.pending)
	clear(n.staged)
	n.snap.reset()
	n.wantSnapshot = false
	n.masterWord = now
	n.setFresh()
	n.ledger.dirty = true
	for _, lr := range n.outstanding {
		lr.sentAt = time.Time{}
	}
}

func (n *Node) followNew(now time.Time) {
	n.synced = n.el.State()
	clear(n.pending)
	clear(n.staged)
	n.snap.reset()
	n.wantSnapshot = true
	n.masterSeq = 0
	n.masterWord = now
	n.ledger.dirty = true
	for _, lr := range n.outstanding {
		lr.sentAt = time.Time{}
	}
	// Ask at once: what the new master decided before we followed it (the
	// old master's down, first of all) must not wait for our next tick.
	n.sendNack(n.el.State().Master, 0, 0)
}

// issue orders a group of changes: at once, or behind the transaction in flight.
func (n *Node) issue(g *group) {
	if len(g.changes) == 0 {
		for _, a := range g.acks {
			n.ackReport(a, n.tab.Seq(), 0)
		}
		return
	}
	if n.ms.txn != nil {
		n.ms.queue = append(n.ms.queue, g)
		return
	}
	n.expandNodeDowns(g)
	seq := n.tab.Seq()
	for i := range g.changes {
		seq++
		g.changes[i].Seq = seq
		g.changes[i].Flags &^= wire.ChangeGroupEnd
	}
	g.changes[len(g.changes)-1].Flags |= wire.ChangeGroupEnd
	if g.txn {
		n.startTxn(g)
		return
	}
	n.commitGroup(g)
}

// expandNodeDowns adds, for every node the group takes down, the entities it
// contains that are up, so they go down in the same group. It runs when the
// group is numbered, not when it was decided: a group that waited behind a
// transaction must also take down what that transaction registered.
func (n *Node) expandNodeDowns(g *group) {
	for i := 0; i < len(g.changes); i++ {
		c := &g.changes[i]
		if c.Kind != wire.ChangeState || c.State != wire.StateDown {
			continue
		}
		e, ok := n.tab.Get(c.Entity)
		if !ok || e.Kind != wire.KindNode {
			continue
		}
		by, at := c.By, c.At
		for _, cid := range n.tab.Contained(e.Owner, nil) {
			if ce, ok := n.tab.Get(cid); ok && ce.State == wire.StateUp && !downIn(g.changes, cid) {
				g.changes = append(g.changes, wire.Change{Kind: wire.ChangeState, Entity: cid, State: wire.StateDown, Incarnation: ce.Incarnation, By: by, At: at})
			}
		}
	}
}

func downIn(cs []wire.Change, id uint64) bool {
	for i := range cs {
		if cs[i].Entity == id && cs[i].Kind == wire.ChangeState && cs[i].State == wire.StateDown {
			return true
		}
	}
	return false
}

// commitGroup applies a numbered group locally, keeps it for retransmission,
// sends it and answers the reports behind it.
func (n *Node) commitGroup(g *group) {
	for i := range g.changes {
		n.applyOne(&g.changes[i])
		n.ms.put(&g.changes[i])
	}
	n.sendChanges(0, g.changes, g.prio)
	last := g.changes[len(g.changes)-1].Seq
	for _, a := range g.acks {
		n.ackReport(a, last, 0)
	}
}

// applyOne applies a change to the local table. A change the table refuses
// still consumes its seq: every node refuses it alike, so tables agree.
func (n *Node) applyOne(c *wire.Change) {
	if err := n.tab.Apply(c); err != nil {
		n.event(Event{Kind: EvRejected, Reason: "apply: " + err.Error()})
	}
	if n.tab.Seq() < c.Seq {
		n.tab.SetSeq(c.Seq)
	}
	if c.Kind == wire.ChangeUnregister {
		n.rd.Removed = append(n.rd.Removed, c.Entity)
	} else {
		n.rd.Changed = append(n.rd.Changed, c.Entity)
	}
}

func (n *Node) sendChanges(to wire.NodeID, cs []wire.Change, prio bool) {
	for len(cs) > 0 {
		h := n.header()
		if prio {
			h.Flags |= wire.FlagPriority
		}
		b, k, err := n.codec.AppendUpdate(n.buf(), &h, cs)
		if err != nil || k == 0 {
			n.event(Event{Kind: EvRejected, Reason: "encode update"})
			return
		}
		n.stats.UpdatesSent++
		n.send(to, prio, b)
		cs = cs[k:]
	}
}

func (n *Node) startTxn(g *group) {
	n.ms.nextTxn++
	t := &pendingTxn{id: n.ms.nextTxn, g: g, deadline: n.now.Add(n.cfg.TxnTimeout)}
	for _, id := range n.peerIDs {
		if p := n.peers[id]; n.live(p) && n.fresh(p) {
			t.waiting = append(t.waiting, id)
		}
	}
	n.ms.txn = t
	cs := g.changes
	for len(cs) > 0 {
		h := n.header()
		b, k, err := n.codec.AppendPrepare(n.buf(), &h, t.id, cs)
		if err != nil || k == 0 {
			n.event(Event{Kind: EvRejected, Reason: "encode prepare"})
			break
		}
		n.send(0, g.prio, b)
		cs = cs[k:]
	}
	if len(t.waiting) == 0 {
		n.finishTxn()
	}
}

// fresh: heard within two intervals. A peer already that quiet is not
// waited for: if it is dying, a transaction must not hold the down change
// that is about to follow it.
func (n *Node) fresh(p *peer) bool {
	lim := 2 * n.cfg.Interval
	for net := range p.heard {
		if !p.heard[net].IsZero() && n.now.Sub(p.heard[net]) <= lim {
			return true
		}
	}
	return false
}

// dropWaiting stops waiting for members that are no longer live.
func (n *Node) dropWaiting() {
	t := n.ms.txn
	if t == nil {
		return
	}
	k := 0
	for _, id := range t.waiting {
		if n.live(n.peers[id]) {
			t.waiting[k] = id
			k++
		} else {
			n.event(Event{Kind: EvTxnSuspect, Node: id})
		}
	}
	t.waiting = t.waiting[:k]
	if k == 0 {
		n.finishTxn()
	}
}

func (n *Node) onPrepareAck(from wire.NodeID, txn uint64) {
	t := n.ms.txn
	if t == nil || t.id != txn {
		return
	}
	for i, id := range t.waiting {
		if id == from {
			t.waiting = append(t.waiting[:i], t.waiting[i+1:]...)
			break
		}
	}
	if len(t.waiting) == 0 {
		n.finishTxn()
	}
}

// finishTxn commits the transaction in flight: every member that acked has
// it staged and applies it whole on the commit; one that did not is
// suspected (the detector will take it down if its links are silent) and
// catches up by retransmission.
func (n *Node) finishTxn() {
	t := n.ms.txn
	n.ms.txn = nil
	for _, id := range t.waiting {
		n.event(Event{Kind: EvTxnSuspect, Node: id})
	}
	g := t.g
	for i := range g.changes {
		n.applyOne(&g.changes[i])
		n.ms.put(&g.changes[i])
	}
	h := n.header()
	if b, err := n.codec.AppendCommit(n.buf(), &h, &wire.Commit{Txn: t.id}); err == nil {
		n.send(0, true, b)
	}
	last := g.changes[len(g.changes)-1].Seq
	for _, a := range g.acks {
		n.ackReport(a, last, 0)
	}
	q := n.ms.queue
	n.ms.queue = nil
	for i, qg := range q {
		n.issue(qg)
		if n.ms.txn != nil {
			n.ms.queue = append(n.ms.queue, q[i+1:]...)
			break
		}
	}
}

// stepReplication handles updates, transactions, nacks, snapshots, reports and acks.
func (n *Node) stepReplication(now time.Time, h *wire.Header, p *peer, body []byte) error {
	st := n.el.State()
	fromMaster := p.id == st.Master && h.Epoch == st.Epoch && !n.isMaster()
	switch h.Type {
	case wire.TypeUpdate:
		var m wire.Update
		if err := wire.DecodeUpdate(body, &m); err != nil {
			return err
		}
		if !fromMaster {
			return nil // an older epoch's master, or not ours: ignored
		}
		n.masterWord = now
		for i := 0; i < int(m.NChanges); i++ {
			n.hold(&m.Changes[i])
		}
		n.applyPending()
	case wire.TypePrepare:
		var m wire.Prepare
		if err := wire.DecodePrepare(body, &m); err != nil {
			return err
		}
		if !fromMaster {
			return nil
		}
		hs := n.staged[m.Txn]
		for i := 0; i < int(m.NChanges); i++ {
			hs = append(hs, newHeld(&m.Changes[i]))
		}
		n.staged[m.Txn] = hs
		if last := hs[len(hs)-1]; last.c.Flags&wire.ChangeGroupEnd != 0 {
			ah := n.header()
			if b, err := n.codec.AppendAck(n.buf(), &ah, &wire.Ack{Kind: wire.AckPrepare, ID: m.Txn}); err == nil {
				n.send(p.id, true, b)
			}
		}
	case wire.TypeCommit:
		var m wire.Commit
		if err := wire.DecodeCommit(body, &m); err != nil {
			return err
		}
		if !fromMaster {
			return nil
		}
		hs, ok := n.staged[m.Txn]
		delete(n.staged, m.Txn)
		if ok && !m.Abort {
			for _, hc := range hs {
				if hc.c.Seq > n.tab.Seq() {
					n.pending[hc.c.Seq] = hc
					n.masterSeq = max(n.masterSeq, hc.c.Seq)
				}
			}
			n.applyPending()
		}
	case wire.TypeAck:
		var m wire.Ack
		if err := wire.DecodeAck(body, &m); err != nil {
			return err
		}
		switch m.Kind {
		case wire.AckPrepare:
			if n.isMaster() && h.Epoch == st.Epoch {
				n.onPrepareAck(p.id, m.ID)
			}
		case wire.AckReport:
			n.onReportAck(&m)
		}
	case wire.TypeNack:
		var m wire.Nack
		if err := wire.DecodeNack(body, &m); err != nil {
			return err
		}
		if n.isMaster() && n.mayServe(p, &m) {
			n.onNack(p.id, &m)
		}
	case wire.TypeSnapshot:
		var m wire.Snapshot
		if err := wire.DecodeSnapshot(body, &m); err != nil {
			return err
		}
		if fromMaster {
			n.onSnapshot(now, &m)
		}
	case wire.TypeReport:
		var m wire.Report
		if err := wire.DecodeReport(body, &m); err != nil {
			return err
		}
		if n.isMaster() {
			n.handleReport(now, p.id, reportFromWire(&m))
		}
	}
	return nil
}

func (n *Node) hold(c *wire.Change) {
	if c.Seq <= n.tab.Seq() {
		return
	}
	if c.Seq > n.masterSeq {
		n.masterSeq = c.Seq
	}
	if _, ok := n.pending[c.Seq]; ok {
		return
	}
	if len(n.pending) >= 4*len(n.ms.ring) {
		n.wantSnapshot = true // too far behind: a snapshot is cheaper
		return
	}
	n.pending[c.Seq] = n.held(c)
}

// applyPending applies every complete group that follows the table's seq.
func (n *Node) applyPending() {
	if n.wantSnapshot {
		return // until the snapshot sets the base, seqs mean nothing here
	}
	for {
		next := n.tab.Seq() + 1
		end := next
		for {
			hc, ok := n.pending[end]
			if !ok {
				return // incomplete group: wait (or nack)
			}
			if hc.c.Flags&wire.ChangeGroupEnd != 0 {
				break
			}
			end++
		}
		var at int64
		for s := next; s <= end; s++ {
			hc := n.pending[s]
			delete(n.pending, s)
			n.applyOne(&hc.c)
			n.free = append(n.free, hc)
			n.stats.ChangesApplied++
			at = hc.c.At
		}
		n.rd.Propagation = append(n.rd.Propagation, n.now.Sub(time.Unix(0, at)))
	}
}

func (n *Node) onNack(to wire.NodeID, m *wire.Nack) {
	n.stats.NacksServed++
	last := n.tab.Seq()
	if m.From == 0 || n.ms.get(m.From) == nil {
		n.sendSnapshot(to)
		return
	}
	to2 := min(m.To, last)
	var batch [wire.MaxChanges]wire.Change
	k := 0
	for s := m.From; s <= to2; s++ {
		c := n.ms.get(s)
		if c == nil {
			n.sendSnapshot(to)
			return
		}
		batch[k] = *c
		k++
		n.stats.Retransmits++
		if k == len(batch) || s == to2 {
			n.sendChanges(to, batch[:k], false)
			k = 0
		}
	}
}

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
	last   int // index of the last chunk, -1 until seen
}

func (s *snapAssembly) reset() {
	s.id, s.upTo, s.last = 0, 0, -1
	clear(s.chunks)
}

func (n *Node) onSnapshot(now time.Time, m *wire.Snapshot) {
	if !n.wantSnapshot {
		return
	}
	s := &n.snap
	if m.ID < s.id {
		return // an older answer (we asked twice): the newer one is coming
	}
	if s.id != m.ID {
		s.reset()
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
		hs = append(hs, newHeld(&m.Changes[i]))
	}
	s.chunks[m.Index] = hs
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
	n.masterSeq = max(n.masterSeq, s.upTo)
	s.reset()
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

// followerTick asks for what is missing and watches for a stale cluster.
func (n *Node) followerTick(now time.Time) {
	st := n.el.State()
	if !n.stale && now.Sub(n.masterWord) > n.cfg.StaleTimeout {
		n.stale = true
		n.event(Event{Kind: EvStale})
		n.raiseStaleLocal()
	} else if n.stale && st.Master != 0 && now.Sub(n.masterWord) <= n.cfg.StaleTimeout {
		n.setFresh()
	}
	if st.Master == 0 || now.Before(n.nextNack) {
		return
	}
	if n.wantSnapshot {
		n.sendNack(st.Master, 0, 0)
		return
	}
	if n.masterSeq > n.tab.Seq() {
		if n.gapSince.IsZero() {
			n.gapSince = now
		}
		// Give reordering half an interval before asking.
		if now.Sub(n.gapSince) >= n.cfg.Interval/2 {
			n.sendNack(st.Master, n.tab.Seq()+1, n.masterSeq)
		}
	} else {
		n.gapSince = time.Time{}
	}
}

func (n *Node) sendNack(to wire.NodeID, from, upTo uint64) {
	n.stats.NacksSent++
	n.nextNack = n.now.Add(n.cfg.Interval)
	h := n.header()
	if b, err := n.codec.AppendNack(n.buf(), &h, &wire.Nack{From: from, To: upTo}); err == nil {
		n.send(to, false, b)
	}
}

// StaleCause is the alarm a node raises on itself when it has had no master
// for the stale timeout.
const StaleCause = "stale-cluster"

// raiseStaleLocal marks the node's own copy of the table: no master can
// order this change, so it is local and not numbered; the next snapshot
// from a master replaces it.
func (n *Node) raiseStaleLocal() {
	id := table.NodeEntityID(n.cfg.Node)
	if _, ok := n.tab.Get(id); !ok {
		return
	}
	c := wire.Change{Seq: n.tab.Seq(), Kind: wire.ChangeRaise, Entity: id, Severity: wire.SevMajor,
		By: n.cfg.Node, At: n.now.UnixNano(), Cause: []byte(StaleCause)}
	if n.tab.Apply(&c) == nil {
		n.rd.Changed = append(n.rd.Changed, id)
	}
}

func (n *Node) setFresh() {
	if !n.stale {
		return
	}
	n.stale = false
	n.event(Event{Kind: EvFresh})
	id := table.NodeEntityID(n.cfg.Node)
	if e, ok := n.tab.Get(id); ok && has(e.Alarm(StaleCause)) && !n.isMaster() {
		c := wire.Change{Seq: n.tab.Seq(), Kind: wire.ChangeClear, Entity: id, By: n.cfg.Node, At: n.now.UnixNano(), Cause: []byte(StaleCause)}
		if n.tab.Apply(&c) == nil {
			n.rd.Changed = append(n.rd.Changed, id)
		}
	}
}

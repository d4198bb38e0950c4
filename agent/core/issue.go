package core

// Issuing changes: the master numbers groups of changes, applies them,
// keeps them for retransmission and sends them.

import (
	"time"

	"github.com/fmagent/fmagent/agent/plugin"
	"github.com/fmagent/fmagent/wire"
)

// masterState is what only the master keeps.
type masterState struct {
	active   bool
	since    time.Time
	ring     []heldChange // retransmit ring, indexed by seq % len
	oldest   uint64       // oldest seq still in the ring (0: empty)
	txn      *pendingTxn
	queue    []queued // what waits behind the transaction, in arrival order
	nextTxn  uint64
	nextSnap uint64
	// groupSnapAt is when this master multicast its table to every
	// member, at its claim (groupSnapshot; zero: not this reign): a nack
	// for the whole table within an interval of it is answered by it.
	groupSnapAt time.Time
	// clock: the seq part of the last version this master gave a write
	// (above every version of this epoch its table holds, so a new write
	// is always the newest).
	clock   uint64
	members []wire.NodeID
	scratch []wire.NodeID
	memo    map[uint64]memo       // last membership report per entity
	dedup   map[reportRef]ackMemo // answers for copies (ackReport)
	// inherited: the requests this node had applied when it became
	// master, by earlier masters' hands or its own (appliedReqs).
	inherited map[appliedKey]ackMemo
	dedupQ    []reportRef // applied writes' answers, oldest first
	refusedQ  []reportRef // refusals, oldest first
	adopt     adoptions   // restarted nodes' grace periods (adopt.go)
}

type memo struct {
	kind wire.ReportKind
	inc  uint64
	at   time.Time
}

func (m *masterState) init(ringSize int) {
	m.ring = make([]heldChange, ringSize)
	m.memo = make(map[uint64]memo)
	m.dedup = make(map[reportRef]ackMemo)
}

// forgetAnswers empties the memory of answers (ackReport).
func (m *masterState) forgetAnswers() {
	clear(m.dedup)
	m.dedupQ = m.dedupQ[:0]
	m.refusedQ = m.refusedQ[:0]
}

func (m *masterState) stop() {
	m.active = false
	m.groupSnapAt = time.Time{}
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

// queued is what waits behind the transaction in flight: a group already
// decided (the master's own findings: membership alarms, adoptions), or a
// report, decided only when its turn comes (handleReport).
type queued struct {
	g  *group
	r  *plugin.Report
	re reassert
}

// issue orders a group of changes: at once, or behind the transaction in flight.
func (n *Node) issue(g *group) {
	if len(g.changes) == 0 {
		for _, a := range g.acks {
			n.ackReport(a, n.tab.Seq(), g.code, g.ver)
		}
		return
	}
	if n.ms.txn != nil {
		n.ms.queue = append(n.ms.queue, queued{g: g})
		return
	}
	n.expandNodeDowns(g)
	seq := n.tab.Seq()
	for i := range g.changes {
		seq++
		g.changes[i].Seq = seq
		g.changes[i].Flags &^= wire.ChangeGroupEnd | wire.ChangeReqDisplaced
		g.changes[i].Req = 0
	}
	if code := g.ackCode(); len(g.acks) == 1 && (code == ackOK || code == ackDisplaced) && !g.newLife {
		markRequest(g.changes, g.acks[0], code)
	}
	g.changes[len(g.changes)-1].Flags |= wire.ChangeGroupEnd
	n.stamp(g)
	if g.txn {
		n.startTxn(g)
		return
	}
	n.commitGroup(g)
}

// stamp gives every change of g that does not carry one (a re-asserted
// write keeps the version it was acknowledged with) this reign's next
// version.
func (n *Node) stamp(g *group) {
	ep := n.el.State().Epoch
	for i := range g.changes {
		c := &g.changes[i]
		if c.Ver.IsZero() {
			n.ms.clock = max(n.ms.clock+1, c.Seq)
			c.Ver = wire.WriteVersion{Epoch: ep, Seq: n.ms.clock, Node: n.cfg.Node}
		} else if c.Ver.Epoch == ep {
			n.ms.clock = max(n.ms.clock, c.Ver.Seq)
		}
	}
}

// expandNodeDowns adds, for every node the group takes down, the entities it
// contains that are up, so they go down in the same group, and the node's
// membership alarm (nodeDownAlarm), which masterAlarms would otherwise
// raise in a group of its own right after: one update, applied and
// published once on every node, and no reader sees the node down without
// it. It runs when the group is numbered, not when it was decided: a group
// that waited behind a transaction must also take down what that
// transaction registered.
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
		if !nodeAlarmed(e) && !raisedIn(g.changes, e.ID) {
			g.changes = append(g.changes, n.nodeDownAlarm(e, at))
		}
	}
}

// raisedIn reports whether cs raise a membership alarm on entity id.
func raisedIn(cs []wire.Change, id uint64) bool {
	for i := range cs {
		if c := &cs[i]; c.Entity == id && c.Kind == wire.ChangeRaise &&
			(string(c.Cause) == UnreachableCause || string(c.Cause) == LeftCause) {
			return true
		}
	}
	return false
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
	last := &g.changes[len(g.changes)-1]
	for _, a := range g.acks {
		n.ackReport(a, last.Seq, g.ackCode(), last.Ver)
	}
}

// applyOne applies a change to the local table. A change the table refuses
// still consumes its seq: every node refuses it alike, so tables agree.
func (n *Node) applyOne(c *wire.Change) {
	if err := n.tab.Apply(c); err != nil {
		n.event(Event{Kind: EvRejected, Reason: "apply: " + err.Error()})
	} else if c.Kind == wire.ChangeClear {
		n.ledger.clearApplied(c.Entity, c.Cause, c.Ver)
	} else if c.Kind == wire.ChangeUnregister {
		n.ledger.unregisterApplied(c.Entity, c.Ver)
	}
	if n.tab.Seq() < c.Seq {
		n.tab.SetSeq(c.Seq)
	}
	// Only the reign followed or led applies through here.
	st := n.el.State()
	n.lineage.note(st.Epoch, st.Master, c.Ver)
	if c.Req != 0 {
		n.applied.put(c)
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

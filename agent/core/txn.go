package core

// Transactions: prepare, ack, commit.

import (
	"time"

	"github.com/fmagent/fmagent/wire"
)

// pendingTxn is the master's one transaction in flight.
type pendingTxn struct {
	id       uint64
	g        *group
	waiting  []wire.NodeID
	deadline time.Time
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
	last := &g.changes[len(g.changes)-1]
	for _, a := range g.acks {
		n.ackReport(a, last.Seq, g.ackCode(), last.Ver)
	}
	q := n.ms.queue
	n.ms.queue = nil
	reign := n.el.State().Epoch
	for i, item := range q {
		if item.r != nil {
			n.decide(item.r, item.re)
		} else {
			n.issue(item.g)
		}
		if !n.ms.active || n.el.State().Epoch != reign {
			// A decision made this master claim a newer epoch (a
			// re-asserted write of a newer reign) or step down: its
			// master state was reset, and what waited is dropped with
			// it, unanswered, as by masterState.stop (the reporters ask
			// again).
			return
		}
		if n.ms.txn != nil {
			n.ms.queue = append(n.ms.queue, q[i+1:]...)
			break
		}
	}
}

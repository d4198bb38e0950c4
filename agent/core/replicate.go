package core

// Replication: the master orders table changes and every node applies them
// in that order. This file holds what the sub-protocols share (held changes,
// groups), the switch between leading and following, and the dispatch of
// replication packets; issue.go orders changes, txn.go runs transactions,
// follow.go is the follower's apply and nack side, snapshot.go transfers
// whole tables and stale.go watches for a cluster without a master.

import (
	"time"

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
	re      reassert          // the report is a re-assertion
	code    uint8             // with no changes: the ack's code
	ver     wire.WriteVersion // with no changes: the version acknowledged
	// displaced: a raise made room by clearing a less severe alarm.
	displaced bool
	// newLife: an owner's word of the reporter's earlier life, decided
	// as its new life's (ownersWord). Its changes are not marked with the
	// request (markRequest): that request was applied, if at all, as the
	// earlier life's word, and a mark says a request was applied once
	// (netsim's request-applied-once).
	newLife bool
}

// ackCode is the code the group's reports are acknowledged with.
func (g *group) ackCode() uint8 {
	if g.displaced {
		return ackDisplaced
	}
	if g.code == ackUnknown && len(g.changes) > 0 {
		return ackOK // a plugin found something to do after all
	}
	return g.code
}

type reportRef struct {
	from wire.NodeID
	inc  uint64 // the reporter's incarnation
	id   uint64
}

func (n *Node) becomeMaster(now time.Time) {
	n.synced = n.el.State()
	n.syncedInc = n.inc
	n.tableSynced = true
	// The table is this reign's from now on (like raft's empty entry at
	// the start of a term): its log compares as of this epoch.
	n.tab.SetHeadEpoch(n.synced.Epoch)
	n.ms.clock = 0
	n.ms.stop()
	n.ms.inherited = n.applied.index(n.ms.inherited)
	n.ms.active = true
	n.ms.since = now
	clear(n.pending)
	clear(n.staged)
	n.snap.reset(&n.free)
	n.dropEarly()
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
	n.syncedInc = n.masterInc()
	n.tableSynced = false
	clear(n.pending)
	clear(n.staged)
	n.wantSnapshot = true
	n.masterSeq = 0
	n.masterWord = now
	n.ledger.dirty = true
	for _, lr := range n.outstanding {
		lr.sentAt = time.Time{}
	}
	// The snapshot and the updates the new master sent the group with its
	// claim may be in already (the coordinator lost on one network or
	// overtaken on the other); anything else gathered was the old reign's.
	if n.takeEarly() {
		n.applySnapshot()
		return
	}
	// Ask at once: what the new master decided before we followed it (the
	// old master's down, first of all) must not wait for our next tick.
	// A master that sent the group its table with its claim leaves this to
	// that snapshot (groupSnapshot); one that missed part of it asks again
	// after an interval.
	n.sendNack(n.el.State().Master, 0, 0)
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
			if h.Epoch > st.Epoch {
				n.onEarlyUpdate(p.id, h.Epoch, &m)
			}
			return nil // an older epoch's master, or not ours: ignored
		}
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
			n.onReportAck(&m, p.id, h.Epoch)
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
		} else if h.Epoch > st.Epoch {
			n.onEarlySnapshot(now, p.id, h.Epoch, &m)
		}
	case wire.TypeReport:
		if n.isMaster() && p.reportPkts.handled(st.Epoch, h.Incarnation, h.Seq) {
			n.stats.ReportCopies++
			return nil // the other network's copy (reportPkts)
		}
		var m wire.Report
		if err := wire.DecodeReport(body, &m); err != nil {
			return err
		}
		if n.isMaster() {
			p.reportPkts.add(st.Epoch, h.Incarnation, h.Seq)
			n.handleReport(now, p.id, reportFromWire(&m), reassert{m.Ver, m.State, m.StateVer})
		}
	}
	return nil
}

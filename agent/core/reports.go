package core

import (
	"slices"
	"time"

	"github.com/fmagent/fmagent/agent/plugin"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// Request is a local client's request to the master.
type Request struct {
	Kind       wire.ReportKind
	Name       string
	EntityKind wire.EntityKind
	Severity   wire.Severity
	Cause      string
	Txn        bool
}

// Ack error codes carried in wire.Ack.Err.
const (
	ackOK        = 0
	ackCollision = 1
	ackBad       = 2
)

type localReport struct {
	id       uint64
	req      Request
	sentAt   time.Time
	internal bool // a re-assertion: nobody waits for its result
}

// ledgerKey names one thing this node asserted: a registration or owner
// state (cause ""), or an alarm (cause).
type ledgerKey struct {
	entity uint64
	cause  string
}

// ledger is what this node's clients registered and raised, acknowledged by
// a master. After a master change it is asserted again, so nothing raised on
// the losing side of a partition, or lost in a failover, stays lost.
type ledger struct {
	items map[ledgerKey]Request
	order []ledgerKey // insertion order, for deterministic re-assertion
	dirty bool
}

func (l *ledger) init() { l.items = make(map[ledgerKey]Request) }

func (l *ledger) put(k ledgerKey, r Request) {
	if _, ok := l.items[k]; !ok {
		l.order = append(l.order, k)
	}
	l.items[k] = r
}

func (l *ledger) del(k ledgerKey) {
	if _, ok := l.items[k]; !ok {
		return
	}
	delete(l.items, k)
	for i, o := range l.order {
		if o == k {
			l.order = append(l.order[:i], l.order[i+1:]...)
			break
		}
	}
}

// record updates the ledger once the master acknowledged r.
func (l *ledger) record(r *Request) {
	id := table.ID(r.Name)
	switch r.Kind {
	case wire.ReportRegister:
		l.put(ledgerKey{id, ""}, *r)
	case wire.ReportUnregister:
		for _, k := range append([]ledgerKey(nil), l.order...) {
			if k.entity == id {
				l.del(k)
			}
		}
	case wire.ReportRaise:
		l.put(ledgerKey{id, r.Cause}, *r)
	case wire.ReportClear:
		l.del(ledgerKey{id, r.Cause})
	case wire.ReportDown, wire.ReportUp:
		// The owner's word on state, kept beside its registration.
		l.put(ledgerKey{id, "\x00state"}, *r)
	}
}

// newReportID numbers a local request. The master de-duplicates
// retransmissions by (reporter, incarnation, ID); the low bits of the
// incarnation are in the ID too, so an acknowledgement meant for an earlier
// life of this node is not taken for one of this life's requests.
func (n *Node) newReportID() uint64 {
	n.nextReport++
	return n.inc<<40 | n.nextReport&(1<<40-1)
}

func validRequest(r *Request) error {
	if r.Name == "" || len(r.Name) > wire.MaxName || len(r.Cause) > wire.MaxCause {
		return ErrBadName
	}
	if r.Kind < wire.ReportFault || r.Kind > wire.ReportUp {
		return ErrRejected
	}
	return nil
}

// Submit takes a local client's request; its Result comes in a later Ready
// (in this one if this node is master). It returns the request's ID.
func (n *Node) Submit(now time.Time, r Request) uint64 {
	n.advance(now)
	id := n.newReportID()
	if err := validRequest(&r); err != nil {
		n.rd.Results = append(n.rd.Results, Result{ID: id, Err: err})
		return id
	}
	if r.EntityKind == 0 {
		r.EntityKind = wire.KindCustom
	}
	lr := &localReport{id: id, req: r}
	n.outstanding[id] = lr
	n.sendReport(lr)
	return id
}

func (n *Node) sendReport(lr *localReport) {
	lr.sentAt = n.now
	st := n.el.State()
	if n.isMaster() {
		r := lr.req
		n.handleReport(n.now, n.cfg.Node, &plugin.Report{
			From: n.cfg.Node, ID: lr.id, Source: sourceOf(r.Kind), Kind: r.Kind, Entity: table.ID(r.Name), Name: r.Name,
			EntityKind: r.EntityKind, Severity: r.Severity, Cause: r.Cause, Incarnation: n.inc, At: n.now.UnixNano(), Txn: r.Txn,
		})
		return
	}
	if st.Master == 0 {
		return // sent when a master appears
	}
	h := n.header()
	m := wire.Report{ID: lr.id, Kind: lr.req.Kind, Txn: lr.req.Txn, Entity: table.ID(lr.req.Name), EntityKind: lr.req.EntityKind,
		Severity: lr.req.Severity, Incarnation: n.inc, Name: []byte(lr.req.Name), Cause: []byte(lr.req.Cause)}
	if b, err := n.codec.AppendReport(n.buf(), &h, &m); err == nil {
		n.send(st.Master, false, b)
	}
}

func sourceOf(k wire.ReportKind) plugin.Source {
	if k == wire.ReportDown || k == wire.ReportUp {
		return plugin.SourceOwner
	}
	return plugin.SourceClient
}

func reportFromWire(m *wire.Report) *plugin.Report {
	return &plugin.Report{ID: m.ID, Source: sourceOf(m.Kind), Kind: m.Kind, Entity: m.Entity, Name: string(m.Name),
		EntityKind: m.EntityKind, Severity: m.Severity, Cause: string(m.Cause), Incarnation: m.Incarnation, Txn: m.Txn}
}

// reportTick resends what the master has not acknowledged, and re-asserts
// the ledger after a master change.
func (n *Node) reportTick(now time.Time) {
	if n.el.State().Master == 0 {
		return
	}
	if n.ledger.dirty && (n.isMaster() || !n.wantSnapshot) {
		n.ledger.dirty = false
		for _, k := range n.ledger.order {
			r := n.ledger.items[k]
			lr := &localReport{id: n.newReportID(), req: r, internal: true}
			n.outstanding[lr.id] = lr
		}
	}
	retry := 5 * n.cfg.Interval
	for _, id := range n.sortedOutstanding() {
		lr := n.outstanding[id]
		if lr.sentAt.IsZero() || now.Sub(lr.sentAt) >= retry {
			n.sendReport(lr)
		}
	}
}

// sortedOutstanding lists the unanswered requests in ID order (map order
// is random; the core's outputs must not be). The slice is reused.
func (n *Node) sortedOutstanding() []uint64 {
	ids := n.idBuf[:0]
	for id := range n.outstanding {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	n.idBuf = ids
	return ids
}

func (n *Node) onReportAck(m *wire.Ack) {
	lr, ok := n.outstanding[m.ID]
	if !ok {
		return
	}
	delete(n.outstanding, m.ID)
	res := Result{ID: m.ID, Seq: m.Seq}
	switch m.Err {
	case ackOK:
		n.ledger.record(&lr.req)
	case ackCollision:
		res.Err = ErrCollision
	default:
		res.Err = ErrRejected
	}
	if !lr.internal {
		n.rd.Results = append(n.rd.Results, res)
	}
}

// ErrCollision: the name hashes to the ID of a different entity.
var ErrCollision = table.ErrCollision

func (n *Node) ackReport(a reportRef, seq uint64, code uint8) {
	if a.from == n.cfg.Node {
		n.onReportAck(&wire.Ack{Kind: wire.AckReport, ID: a.id, Seq: seq, Err: code})
		return
	}
	if code == ackOK {
		n.ms.dedup[a] = seq
		n.ms.dedupQ = append(n.ms.dedupQ, a)
		if len(n.ms.dedupQ) > 4096 {
			delete(n.ms.dedup, n.ms.dedupQ[0])
			n.ms.dedupQ = n.ms.dedupQ[1:]
		}
	}
	h := n.header()
	if b, err := n.codec.AppendAck(n.buf(), &h, &wire.Ack{Kind: wire.AckReport, ID: a.id, Seq: seq, Err: code}); err == nil {
		n.send(a.from, false, b)
	}
}

// handleReport is the fault server: every report, from anywhere, ends here
// on the master and goes through the plugin chain.
func (n *Node) handleReport(now time.Time, from wire.NodeID, r *plugin.Report) {
	r.From = from
	r.At = now.UnixNano()
	ref := reportRef{from: from, inc: r.Incarnation, id: r.ID}
	if seq, dup := n.ms.dedup[ref]; dup && r.ID != 0 {
		n.ackReport(ref, seq, ackOK)
		return
	}
	if r.Source != plugin.SourceMembership && !nameAllowed(from, r.Name, r.Kind == wire.ReportRegister) {
		n.stats.ReportsRefused++
		n.ackReport(ref, 0, ackBad)
		return
	}
	g := &group{txn: r.Txn}
	if r.ID != 0 {
		g.acks = append(g.acks, ref)
	}
	switch r.Kind {
	case wire.ReportRegister:
		if e, ok := n.tab.Get(r.Entity); ok && e.Name != r.Name {
			n.ackReport(ref, 0, ackCollision)
			return
		}
		if r.Entity != table.ID(r.Name) {
			n.ackReport(ref, 0, ackBad)
			return
		}
		if e, ok := n.tab.Get(r.Entity); ok && e.Owner == from && e.Kind == r.EntityKind {
			if e.State == wire.StateUp {
				break // already there: a re-assertion changes nothing
			}
			// Registered again while down (its process restarted, or its
			// node came back): up, under the registrant's incarnation.
			g.changes = append(g.changes, wire.Change{Kind: wire.ChangeState, Entity: r.Entity, State: wire.StateUp,
				Incarnation: max(r.Incarnation, e.Incarnation), By: from, At: r.At})
			break
		}
		g.changes = append(g.changes, wire.Change{Kind: wire.ChangeRegister, Entity: r.Entity, Name: []byte(r.Name),
			EntityKind: r.EntityKind, Owner: from, State: wire.StateUp, Incarnation: r.Incarnation, By: from, At: r.At})
	case wire.ReportUnregister:
		if _, ok := n.tab.Get(r.Entity); ok {
			g.changes = append(g.changes, wire.Change{Kind: wire.ChangeUnregister, Entity: r.Entity, By: from, At: r.At})
		}
	default:
		n.stats.ReportsHandled++
		n.verdicts = n.chain.Run(n.view(), r, n.verdicts[:0])
		for i := range n.verdicts {
			n.addVerdict(g, r, &n.verdicts[i])
		}
	}
	n.issue(g)
}

// addVerdict turns one plugin verdict into changes of the group.
func (n *Node) addVerdict(g *group, r *plugin.Report, v *plugin.Verdict) {
	at := r.At
	by := r.From
	ensure := func(id uint64, name string, kind wire.EntityKind, owner wire.NodeID, state wire.State) *table.Entity {
		if e, ok := n.tab.Get(id); ok {
			return e
		}
		if name == "" || table.ID(name) != id {
			return nil
		}
		if r.Source != plugin.SourceMembership && otherNodes(r.From, name) {
			// A report does not create an entity under another node's
			// prefix (it would be owned by that node).
			return nil
		}
		for i := range g.changes { // registered earlier in this group
			if g.changes[i].Kind == wire.ChangeRegister && g.changes[i].Entity == id {
				return nil
			}
		}
		if kind == 0 {
			kind = table.KindOfName(name)
		}
		g.changes = append(g.changes, wire.Change{Kind: wire.ChangeRegister, Entity: id, Name: []byte(name), EntityKind: kind,
			Owner: owner, State: state, Incarnation: r.Incarnation, By: by, At: at})
		return nil
	}
	name := v.Name
	if name == "" && v.Entity == r.Entity {
		name = r.Name
	}
	owner := table.OwnerOfName(name, r.From)
	switch v.Kind {
	case plugin.MarkDown:
		e := ensure(v.Entity, name, r.EntityKind, owner, wire.StateDown)
		if e == nil || e.State == wire.StateDown {
			return
		}
		g.prio = true
		// A node's contained entities join the group when it is issued
		// (expandNodeDowns), against the table as it is then.
		g.changes = append(g.changes, wire.Change{Kind: wire.ChangeState, Entity: e.ID, State: wire.StateDown, Incarnation: e.Incarnation, By: by, At: at})
	case plugin.MarkUp:
		e := ensure(v.Entity, name, r.EntityKind, owner, wire.StateUp)
		if e == nil {
			return
		}
		inc := e.Incarnation
		if e.Kind == wire.KindNode && r.Incarnation > inc {
			// A node back under a new incarnation restarted: what ran on
			// the old one (not its links) is gone.
			// (What the node already re-registered under its new
			// incarnation is not old: it stays up.)
			for _, cid := range n.tab.Contained(e.Owner, nil) {
				if ce, ok := n.tab.Get(cid); ok && ce.State == wire.StateUp && ce.Kind != wire.KindLink && ce.Incarnation < r.Incarnation {
					g.changes = append(g.changes, wire.Change{Kind: wire.ChangeState, Entity: cid, State: wire.StateDown, Incarnation: ce.Incarnation, By: by, At: at})
				}
			}
			inc = r.Incarnation
		}
		if e.State == wire.StateUp && inc == e.Incarnation {
			return
		}
		g.changes = append(g.changes, wire.Change{Kind: wire.ChangeState, Entity: e.ID, State: wire.StateUp, Incarnation: inc, By: by, At: at})
	case plugin.Raise, plugin.Blame:
		id, nm := v.Entity, name
		if v.Kind == plugin.Blame {
			id, nm, owner = table.NodeEntityID(r.From), table.NodeName(r.From), r.From
		}
		sev := v.Severity
		if sev == 0 {
			sev = wire.SevIndeterminate
		}
		if e := ensure(id, nm, 0, owner, wire.StateUp); e != nil {
			if a, ok := e.Alarm(v.Cause); ok && a.Severity == sev {
				return // already raised: a re-assertion keeps the first raised-at
			}
		}
		g.changes = append(g.changes, wire.Change{Kind: wire.ChangeRaise, Entity: id, Severity: sev, Cause: []byte(v.Cause), By: by, At: at})
	case plugin.Clear:
		if e, ok := n.tab.Get(v.Entity); ok && has(e.Alarm(v.Cause)) {
			g.changes = append(g.changes, wire.Change{Kind: wire.ChangeClear, Entity: v.Entity, Cause: []byte(v.Cause), By: by, At: at})
		}
	}
}

// has reports whether Entity.Alarm found the alarm.
func has(_ *table.Alarm, ok bool) bool { return ok }

// nameAllowed reports whether a client report from node from may name
// name: a good name (wire.CheckName) and, when the report registers it,
// not under another node's node/N/ (node 3 must not register
// node/1/proc/x). The master's own membership findings are not client
// reports.
func nameAllowed(from wire.NodeID, name string, registers bool) bool {
	if name == "" {
		return true // about an entity by ID only: it must exist
	}
	if wire.CheckName(name) != nil {
		return false
	}
	return !registers || !otherNodes(from, name)
}

// otherNodes reports whether name is under node/N/ of a node N other than
// from.
func otherNodes(from wire.NodeID, name string) bool {
	n, ok := table.NodeOfName(name)
	return ok && n != from
}

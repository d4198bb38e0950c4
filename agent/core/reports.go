package core

import (
	"slices"
	"time"

	"github.com/fmagent/fmagent/agent/plugin"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/internal/recency"
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
	// Ver, set only on the ledger's re-assertions: the version the write
	// was acknowledged with. State: a re-asserted registration's state,
	// acknowledged with StateVer (the registration's own version, or that
	// of the owner's later up or down).
	Ver      wire.WriteVersion
	State    wire.State
	StateVer wire.WriteVersion
}

// Ack error codes carried in wire.Ack.Err.
const (
	ackOK        = 0
	ackCollision = 1
	ackBad       = 2
	// ackFull: the entity's alarms are full with alarms at least as severe.
	ackFull = 3
	// ackSuperseded: a re-asserted write older than what the table holds
	// for the same entity or alarm; the re-asserter forgets it.
	ackSuperseded = 4
	// ackDisplaced: applied, displacing the entity's least severe alarm.
	ackDisplaced = 5
	// ackRetry: a re-asserted write from an epoch this master has not
	// reached; not applied, asked again later.
	ackRetry = 6
	// ackUnknown: the owner's state of an entity the table does not hold.
	ackUnknown = 7
	// ackIgnored: a client's write the plugin chain decided not to apply
	// (an owner's down or up about an earlier life of the entity, a
	// plugin's Ignore): not applied, so an error, never a success.
	ackIgnored = 9
)

type localReport struct {
	id       uint64
	req      Request
	sentAt   time.Time
	internal bool // a re-assertion: nobody waits for its result
	// epoch is the newest epoch of a master this request was sent to. A
	// fresh write (no version yet) is never sent to a master of an older
	// epoch: the newer one may have applied it without our hearing the
	// ack, and its copy would then carry a newer version than the one the
	// older master acknowledges, so every later write the older reign
	// acknowledges on the same alarm or entity would lose to it when the
	// newer reign wins the heal (chaos seed 2542).
	epoch uint64
	key   ledgerKey // of an internal re-assertion: the ledger entry it asserts
}

// ledgerKey names one thing this node asserted: a registration (cause ""),
// an owner's state of an entity it did not register (cause stateKey), or an
// alarm (cause).
type ledgerKey struct {
	entity uint64
	cause  string
}

// ledger is what this node's clients registered and raised, acknowledged by
// a master. After a master change it is asserted again, so nothing raised on
// the losing side of a partition, or lost in a failover, stays lost.
//
// It holds, per entity and alarm, the latest write this node's clients had
// acknowledged, with its version: registrations and raises, and also
// unregisters and clears (tombstones), so that a clear acknowledged by a
// master that died before anyone else had it is not lost either. Tombstones
// are bounded (maxLedgerTombs, oldest forgotten first).
type ledger struct {
	items map[ledgerKey]Request
	order []ledgerKey // insertion order, for deterministic re-assertion
	// ents counts the items per entity, so that what every node applies
	// (another node's unregister: unregisterApplied) costs a lookup when
	// this node holds nothing on the entity.
	ents map[uint64]int
	// tombs: the clears and unregisters held, in the order they were last
	// acknowledged, so that the bound (maxLedgerTombs) forgets the one
	// acknowledged longest ago (internal/recency). The order above is no
	// guide: a clear takes its alarm's raise's place there. Until 5
	// December 2026 the bound forgot the first in that order, so a clear of
	// an alarm raised before the ledger's other clears was forgotten as it
	// was recorded (TestLedgerBoundForgetsTheOldestClear), and a master
	// that died before anyone had it, or a split brain's losing side, lost
	// it.
	tombs recency.Queue[ledgerKey, struct{}]
	dirty bool
	// maxEpoch bounds the epochs of the items' versions from above (it is
	// recomputed only when it would hold a write back: newerThan).
	maxEpoch uint64
}

// newerThan reports whether the ledger holds a write acknowledged at an
// epoch above epoch.
func (l *ledger) newerThan(epoch uint64) bool {
	if l.maxEpoch <= epoch {
		return false
	}
	m := uint64(0)
	for _, r := range l.items {
		m = max(m, r.Ver.Epoch, r.StateVer.Epoch)
	}
	l.maxEpoch = m
	return m > epoch
}

const maxLedgerTombs = 1024

// stateKey is the ledger's cause for an owner's state of an entity it did
// not register through this node.
const stateKey = "\x00state"

// tombKey is the ledger's cause for an unregister followed by a
// registration of the same entity through this node: both are re-asserted,
// the unregister first (ledger order), so a master that never had the
// unregister removes the alarms of the entity's earlier life before the
// registration starts the new one. Kept in the registration's place, the
// unregister was lost, and alarms raised before it (on this side of a
// split brain, or replicated before this master was cut off) came back
// with the new registration (netns chaos: svc/w4-2's cpu and net).
const tombKey = "\x00tomb"

func (l *ledger) init() {
	l.items = make(map[ledgerKey]Request)
	l.ents = make(map[uint64]int)
}

func isTomb(r *Request) bool { return r.Kind == wire.ReportUnregister || r.Kind == wire.ReportClear }

func (l *ledger) put(k ledgerKey, r Request) {
	if _, ok := l.items[k]; !ok {
		l.order = append(l.order, k)
		l.ents[k.entity]++
	}
	l.items[k] = r
	if !isTomb(&r) {
		l.tombs.Remove(k)
		return
	}
	if it := l.tombs.Find(k); it != nil {
		l.tombs.Touch(it)
	} else {
		l.tombs.Add(k, struct{}{})
	}
	for l.tombs.Len() > maxLedgerTombs {
		l.del(l.tombs.Oldest().Key)
	}
}

func (l *ledger) del(k ledgerKey) {
	if _, ok := l.items[k]; !ok {
		return
	}
	l.tombs.Remove(k)
	delete(l.items, k)
	if l.ents[k.entity]--; l.ents[k.entity] <= 0 {
		delete(l.ents, k.entity)
	}
	for i, o := range l.order {
		if o == k {
			l.order = append(l.order[:i], l.order[i+1:]...)
			break
		}
	}
}

// record updates the ledger once the master acknowledged r with version v.
//
// Acknowledgements can come out of order: two writes on one entity from
// this node, the first one's acknowledgement lost on both networks and
// given again to its retransmission after the second's. The ledger keeps,
// per entity and alarm, the newest acknowledged word, so an older one
// recorded after it changes nothing it covers. Until 5 December 2026 a
// registration acknowledged after the owner's later state put the
// registration's state (up) back in the ledger over it, and its
// re-assertion after a master change undid the acknowledged state (netsim
// chaos seeds 19152 and 23118, once a master stopped answering the copy of
// a report on the other network a second time).
func (l *ledger) record(r *Request, v wire.WriteVersion) {
	id := table.ID(r.Name)
	w := *r
	w.Ver, w.Txn = v, false
	l.maxEpoch = max(l.maxEpoch, v.Epoch)
	reg, hasReg := l.items[ledgerKey{id, ""}]
	switch r.Kind {
	case wire.ReportRegister:
		if hasReg && v.Less(reg.Ver) {
			return // a newer registration or unregister is held
		}
		if w.State == 0 {
			w.State = wire.StateUp
		}
		w.StateVer = v
		if hasReg && reg.Kind == wire.ReportRegister && v.Less(reg.StateVer) {
			w.State, w.StateVer = reg.State, reg.StateVer // the owner's later word
		}
		if st, ok := l.items[ledgerKey{id, stateKey}]; ok && w.StateVer.Less(st.Ver) {
			w.State, w.StateVer = stateOf(&st), st.Ver
		}
		l.del(ledgerKey{id, stateKey})
		if hasReg && reg.Kind == wire.ReportUnregister {
			// The unregister stays, before the registration (tombKey).
			l.del(ledgerKey{id, ""})
			l.put(ledgerKey{id, tombKey}, reg)
		}
		l.put(ledgerKey{id, ""}, w)
	case wire.ReportUnregister:
		if hasReg && v.Less(reg.Ver) {
			// A later registration is held: it stays, and what the
			// unregister superseded (older alarms, state) goes. An older
			// unregister kept before the registration (tombKey) is
			// replaced by this one, in its place.
			for _, k := range slices.Clone(l.order) {
				cur := l.items[k]
				switch {
				case k.entity != id || k.cause == "" || !cur.Ver.Less(v):
				case k.cause == tombKey:
					l.put(k, w) // in its place, acknowledged now
				default:
					l.del(k)
				}
			}
			return
		}
		// What this node wrote about the entity is superseded by the
		// unregister; the unregister itself is kept (a tombstone).
		for _, k := range slices.Clone(l.order) {
			if k.entity == id {
				l.del(k)
			}
		}
		l.put(ledgerKey{id, ""}, w)
	case wire.ReportRaise, wire.ReportClear:
		k := ledgerKey{id, r.Cause}
		if cur, ok := l.items[k]; ok && v.Less(cur.Ver) {
			return
		}
		l.put(k, w)
	case wire.ReportDown, wire.ReportUp:
		// The owner's word on state: kept with its registration, which
		// re-asserts it (one report, so the state never flickers).
		st := stateOf(r)
		if hasReg && reg.Kind == wire.ReportRegister {
			if v.Less(reg.StateVer) {
				return
			}
			reg.State, reg.StateVer = st, v
			l.items[ledgerKey{id, ""}] = reg
			return
		}
		k := ledgerKey{id, stateKey}
		if cur, ok := l.items[k]; ok && v.Less(cur.Ver) {
			return
		}
		l.put(k, w)
	}
}

// stateOf is the state a ReportDown or ReportUp asserts.
func stateOf(r *Request) wire.State {
	if r.Kind == wire.ReportDown {
		return wire.StateDown
	}
	return wire.StateUp
}

// superseded forgets a re-asserted write the master found older than its
// table's (if the ledger still holds that very write).
func (l *ledger) superseded(r *Request) {
	id := table.ID(r.Name)
	k := ledgerKey{id, r.Cause}
	if r.Kind == wire.ReportRegister || r.Kind == wire.ReportUnregister {
		k.cause = ""
	} else if r.Kind == wire.ReportDown || r.Kind == wire.ReportUp {
		k.cause = stateKey
	}
	if cur, ok := l.items[k]; ok && cur.Ver == r.Ver && cur.Kind == r.Kind {
		l.del(k)
	}
	if r.Kind == wire.ReportUnregister {
		k.cause = tombKey
		if cur, ok := l.items[k]; ok && cur.Ver == r.Ver && cur.Kind == r.Kind {
			l.del(k)
		}
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
	if (r.Kind == wire.ReportRaise || r.Kind == wire.ReportClear) && r.Cause == "" || r.Severity > wire.SevCritical {
		return ErrBadRequest
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
	if lr.req.Ver.IsZero() && st.Master != 0 {
		// A fresh write waits for a master at least as new as any it was
		// sent to (see localReport.epoch), and as the newest write this
		// node's clients had acknowledged: one acknowledged in a newer
		// reign than this master's, re-asserted, would outrank this later
		// write, which this master versions in its older epoch (chaos seed
		// 2254). That re-assertion makes the master claim above its epoch
		// (handleReport), so the wait is short. Meanwhile the outcome is
		// unknown, as on a timeout.
		if st.Epoch < lr.epoch || n.ledger.newerThan(st.Epoch) {
			return
		}
		lr.epoch = st.Epoch
	}
	if n.isMaster() {
		r := lr.req
		n.handleReport(n.now, n.cfg.Node, &plugin.Report{
			From: n.cfg.Node, ID: lr.id, Source: sourceOf(r.Kind), Kind: r.Kind, Entity: table.ID(r.Name), Name: r.Name,
			EntityKind: r.EntityKind, Severity: r.Severity, Cause: r.Cause, Incarnation: n.inc, At: n.now.UnixNano(), Txn: r.Txn,
		}, reassert{r.Ver, r.State, r.StateVer})
		return
	}
	if st.Master == 0 {
		return // sent when a master appears
	}
	h := n.header()
	m := wire.Report{ID: lr.id, Kind: lr.req.Kind, Txn: lr.req.Txn, Entity: table.ID(lr.req.Name), EntityKind: lr.req.EntityKind,
		Severity: lr.req.Severity, Incarnation: n.inc, Name: []byte(lr.req.Name), Cause: []byte(lr.req.Cause),
		Ver: lr.req.Ver, State: lr.req.State, StateVer: lr.req.StateVer}
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
			lr := &localReport{id: n.newReportID(), req: r, internal: true, key: k}
			n.outstanding[lr.id] = lr
		}
	}
	retry := 5 * n.cfg.Interval
	for _, id := range n.sortedOutstanding() {
		lr, ok := n.outstanding[id]
		if !ok {
			continue
		}
		if lr.sentAt.IsZero() || now.Sub(lr.sentAt) >= retry {
			if lr.internal && !n.refreshReassertion(lr) {
				delete(n.outstanding, id)
				continue
			}
			n.sendReport(lr)
		}
	}
}

// refreshReassertion makes a queued re-assertion say what the ledger says
// now: a write acknowledged since it was queued (a fresh registration
// answered by this node as the new master, sent before it in ID order)
// replaces it, and one the ledger dropped is not sent. Without this, the
// copy queued before a re-registration carried the owner's older "down"
// and set the entity the owner had just registered again down (chaos seed
// 5293). It reports whether anything is left to send.
func (n *Node) refreshReassertion(lr *localReport) bool {
	r, ok := n.ledger.items[lr.key]
	if !ok {
		return false
	}
	lr.req = r
	return true
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

// onReportAck takes the master's answer to one of this node's reports,
// sent by node from at epoch.
func (n *Node) onReportAck(m *wire.Ack, from wire.NodeID, epoch uint64) {
	lr, ok := n.outstanding[m.ID]
	if !ok {
		return
	}
	if m.Err == ackRetry {
		lr.sentAt = n.now // asked again at the next retry
		return
	}
	delete(n.outstanding, m.ID)
	res := Result{ID: m.ID, Seq: m.Seq, Ver: m.Ver}
	switch m.Err {
	case ackOK, ackDisplaced:
		res.Displaced = m.Err == ackDisplaced
		if !lr.internal {
			n.ledger.record(&lr.req, m.Ver)
			if lr.req.Kind == wire.ReportRaise {
				n.ledger.boundAlarms(table.ID(lr.req.Name), n.tab)
			}
			// Acknowledged after the update that superseded it.
			n.ledger.forgetCoveredAck(n.tab, &lr.req)
			if st := n.el.State(); st.Master != 0 && (from != st.Master || epoch != st.Epoch) {
				// Answered by a master we no longer follow: the write
				// lives in that reign's table, which may lose to ours,
				// and the ledger was re-asserted to ours when we changed
				// (before this answer). Re-assert it now, or the next
				// master change would be the first to carry it (chaos
				// seed 7348 of 2-9 nodes and 25 actions: a clear asked
				// of master 2 at epoch 4 was answered after the node had
				// followed master 6 at epoch 5, which won; the alarm
				// stayed raised in every table).
				n.ledger.dirty = true
			}
		}
	case ackSuperseded:
		n.ledger.superseded(&lr.req)
	case ackCollision:
		res.Err = ErrCollision
	case ackFull:
		res.Err = ErrAlarmsFull
	case ackLimit:
		res.Err = ErrEntityLimit
	case ackUnknown:
		res.Err = ErrUnknownEntity
	case ackIgnored:
		res.Err = ErrIgnored
	default:
		res.Err = ErrRejected
	}
	if !lr.internal {
		n.rd.Results = append(n.rd.Results, res)
	}
}

// sentByItsLife reports whether r comes from the incarnation that made it
// (newReportID keeps the low bits of the incarnation in the ID's top bits).
func sentByItsLife(r *plugin.Report) bool {
	return r.ID>>40 == r.Incarnation&(1<<24-1)
}

// ownersWord reports whether a request of kind k is its reporter's word as
// the owner of the entity (its registration, its removal, its state): a
// new life's word on its entities is a new write, even when it repeats a
// request of an earlier life (sentByItsLife).
func ownersWord(k wire.ReportKind) bool {
	switch k {
	case wire.ReportRegister, wire.ReportUnregister, wire.ReportUp, wire.ReportDown:
		return true
	}
	return false
}

// ErrCollision: the name hashes to the ID of a different entity.
var ErrCollision = table.ErrCollision

// dedupKeep is how many answers the master keeps for copies of requests:
// so many applied ones, and so many refused.
const dedupKeep = 4096

func (n *Node) ackReport(a reportRef, seq uint64, code uint8, ver wire.WriteVersion) {
	if code != ackRetry && a.id != 0 {
		// Every final answer, refusals too: a copy of the request (on
		// the other network, or a retry) decided again after something
		// changed (a registration re-asserted in between) was applied,
		// while its sender had been told, by the first answer, that it
		// was not (chaos seed 5813 of 3-5 nodes and 40 actions: an
		// owner's down answered "unknown entity", then applied).
		// Once (a copy answered from the memory is already in it), and
		// refusals in a queue of their own: a flood of refused requests
		// must not push out what an applied write was answered, whose
		// copy decided again could apply it over a later write.
		if _, ok := n.ms.dedup[a]; !ok {
			n.ms.dedup[a] = ackMemo{seq, ver, code}
			q := &n.ms.refusedQ
			if code == ackOK || code == ackDisplaced { // applied
				q = &n.ms.dedupQ
			}
			*q = append(*q, a)
			if len(*q) > dedupKeep {
				delete(n.ms.dedup, (*q)[0])
				*q = (*q)[1:]
			}
		}
	}
	if a.from == n.cfg.Node {
		// The master's own request is remembered too: its retry, queued
		// behind a transaction while the first copy waited there as
		// well, was decided again after the first was answered (chaos
		// seed 4931 of two nodes: a raise applied at seq 10 and 12).
		n.onReportAck(&wire.Ack{Kind: wire.AckReport, ID: a.id, Seq: seq, Err: code, Ver: ver}, n.cfg.Node, n.el.State().Epoch)
		return
	}
	h := n.header()
	if b, err := n.codec.AppendAck(n.buf(), &h, &wire.Ack{Kind: wire.AckReport, ID: a.id, Seq: seq, Err: code, Ver: ver}); err == nil {
		n.send(a.from, false, b)
	}
}

// reassert is what a re-asserted write carries: the version it was
// acknowledged with (zero: a fresh write) and, with a registration, the
// owner's latest word on the entity's state.
type reassert struct {
	ver      wire.WriteVersion
	state    wire.State
	stateVer wire.WriteVersion // the version state was acknowledged with
}

// epoch is the newest epoch the re-asserted write carries a version of.
func (re reassert) epoch() uint64 { return max(re.ver.Epoch, re.stateVer.Epoch) }

type ackMemo struct {
	seq  uint64
	ver  wire.WriteVersion
	code uint8
}

// handleReport is the fault server: every report, from anywhere, ends here
// on the master and goes through the plugin chain (registrations excepted).
// A re-asserted write (re.ver set) is applied only if nothing newer on the
// same entity or alarm is in the table, and keeps its version.
//
// While a transaction is in flight, a report waits behind it undecided:
// decided on arrival, its group was numbered and applied after whatever
// queued before it, so the decision had been taken against a table that
// was no longer the one it changed. Chaos seed 449 (with the master
// answering each snapshot request once): a node's re-assertion of a
// registration {4, 93, node 2}, decided while the entity was absent and
// had no tombstone, was applied after the client's unregister {4, 108,
// node 4} that had queued before it, and brought the entity back.
func (n *Node) handleReport(now time.Time, from wire.NodeID, r *plugin.Report, re reassert) {
	r.From = from
	r.At = now.UnixNano()
	if n.ms.txn != nil {
		n.ms.queue = append(n.ms.queue, queued{r: r, re: re})
		return
	}
	n.decide(r, re)
}

// decide runs r through the checks and the plugin chain against the table
// as it is now, and issues what it decides.
func (n *Node) decide(r *plugin.Report, re reassert) {
	from := r.From
	ref := reportRef{from: from, inc: r.Incarnation, id: r.ID}
	if m, dup := n.ms.dedup[ref]; dup && r.ID != 0 {
		n.ackReport(ref, m.seq, m.code, m.ver)
		return
	}
	earlierLife := r.ID != 0 && !sentByItsLife(r) // a request of the reporter's earlier life
	if earlierLife && !ownersWord(r.Kind) {
		// A fault report, a raise or a clear made by the reporter's
		// earlier life, whose answer it never got (it was cut off,
		// marked down, and came back fenced as a new life): applied or
		// not whatever the reporter's life since. If this master or an
		// earlier one applied it, the answer is the first one. Decided
		// again as the new life's word, a raise undid an acknowledged
		// clear made in between (TestRetransmissionFromTheReportersNextLife).
		if m, done := n.applied.find(appliedKey{from, r.ID}); done {
			n.stats.ReportsOfAnEarlierLife++
			n.ackReport(ref, m.seq, m.code, m.ver)
			return
		}
	}
	if m, done := n.ms.inherited[appliedKey{from, r.ID}]; done && r.ID != 0 && sentByItsLife(r) {
		// Applied by an earlier master (or this one in an earlier
		// reign), whose answer the reporter never got: answered as that
		// master did. Decided again, it would be applied twice, over
		// whatever was written since (appliedReqs). Not when the
		// reporter has reincarnated since it made the request: its new
		// life's word is a new write (ownersLife), as it is for the
		// answers this master keeps (ms.dedup, by incarnation); the
		// owner's "up", answered from here after its node was fenced and
		// its entities marked down, left them down (chaos seed 2993 of
		// 3-5 nodes and 40 actions).
		n.stats.ReportsInherited++
		n.ackReport(ref, m.seq, m.code, m.ver)
		return
	}
	if r.Source != plugin.SourceMembership && !nameAllowed(from, r.Name, r.Kind == wire.ReportRegister) {
		n.stats.ReportsRefused++
		n.ackReport(ref, 0, ackBad, wire.WriteVersion{})
		return
	}
	if !re.ver.IsZero() && re.epoch() > n.el.State().Epoch {
		// Written in a reign newer than this master's: asked again later,
		// once this master has claimed above that epoch (at once: the
		// newer reign's master is gone or out of the re-asserter's reach,
		// and without the claim the write would never be applied; chaos
		// seed 1483).
		n.ackReport(ref, 0, ackRetry, wire.WriteVersion{})
		if from != n.cfg.Node {
			n.onElectEvent(n.now, n.el.ClaimAbove(re.epoch(), n.livePeers()))
		}
		return
	}
	g := &group{txn: r.Txn, re: re, newLife: earlierLife && ownersWord(r.Kind)}
	if r.ID != 0 {
		g.acks = append(g.acks, ref)
	}
	switch r.Kind {
	case wire.ReportRegister:
		if e, ok := n.tab.Get(r.Entity); ok && e.Name != r.Name {
			n.ackReport(ref, 0, ackCollision, wire.WriteVersion{})
			return
		}
		if r.Entity != table.ID(r.Name) {
			n.ackReport(ref, 0, ackBad, wire.WriteVersion{})
			return
		}
		if n.overEntityLimit(g, r, r.Entity, r.From) {
			break // answered limit
		}
		n.register(g, r)
	case wire.ReportUnregister:
		n.unregister(g, r)
	default:
		isState := r.Kind == wire.ReportDown || r.Kind == wire.ReportUp
		if !re.ver.IsZero() && isState {
			e, ok := n.tab.Get(r.Entity)
			if !ok {
				n.supersede(g, r, "the state of an entity since unregistered")
				break
			}
			if re.ver.Less(e.StateVer) {
				if e.State != e.OwnerState && r.From == e.Owner {
					// The owner's later word was overruled since by
					// someone else's mark (its entities' down while it
					// was cut off): the owner, back, stands by that word,
					// which it may never have been answered (a split
					// brain's other master applied it too, under a
					// version of its own). Put it back, with its version.
					g.prio = e.OwnerState == wire.StateDown
					g.changes = append(g.changes, wire.Change{Kind: wire.ChangeState, Entity: e.ID, State: e.OwnerState,
						Incarnation: ownersLife(e, r), By: r.From, At: r.At, Ver: e.StateVer})
				}
				n.supersede(g, r, "the owner's later word on its state")
				break
			}
			// The owner's word now, through the plugins as a client's
			// (g.re.ver zero); the change it makes keeps the version
			// the word was acknowledged with (below), so the table's
			// StateVer is that word's, not a new one that would pass
			// for a later word of the owner's.
			g.re.ver = wire.WriteVersion{}
		}
		if isState && r.ID != 0 && g.code == ackOK {
			if _, ok := n.tab.Get(r.Entity); !ok {
				g.code = ackUnknown // not applied: an error, never a success
			}
		}
		n.stats.ReportsHandled++
		n.verdicts = n.chain.Run(n.view(), r, n.verdicts[:0])
		for i := range n.verdicts {
			n.addVerdict(g, r, &n.verdicts[i])
		}
		if !re.ver.IsZero() && isState {
			for i := range g.changes {
				if c := &g.changes[i]; c.Kind == wire.ChangeState && c.Entity == r.Entity && c.By == r.From && c.Ver.IsZero() {
					c.Ver = re.ver
				}
			}
		}
		if r.ID != 0 && re.ver.IsZero() && r.Kind != wire.ReportFault && len(g.changes) == 0 && g.code == ackOK {
			// A client's write (a fault report excepted: an opinion,
			// counted) always changes the table when applied, even to
			// the same value (a new version); nothing changed means the
			// plugins left it unapplied. It was once answered as a
			// success without a version, and the owner's ledger then
			// re-asserted a "down" the master had ignored (netns chaos,
			// svc/w4-1).
			g.code = ackIgnored
		}
	}
	n.issue(g)
}

// supersede answers a re-asserted write that is older than the table's word
// on the same entity or alarm: not applied, and the re-asserter forgets it.
func (n *Node) supersede(g *group, r *plugin.Report, why string) {
	g.code = ackSuperseded
	n.event(Event{Kind: EvSuperseded, Node: r.From, Reason: reportName(r.Kind) + " " + r.Name + " " + r.Cause + ": " + why})
}

// register: a client's registration (always a new write), or an owner's
// re-assertion of one (applied only over older writes on the entity).
func (n *Node) register(g *group, r *plugin.Report) {
	rv := g.re.ver
	state := g.re.state
	if state == 0 {
		state = wire.StateUp
	}
	// The version of the re-asserted word on the state: the owner's later
	// up or down the ledger keeps with the registration, or the
	// registration's own.
	sv := g.re.stateVer
	if sv.Less(rv) {
		sv = rv
	}
	e, present := n.tab.Get(r.Entity)
	ver, _, _ := n.tab.EntityVersion(r.Entity)
	inc := r.Incarnation
	if present && e.Owner == r.From {
		// Never backwards for one owner. A new owner's registration
		// takes its own incarnation: keeping a higher one of the
		// previous owner's (a node restarted later) made the process
		// plugin ignore the new owner's every down and up as "about an
		// earlier life" (netns chaos, svc/w4-1).
		inc = max(inc, e.Incarnation)
	}
	if !rv.IsZero() {
		switch {
		case !present && !ver.Less(rv):
			n.supersede(g, r, "unregistered since")
			return
		case !present && n.lineage.holds(rv):
			// Applied here, and gone: unregistered since, the
			// tombstone forgotten (lineage.go).
			n.supersede(g, r, "unregistered since")
			return
		case present && rv.Less(ver) && e.Owner != r.From && !e.Implicit:
			n.supersede(g, r, "registered by another since")
			return
		case present && !ver.Less(rv) && e.Owner == r.From && e.Kind == r.EntityKind && !e.Implicit:
			// There, as new or newer: only the owner's word on its
			// state (it overrules whatever others marked while the
			// owner was away), with the version it was acknowledged
			// with, unless the table holds a later word of the owner's
			// own (the re-assertion was on its way when the owner's
			// down was decided).
			if sv.Less(e.StateVer) {
				// The owner's later word, which someone else's mark
				// may have overruled since (OwnerState).
				state = e.OwnerState
			}
			if e.State != state || e.Incarnation < r.Incarnation {
				g.prio = state == wire.StateDown
				g.changes = append(g.changes, wire.Change{Kind: wire.ChangeState, Entity: r.Entity, State: state, Incarnation: inc, By: r.From, At: r.At, Ver: sv})
			} else {
				g.ver = ver
			}
			return
		}
		if present && e.Owner == r.From && sv.Less(e.StateVer) {
			state, sv = e.OwnerState, e.StateVer // the owner's later word is the table's
		}
	}
	g.changes = append(g.changes, wire.Change{Kind: wire.ChangeRegister, Entity: r.Entity, Name: []byte(r.Name),
		EntityKind: r.EntityKind, Owner: r.From, State: state, Incarnation: inc, By: r.From, At: r.At, Ver: rv})
	if rv.Less(sv) {
		// The state's own version, so that the table (Entity.StateVer)
		// orders the next re-asserted word against it.
		g.changes = append(g.changes, wire.Change{Kind: wire.ChangeState, Entity: r.Entity, State: state, Incarnation: inc, By: r.From, At: r.At, Ver: sv})
	}
}

// unregister: a client's unregister (a new write, leaving a tombstone even
// if the entity is absent), or a re-assertion of one.
func (n *Node) unregister(g *group, r *plugin.Report) {
	rv := g.re.ver
	ver, born, present := n.tab.EntityVersion(r.Entity)
	if !rv.IsZero() {
		if present && rv.Less(ver) {
			// Registered again since. If this unregister is newer than the
			// end of the entity's previous life (born), it ended the life
			// the present registration follows: the alarms raised in that
			// life, older than the unregister, go with it (cleared at its
			// version); the registration and newer alarms stand.
			if born.Less(rv) {
				if e, ok := n.tab.Get(r.Entity); ok {
					for i := range e.Alarms {
						if a := &e.Alarms[i]; a.Ver.Less(rv) {
							g.changes = append(g.changes, wire.Change{Kind: wire.ChangeClear, Entity: r.Entity, Cause: []byte(a.Cause), By: r.From, At: r.At, Ver: rv})
						}
					}
				}
			}
			n.supersede(g, r, "registered again since")
			return
		}
		if !present && !ver.Less(rv) {
			g.ver = ver // gone already, as new or newer
			return
		}
		if e, ok := n.tab.Get(r.Entity); ok && alarmNewer(e, rv) {
			// An alarm raised after this unregister in the cluster's
			// order (on the other side of a split brain) says the
			// entity lived on after it: the unregister ends only what
			// is older. It once removed the entity with every alarm,
			// and the re-registration that followed brought it back
			// bare (netns chaos in CI: svc/w5-0's cpu alarm, acknowledged
			// at 11/1045/1, absent from every table; golden
			// split-brain-unregister.txt).
			for i := range e.Alarms {
				if a := &e.Alarms[i]; a.Ver.Less(rv) {
					g.changes = append(g.changes, wire.Change{Kind: wire.ChangeClear, Entity: r.Entity, Cause: []byte(a.Cause), By: r.From, At: r.At, Ver: rv})
				}
			}
			n.supersede(g, r, "raised on since")
			return
		}
	}
	g.changes = append(g.changes, wire.Change{Kind: wire.ChangeUnregister, Entity: r.Entity, By: r.From, At: r.At, Ver: rv})
}

// ownersLife is the incarnation an entity's state change carries: the
// owner's agent's, when the owner itself says the entity is up or down
// from a newer life than the entity's (its agent restarted). The owner's
// word adopts the entity, as a re-registration does (register): left under
// the old life, a later master finds it not adopted (adoptInit) and marks
// it down when the grace period ends, undoing the acknowledged up, while
// the master that answered it had no adoption pending (the node had been
// seen down, its entities with it) and would have kept it up (chaos seed
// 12803 of two or three nodes and 20 actions). Only the report's own
// entity (a plugin's verdict on another is not the owner's word on it);
// nodes and links are judged from heartbeats, never adopted.
func ownersLife(e *table.Entity, r *plugin.Report) uint64 {
	if e.ID == r.Entity && e.Kind != wire.KindLink && e.Kind != wire.KindNode && (r.Kind == wire.ReportUp || r.Kind == wire.ReportDown) &&
		r.From == e.Owner && r.Incarnation > e.Incarnation {
		return r.Incarnation
	}
	return e.Incarnation
}

// addVerdict turns one plugin verdict into changes of the group.
func (n *Node) addVerdict(g *group, r *plugin.Report, v *plugin.Verdict) {
	at := r.At
	by := r.From
	rv := g.re.ver
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
		if n.overEntityLimit(g, r, id, owner) {
			return nil // answered limit
		}
		if kind == 0 {
			kind = table.KindOfName(name)
		}
		// Created by a re-asserted raise: born with the raise's version,
		// or the raise would predate it.
		g.changes = append(g.changes, wire.Change{Kind: wire.ChangeRegister, Flags: wire.ChangeImplicit, Entity: id, Name: []byte(name),
			EntityKind: kind, Owner: owner, State: state, Incarnation: r.Incarnation, By: by, At: at, Ver: rv})
		return nil
	}
	name := v.Name
	if name == "" && v.Entity == r.Entity {
		name = r.Name
	}
	owner := table.OwnerOfName(name, r.From)
	// A client's own word (acknowledged to it) is always a new write, so
	// that a later acknowledged write always has a newer version.
	client := r.ID != 0 && rv.IsZero()
	switch v.Kind {
	case plugin.MarkDown:
		e := ensure(v.Entity, name, r.EntityKind, owner, wire.StateDown)
		if e == nil || e.State == wire.StateDown && !(client && e.Kind != wire.KindNode) {
			return
		}
		g.prio = true
		// A node's contained entities join the group when it is issued
		// (expandNodeDowns), against the table as it is then.
		g.changes = append(g.changes, wire.Change{Kind: wire.ChangeState, Entity: e.ID, State: wire.StateDown, Incarnation: ownersLife(e, r), By: by, At: at})
	case plugin.MarkUp:
		e := ensure(v.Entity, name, r.EntityKind, owner, wire.StateUp)
		if e == nil {
			return
		}
		inc := e.Incarnation
		if e.Kind == wire.KindNode && r.Incarnation > inc {
			// A node back under a new incarnation restarted its agent:
			// what it owns (not its links) gets a grace period to be
			// adopted by the new agent, and what is not goes down then
			// (adopt.go).
			if e.State == wire.StateUp {
				n.startAdoption(n.now, e.Owner, r.Incarnation)
			}
			inc = r.Incarnation
		} else {
			inc = ownersLife(e, r)
		}
		if e.State == wire.StateUp && inc == e.Incarnation && !(client && e.Kind != wire.KindNode) {
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
		e, present := n.tab.Get(id)
		if !rv.IsZero() {
			if ev, _, _ := n.tab.EntityVersion(id); !present && !ev.Less(rv) {
				n.supersede(g, r, "the entity was unregistered since")
				return
			}
			if present && rv.Less(e.Born) {
				n.supersede(g, r, "the entity was registered again since")
				return
			}
			av, on := n.tab.AlarmVersion(id, v.Cause)
			if !av.Less(rv) {
				if on {
					g.ver = av // there, as new or newer
				} else {
					n.supersede(g, r, "cleared since")
				}
				return
			}
			if !on && n.lineage.holds(rv) {
				// Applied here, and gone: cleared (or its entity
				// unregistered) since, the tombstone forgotten
				// (lineage.go).
				n.supersede(g, r, "cleared since")
				return
			}
		}
		if present {
			a, on := e.Alarm(v.Cause)
			if on && a.Severity == sev && !client && rv.IsZero() {
				return // already raised: a detector's repeat changes nothing
			}
			if !on && len(e.Alarms) >= n.tab.MaxAlarms() && !n.displace(g, r, e, sev, v.Cause) {
				return
			}
		} else if ensure(id, nm, 0, owner, wire.StateUp); g.code == ackLimit {
			return
		} else if !registeredIn(g.changes, id) {
			// Absent and not to be created by this report (a name
			// under another node's prefix, or not the report's own):
			// the raise cannot be applied, and is answered so. It was
			// once ordered all the same, failed to apply on every node,
			// and was acknowledged as a success.
			g.code = ackUnknown
			return
		}
		g.changes = append(g.changes, wire.Change{Kind: wire.ChangeRaise, Entity: id, Severity: sev, Cause: []byte(v.Cause), By: by, At: at, Ver: rv})
	case plugin.Clear:
		av, on := n.tab.AlarmVersion(v.Entity, v.Cause)
		switch {
		case !rv.IsZero() && on && rv.Less(av):
			n.supersede(g, r, "raised again since")
			return
		case !rv.IsZero() && !on && !av.Less(rv):
			g.ver = av // cleared already, as new or newer
			return
		case rv.IsZero() && !on && !client:
			return // nothing to clear, and nobody waits for a version
		}
		g.changes = append(g.changes, wire.Change{Kind: wire.ChangeClear, Entity: v.Entity, Cause: []byte(v.Cause), By: by, At: at, Ver: rv})
	}
}

// alarmNewer reports whether e holds an alarm with a version newer than v.
func alarmNewer(e *table.Entity, v wire.WriteVersion) bool {
	for i := range e.Alarms {
		if v.Less(e.Alarms[i].Ver) {
			return true
		}
	}
	return false
}

// registeredIn reports whether cs registers entity id.
func registeredIn(cs []wire.Change, id uint64) bool {
	for i := range cs {
		if cs[i].Kind == wire.ChangeRegister && cs[i].Entity == id {
			return true
		}
	}
	return false
}

// displace makes room for a raise of severity sev on e, whose alarms are
// full: the least severe alarm (then the oldest) goes, if it is less severe
// than sev; otherwise the raise is refused (ErrAlarmsFull). A more severe
// alarm is never refused in favour of less severe ones.
//
// A re-asserted raise (acknowledged by an earlier reign, typically the
// losing side of a split brain, whose alarms and the winner's now exceed
// the limit together) is itself the alarm that goes: it is displaced on
// arrival, answered superseded (its reporter's ledger forgets it) and the
// event says so. Refused as full, the ledger kept it and re-asserted it
// at the next master change, which might bring it back much later, when
// room had freed, with no raise asked for since; until then the table
// did not show it (netsim's chaos with two alarms per entity, seed 174).
func (n *Node) displace(g *group, r *plugin.Report, e *table.Entity, sev wire.Severity, cause string) bool {
	li := 0
	for i := range e.Alarms {
		a, l := &e.Alarms[i], &e.Alarms[li]
		if a.Severity < l.Severity || a.Severity == l.Severity && a.Ver.Less(l.Ver) {
			li = i
		}
	}
	least := &e.Alarms[li]
	if least.Severity >= sev {
		if !g.re.ver.IsZero() {
			g.code = ackSuperseded
			n.event(Event{Kind: EvDisplaced, Node: r.From, Name: e.Name, Cause: cause,
				Reason: e.Name + ": " + cause + " (" + sevName(sev) + "), re-asserted, displaced on arrival: the alarms are full of ones as severe or more"})
			return false
		}
		g.code = ackFull
		return false
	}
	for i := range g.changes {
		if g.changes[i].Kind == wire.ChangeClear && g.changes[i].Entity == e.ID && string(g.changes[i].Cause) == least.Cause {
			return true // already made room in this group
		}
	}
	g.changes = append(g.changes, wire.Change{Kind: wire.ChangeClear, Entity: e.ID, Cause: []byte(least.Cause), By: r.From, At: r.At})
	g.displaced = true
	n.event(Event{Kind: EvDisplaced, Node: r.From, Name: e.Name, Cause: least.Cause,
		Reason: e.Name + ": " + cause + " (" + sevName(sev) + ") displaced " + least.Cause + " (" + sevName(least.Severity) + ")"})
	return true
}

func sevName(s wire.Severity) string {
	names := [...]string{"", "indeterminate", "warning", "minor", "major", "critical"}
	if int(s) < len(names) {
		return names[s]
	}
	return "unknown"
}

func reportName(k wire.ReportKind) string {
	names := [...]string{"", "fault", "raise", "clear", "register", "unregister", "down", "up"}
	if int(k) < len(names) {
		return names[k]
	}
	return "unknown"
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

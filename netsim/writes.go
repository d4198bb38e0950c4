package netsim

import (
	"fmt"
	"time"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/elect"
	"github.com/fmagent/fmagent/wire"
)

// The acknowledged-write invariants (DESIGN §9, the consistency model).
const (
	// InvAckedWrite: after healing, every node's table reflects, for every
	// entity and alarm, the acknowledged write with the highest version
	// (raise, clear, register, unregister, the owner's set state).
	InvAckedWrite = "acked-write-reflected"
	// InvResurrected: once a node's table no longer shows an alarm (or an
	// entity) after an acknowledged clear (or unregister), it never shows
	// it again under the same master and epoch unless someone asked to
	// raise (register) it since, or a write ordered after the clear (a
	// higher version: the winning side of a split brain) brought it.
	InvResurrected = "cleared-stays-cleared"
	// InvStaleEarly: no node flags its table stale before stale_timeout
	// has passed without a master.
	InvStaleEarly = "stale-not-before-timeout"
	// InvSameSeqSameContent: two nodes synced with the same master at the
	// same epoch and seq hold the same table.
	InvSameSeqSameContent = "same-seq-same-content"
)

// wkey names what a write is about: an alarm (cause set) or an entity's
// existence (cause "") or its state (cause stateCause).
type wkey struct{ name, cause string }

const stateCause = "\x00state"

// reqRef names a request: IDs are per node (and per incarnation), so the
// node is part of the name; two nodes' IDs may be equal.
type reqRef struct {
	node wire.NodeID
	id   uint64
}

type pendingReq struct {
	key  wkey
	kind wire.ReportKind
	node wire.NodeID
	at   time.Time
}

// ackedWrite is one acknowledged write.
type ackedWrite struct {
	kind     wire.ReportKind
	reporter wire.NodeID
	at       time.Time
	asked    time.Time // when the client asked for it
	ver      wire.WriteVersion
}

// after reports whether a is later than b in the cluster's order: by
// version, then (for writes acknowledged without one) by the time of the ack.
func (a ackedWrite) after(b ackedWrite) bool {
	if a.ver != b.ver {
		return b.ver.Less(a.ver)
	}
	return a.at.After(b.at)
}

// WriteLog records every write the chaos clients make and checks the
// acknowledged-write invariants.
type WriteLog struct {
	s       *Sim
	c       *Checker
	pending map[reqRef]pendingReq
	busy    map[wkey]bool
	// last is the latest acknowledged write per key.
	last map[wkey]ackedWrite
	// entityAckedAt: per entity name, when its latest registration or
	// unregistration was acknowledged, by time rather than the cluster's
	// order (last): a registration acknowledged by a master that died
	// before its reign was heard can outrank, by version, a registration
	// acknowledged later in another reign.
	entityAckedAt map[string]time.Time
	// For cleared-stays-cleared: per key, whether a clear (unregister) was
	// acknowledged and nobody asked to re-create it since; per node, whether
	// it has shown the key absent since then.
	gone       map[wkey]wire.WriteVersion
	absentSeen []map[wkey]wire.WriteVersion
	// reign[i]: the master and epoch node i+1 follows. absentSeen is per
	// reign: a node that follows a new master shows that master's table,
	// which may not have the clear yet (the other side of a split brain
	// that won); the clearing node's re-assertion brings it.
	reign []elect.State
	// displacedAt: per alarm, when a master last displaced it to make
	// room for a more severe raise (core.EvDisplaced; ChaosOptions.MaxAlarms).
	// A raise asked for before that is promised no more: the clear
	// that displaced it is ordered after it, and acknowledged with the
	// displacing raise (to another client) or with nothing at all (a
	// ledger's re-assertion displaced on arrival). Nor is one whose alarm
	// a node's table shows cleared under a newer version, once the alarm
	// was ever displaced: a displacement in the winning reign of a split
	// brain outranks a raise of the losing reign made after it.
	displacedAt map[wkey]time.Time
	seen        []int
	started     []time.Time
	Acked       int
	submitting  bool
	err         error
}

func newWriteLog(s *Sim, c *Checker) *WriteLog {
	w := &WriteLog{s: s, c: c, pending: map[reqRef]pendingReq{}, busy: map[wkey]bool{}, last: map[wkey]ackedWrite{},
		entityAckedAt: map[string]time.Time{}, displacedAt: map[wkey]time.Time{},
		gone: map[wkey]wire.WriteVersion{}, seen: make([]int, len(s.Nodes)), started: make([]time.Time, len(s.Nodes)),
		reign: make([]elect.State, len(s.Nodes))}
	for range s.Nodes {
		w.absentSeen = append(w.absentSeen, map[wkey]wire.WriteVersion{})
	}
	return w
}

// recreates reports whether a write of kind on k can bring back what a
// clear (unregister) removed.
func recreates(k wkey, kind wire.ReportKind) bool {
	return kind == wire.ReportRaise || k.cause == "" && kind == wire.ReportRegister
}

func removes(k wkey, kind wire.ReportKind) bool {
	return kind == wire.ReportClear || k.cause == "" && kind == wire.ReportUnregister
}

// Submit makes a client on node id ask for r; it reports whether it did
// (not if that key has a write in flight, or the node is down).
func (w *WriteLog) Submit(id wire.NodeID, k wkey, r core.Request) bool {
	if w.busy[k] {
		return false
	}
	if recreates(k, r.Kind) {
		// From now on the key may legitimately come back (even within
		// this Submit, on a master applying it at once).
		delete(w.gone, k)
		for _, m := range w.absentSeen {
			delete(m, k)
		}
	}
	// A master answers its own client at once, inside Submit: the answer
	// is harvested once the request is on record.
	w.submitting = true
	rid, ok := w.s.Submit(id, r)
	w.submitting = false
	if !ok {
		return false
	}
	w.s.Tracef("client on node %d submits %v %s %s txn=%v", id, r.Kind, r.Name, r.Cause, r.Txn)
	w.busy[k] = true
	w.pending[reqRef{id, rid}] = pendingReq{key: k, kind: r.Kind, node: id, at: w.s.Now}
	return true
}

// Harvest takes the results the clients received since the last call.
func (w *WriteLog) Harvest() {
	if w.submitting {
		return
	}
	for i, n := range w.s.Nodes {
		if n.Up && n.StartedAt != w.started[i] {
			w.started[i] = n.StartedAt
			w.seen[i] = 0
			clear(w.absentSeen[i])
		}
		for _, r := range n.Results[min(w.seen[i], len(n.Results)):] {
			ref := reqRef{n.ID, r.ID}
			q, ok := w.pending[ref]
			if !ok {
				continue
			}
			delete(w.pending, ref)
			w.busy[q.key] = false
			w.s.Tracef("client on node %d: %v %s %s -> seq %d ver %+v err %v", q.node, q.kind, q.key.name, q.key.cause, r.Seq, r.Ver, r.Err)
			if r.Err != nil {
				continue
			}
			w.Acked++
			a := ackedWrite{kind: q.kind, reporter: q.node, at: r.At, asked: q.at, ver: r.Ver}
			if old, ok := w.last[q.key]; !ok || a.after(old) {
				w.last[q.key] = a
			}
			if q.key.cause == "" && r.At.After(w.entityAckedAt[q.key.name]) {
				w.entityAckedAt[q.key.name] = r.At
			}
			if removes(q.key, q.kind) && !w.inFlight(q.key) && !r.Ver.Less(w.gone[q.key]) {
				w.gone[q.key] = r.Ver
			}
		}
		w.seen[i] = len(n.Results)
	}
}

// observe records the displacements a node's step decided.
func (w *WriteLog) observe(rd *core.Ready) {
	for i := range rd.Events {
		if e := &rd.Events[i]; e.Kind == core.EvDisplaced {
			w.displacedAt[wkey{e.Name, e.Cause}] = w.s.Now
		}
	}
}

// inFlight: a write that could re-create k is still unanswered (it may be
// ordered after the clear).
func (w *WriteLog) inFlight(k wkey) bool {
	for _, p := range w.pending {
		if p.key == k && recreates(k, p.kind) {
			return true
		}
	}
	return false
}

// present reports whether n's table shows k (an alarm, or an entity).
func present(n *Node, k wkey) bool {
	_, ok := shown(n, k)
	return ok
}

// tombstone returns the version of the clear or unregister n's table keeps
// for k (zero if none).
func tombstone(n *Node, k wkey) wire.WriteVersion {
	id := table.ID(k.name)
	if k.cause == "" {
		v, _, _ := n.Core.Table().EntityVersion(id)
		return v
	}
	v, _ := n.Core.Table().AlarmVersion(id, k.cause)
	return v
}

// shown returns the version of what n's table shows for k, if it shows it.
func shown(n *Node, k wkey) (wire.WriteVersion, bool) {
	e, ok := n.Core.Table().Lookup(k.name)
	if !ok {
		return wire.WriteVersion{}, false
	}
	if k.cause == "" {
		return e.Ver, true
	}
	a, ok := e.Alarm(k.cause)
	if !ok {
		return wire.WriteVersion{}, false
	}
	return a.Ver, true
}

// checkResurrection: run after a node's table changed.
func (w *WriteLog) checkResurrection(n *Node) {
	if w.err != nil || len(w.gone) == 0 || n.Core.Syncing() {
		return
	}
	w.Harvest()
	i := n.ID - 1
	if r := n.Core.Role(); r.Master != w.reign[i].Master || r.Epoch != w.reign[i].Epoch {
		w.reign[i] = elect.State{Master: r.Master, Epoch: r.Epoch}
		clear(w.absentSeen[i])
	}
	for k := range w.gone {
		v, on := shown(n, k)
		if !on {
			// Absent: remember the clear (tombstone) this node applied.
			if t := tombstone(n, k); w.absentSeen[i][k].Less(t) {
				w.absentSeen[i][k] = t
			}
		} else if t, ok := w.absentSeen[i][k]; ok && !t.IsZero() && v.Less(t) {
			// Back, under an older version than the clear this node had
			// applied in this reign: resurrected. (A write ordered after
			// the clear — the winning side of a split brain — is newer.)
			w.err = w.c.fail(InvResurrected, "node %d shows %s %q again after it was cleared (acked) and absent, with no raise or register asked for since",
				n.ID, k.name, k.cause)
			return
		}
	}
}

// CheckFinal: after healing, every running node reflects the latest
// acknowledged write on every key, unless the node that asked for it
// restarted since (its word died with it) — or, for the state an owner
// set, unless the owner restarted (what ran on it is gone).
func (w *WriteLog) CheckFinal() error {
	w.Harvest()
	if w.err != nil {
		return w.err
	}
	for k, a := range w.last {
		if w.busy[k] || k.cause == stateCause && w.busy[wkey{name: k.name}] || k.cause != "" && w.busy[wkey{name: k.name}] {
			continue // a later write in flight: not yet promised either way
		}
		rep := w.s.node(a.reporter)
		if !rep.Up || rep.StartedAt.After(a.at) {
			continue
		}
		if k.cause != stateCause {
			// An unregister acknowledged later than an alarm's last write
			// removed the alarm with the entity.
			if u, ok := w.last[wkey{k.name, ""}]; k.cause != "" && ok && u.kind == wire.ReportUnregister && u.after(a) {
				continue
			}
			want := a.kind == wire.ReportRaise || a.kind == wire.ReportRegister
			displaced, ever := w.displacedAt[k]
			ever = ever && a.kind == wire.ReportRaise
			if ever && !displaced.Before(a.asked) {
				continue // displaced since it was asked for: a clear ordered after it
			}
			for _, n := range w.s.Nodes {
				if ever && n.Up && !present(n, k) && a.ver.Less(tombstone(n, k)) {
					// Displaced, by a clear ordered after it though
					// decided before it was asked for: in the winning
					// reign of a split brain, whose versions outrank
					// the losing one's.
					continue
				}
				if n.Up && present(n, k) != want {
					return w.c.fail(InvAckedWrite, "node %d: %s %q present=%v, but the last acked write is %v by node %d at %v (ver %+v)",
						n.ID, k.name, k.cause, !want, a.kind, a.reporter, a.at.Sub(Epoch0), a.ver)
				}
			}
			continue
		}
		// The owner's word on its entity's state, if the entity is there.
		reg, ok := w.last[wkey{k.name, ""}]
		if !ok || reg.kind != wire.ReportRegister {
			continue // no registration: nothing to hold a state
		}
		// A registration that died with its owner's agent promises no
		// entity; but while the entity is there, the word of the owner's
		// new agent on its state holds all the same: that word adopted it
		// (core.ownersLife; chaos seed 12803 of 2-3 nodes and 20 actions).
		// Unless the entity was registered or unregistered after the word
		// (by time: the dead registration's version may outrank the new
		// agent's writes, seed 25573).
		adopted := w.s.node(reg.reporter).StartedAt.After(reg.at)
		if adopted && w.entityAckedAt[k.name].After(a.at) {
			continue
		}
		want := wire.StateUp
		if a.kind == wire.ReportDown {
			want = wire.StateDown
		}
		if !adopted && reg.after(a) {
			want = wire.StateUp // registered again since: up
		}
		for _, n := range w.s.Nodes {
			if !n.Up {
				continue
			}
			e, ok := n.Core.Table().Lookup(k.name)
			if !ok && adopted {
				continue
			}
			if !ok || e.State != want {
				got := "absent"
				if ok {
					got = fmt.Sprint(e.State)
				}
				return w.c.fail(InvAckedWrite, "node %d: %s is %s, but its owner's last acked word is %v at %v (ver %+v)",
					n.ID, k.name, got, a.kind, a.at.Sub(Epoch0), a.ver)
			}
		}
	}
	return nil
}

// Settle forgets the writes still in flight: not yet promised.
func (w *WriteLog) Settle() {
	w.Harvest()
}

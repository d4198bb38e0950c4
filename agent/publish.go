package agent

import (
	"time"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/wire"
)

// shadow is what the agent last published of one entity: every field
// toShm writes (so that a snapshot's entity equal to its shadow is already
// in shared memory as it is), enough to tell what a change changed (for
// the Watch events) and, after a snapshot, which entities must be removed.
// A fixed-size value (the alarm causes are the table's own immutable
// strings), so keeping it allocates nothing beyond the map's growth.
type shadow struct {
	name      string
	kind      wire.EntityKind
	owner     wire.NodeID
	state     wire.State
	inc       uint64
	seq       uint64
	changedAt int64
	changedBy wire.NodeID
	n         uint8
	causes    [shmem.MaxAlarms]string
	sevs      [shmem.MaxAlarms]wire.Severity
	aseqs     [shmem.MaxAlarms]uint64      // seq of each alarm's latest raise or refresh
	rats      [shmem.MaxAlarms]int64       // each alarm's first raise (unchanged by a refresh or a snapshot)
	rbys      [shmem.MaxAlarms]wire.NodeID // who raised each alarm
}

func shadowOf(e *table.Entity) shadow {
	s := shadow{name: e.Name, kind: e.Kind, owner: e.Owner, state: e.State, inc: e.Incarnation, seq: e.ChangedSeq,
		changedAt: e.ChangedAt, changedBy: e.ChangedBy}
	for i := range e.Alarms {
		if i == shmem.MaxAlarms {
			break
		}
		al := &e.Alarms[i]
		s.causes[i], s.sevs[i], s.aseqs[i], s.rats[i], s.rbys[i] = al.Cause, al.Severity, al.Seq, al.RaisedAt, al.RaisedBy
		s.n++
	}
	return s
}

// alarm returns the index of the alarm cause, or -1.
func (s *shadow) alarm(cause string) int {
	for i := 0; i < int(s.n); i++ {
		if s.causes[i] == cause {
			return i
		}
	}
	return -1
}

// publish applies a Ready's table changes to shared memory as one
// transaction (entities, then the master, epoch and stale flag of the
// header), streams them to the watchers and wakes the API calls waiting for
// the table to reach a seq. mu held.
func (a *agent) publish(rd *core.Ready) {
	if a.shm == nil {
		return
	}
	defer a.clusterEvents() // after the table's events (journal.go)
	if rd.Reset || len(rd.Changed) > 0 {
		// The first table this node receives is history, not news: it
		// is journaled but runs no hook (hookglue.go).
		a.journal.loading = !a.journal.loaded
		a.journal.loaded = true
		defer func() { a.journal.loading = false }()
	}
	st := a.core.Role()
	stale := a.core.Stale()
	ctl := !a.pubInit || st.Master != a.pubMaster || st.Epoch != a.pubEpoch || stale != a.pubStale
	if len(rd.Changed) == 0 && len(rd.Removed) == 0 && !rd.Reset && !ctl {
		return
	}
	tab := a.core.Table()
	a.events = a.events[:0]
	from := a.journal.cursor
	a.shm.Begin()
	if rd.Reset {
		// A snapshot replaced the table: remove what is gone, put what
		// differs from what was published. A node that rejoins a cluster
		// of thousands of entities gets the whole table again, most of it
		// as it was: staging and comparing every entity in the segment
		// again made the real-time loop's wake-up that applied the
		// snapshot milliseconds longer (BenchmarkResetPublish). An entity
		// equal to its shadow makes no Watch event either (put).
		for id, old := range a.shadow {
			if _, ok := tab.Get(id); !ok {
				a.remove(id, &old)
			}
		}
		tab.Range(func(e *table.Entity) bool {
			if old, ok := a.shadow[e.ID]; !ok || old != shadowOf(e) {
				a.put(e)
			}
			return true
		})
	} else {
		clear(a.seen)
		for _, id := range rd.Removed {
			if _, ok := tab.Get(id); ok {
				continue // registered again later in the same Ready
			}
			if old, ok := a.shadow[id]; ok {
				a.remove(id, &old)
			}
		}
		for _, id := range rd.Changed {
			if _, dup := a.seen[id]; dup {
				continue
			}
			a.seen[id] = struct{}{}
			if e, ok := tab.Get(id); ok {
				a.put(e)
			}
		}
	}
	if ctl {
		a.shm.SetMaster(st.Master, st.Epoch)
		a.shm.SetStale(stale)
		a.setMaster(st.Master)
		if !a.pubInit || st.Master != a.pubMaster {
			a.nudgeExit()
		}
		a.pubMaster, a.pubEpoch, a.pubStale, a.pubInit = st.Master, st.Epoch, stale, true
	}
	a.shm.Commit()
	a.lastPub = time.Now()
	// The table's changes are in the readers' hands now: when, by this
	// node's clock, goes into their history and Watch events (PublishedAt).
	a.journal.published(from, a.lastPub.UnixNano())
	pub := a.lastPub.UTC()
	for i := range a.events {
		a.events[i].PublishedAt = pub
	}

	for i := range a.events {
		a.broadcast(&a.events[i])
	}
	if len(a.seqWait) > 0 {
		cur := tab.Seq()
		k := 0
		for _, w := range a.seqWait {
			if w.seq <= cur {
				close(w.ch)
			} else {
				a.seqWait[k] = w
				k++
			}
		}
		clear(a.seqWait[k:])
		a.seqWait = a.seqWait[:k]
	}
}

// setMaster keeps masterCh closed while a master is known.
func (a *agent) setMaster(m wire.NodeID) {
	had := a.pubInit && a.pubMaster != 0
	switch {
	case m != 0 && !had:
		close(a.masterCh)
	case m == 0 && had:
		a.masterCh = make(chan struct{})
	}
}

// put stages e in the shared-memory transaction and records the watch
// events it makes.
func (a *agent) put(e *table.Entity) {
	toShm(e, &a.scratch)
	if err := a.shm.Put(&a.scratch); err != nil {
		a.m.shmErrors.Inc()
		a.log.Error("publishing to shared memory", "entity", e.Name, "err", err)
		return
	}
	old, had := a.shadow[e.ID]
	now := shadowOf(e)
	a.shadow[e.ID] = now
	// Every change is journaled (history, hooks, resumable watches), not
	// only when someone watches.
	if !had || old.name != now.name {
		a.addEvent(api.EventRegister, "", 0, e)
		return
	}
	n := a.journal.cursor
	if old.state != now.state {
		a.addEvent(api.EventState, "", 0, e)
	}
	for i := 0; i < int(now.n); i++ {
		// New, or changed (severity, or a new first raise). A refresh of
		// an unchanged alarm (an owner re-asserting it after a failover,
		// a snapshot rebuilding the table) is not announced again.
		if j := old.alarm(now.causes[i]); j < 0 || old.sevs[j] != now.sevs[i] || old.rats[j] != now.rats[i] {
			a.addEvent(api.EventRaise, now.causes[i], now.sevs[i], e)
		}
	}
	for i := 0; i < int(old.n); i++ {
		if now.alarm(old.causes[i]) < 0 {
			a.addEvent(api.EventClear, old.causes[i], 0, e)
		}
	}
	if a.journal.cursor == n && (old.kind != now.kind || old.owner != now.owner || old.inc != now.inc) {
		a.addEvent(api.EventRegister, "", 0, e)
	}
}

// addEvent journals one change of e, hands it to the hooks and, if anyone
// watches, queues its Watch event.
func (a *agent) addEvent(kind api.EventKind, cause string, sev wire.Severity, e *table.Entity) {
	je := a.recordEntity(kind, cause, sev, e)
	a.hookEntry(je)
	if len(a.watchers) > 0 {
		a.events = append(a.events, a.apiEvent(je, e))
	}
}

// remove stages the deletion of id and records its unregister event.
func (a *agent) remove(id uint64, old *shadow) {
	a.shm.Delete(id)
	delete(a.shadow, id)
	je := a.journal.record(jentry{seq: a.core.Table().Seq(), at: time.Now().UnixNano(), kind: api.EventUnregister, id: id,
		name: old.name, ekind: old.kind, owner: old.owner, state: old.state})
	a.hookEntry(je)
	if len(a.watchers) == 0 {
		return
	}
	e := api.Entity{
		ID: api.ID(id), Name: old.name, Kind: api.KindOf(old.kind), Owner: old.owner,
		State: api.StateOf(old.state), Incarnation: old.inc, ChangedSeq: old.seq,
	}
	for i := 0; i < int(old.n); i++ {
		e.Alarms = append(e.Alarms, api.Alarm{Cause: old.causes[i], Severity: api.SeverityOf(old.sevs[i])})
	}
	a.events = append(a.events, api.Event{Seq: a.core.Table().Seq(), Kind: api.EventUnregister, Entity: e,
		Cursor: je.cursor, Agent: a.journal.run, Time: time.Unix(0, je.at).UTC()})
}

// toShm converts a table row into a shared-memory entity, without
// allocating. Bytes past NameLen and CauseLen are left as they were (the
// layout leaves them undefined). At most shmem.MaxAlarms alarms are kept;
// the core is configured with that limit, so none is ever cut.
func toShm(e *table.Entity, d *shmem.Entity) {
	d.ID = e.ID
	d.Incarnation = e.Incarnation
	d.ChangedAt = e.ChangedAt
	d.ChangedSeq = e.ChangedSeq
	d.Owner = e.Owner
	d.ChangedBy = e.ChangedBy
	d.Kind = e.Kind
	d.State = e.State
	d.NameLen = uint8(copy(d.Name[:], e.Name))
	n := min(len(e.Alarms), shmem.MaxAlarms)
	d.NAlarms = uint8(n)
	for i := 0; i < n; i++ {
		src, dst := &e.Alarms[i], &d.Alarms[i]
		dst.RaisedAt = src.RaisedAt
		dst.RaisedBy = src.RaisedBy
		dst.Severity = src.Severity
		dst.CauseLen = uint8(copy(dst.Cause[:], src.Cause))
	}
}

// toAPI converts a table row into the API's entity.
func toAPI(e *table.Entity) api.Entity {
	out := api.Entity{
		ID: api.ID(e.ID), Name: e.Name, Kind: api.KindOf(e.Kind), Owner: e.Owner,
		State: api.StateOf(e.State), Incarnation: e.Incarnation,
		ChangedAt: time.Unix(0, e.ChangedAt).UTC(), ChangedSeq: e.ChangedSeq, ChangedBy: e.ChangedBy,
		Alarms: make([]api.Alarm, len(e.Alarms)), Version: api.VersionOf(e.Ver),
	}
	for i, al := range e.Alarms {
		out.Alarms[i] = api.Alarm{Cause: al.Cause, Severity: api.SeverityOf(al.Severity),
			RaisedAt: time.Unix(0, al.RaisedAt).UTC(), RaisedBy: al.RaisedBy}
	}
	return out
}

// statusOf converts the core's view into the API's Status. Members are
// this node and every peer it has heard, by node ID.
func (a *agent) statusOf(st *core.Status) *api.Status {
	out := &api.Status{
		Node: st.Node, Cluster: a.cfg.ClusterID, Role: api.RoleOf(st.Role), Epoch: st.Epoch,
		Master: st.Master, Vice: st.Vice, Stale: st.Stale, TableSeq: st.TableSeq,
		Digest: api.Digest(st.Digest), Incarnation: st.Incarnation, Shm: a.cfg.ShmPath(),
		Members: make([]api.Member, 0, len(st.Peers)+1),
	}
	self := api.Member{
		Node: st.Node, Incarnation: st.Incarnation, Role: api.RoleOf(st.Role), State: api.StateUp,
		Links: api.Links{A: true, B: true}, Priority: a.cfg.Priority, Eligible: a.cfg.Eligible,
		Version: agentVersion(), Interval: api.Duration(st.Interval), Misses: st.Misses,
	}
	statusExtra(out, st, a.cfg.Timing.Profile)
	out.Timing.Overruns = a.fit.overruns.Load()
	out.Timing.WorstWake = api.Duration(a.fit.worst.Load())
	added := false
	for _, p := range st.Peers {
		if !added && p.Node > st.Node {
			out.Members = append(out.Members, self)
			added = true
		}
		m := api.Member{
			Node: p.Node, Incarnation: p.Incarnation, Role: api.RoleNone, State: api.StateDown,
			Links: api.Links{A: p.Links[wire.NetA], B: p.Links[wire.NetB]}, Priority: p.Priority, Eligible: p.Eligible,
			Bound:   p.Bound,
			Version: p.Version, Interval: api.Duration(p.Interval), Misses: p.Misses,
			HeardA: heardAt(p.LastHeard[wire.NetA]), HeardB: heardAt(p.LastHeard[wire.NetB]),
		}
		if p.Alive {
			m.State = api.StateUp
			m.Role = api.RoleOf(p.Role)
		}
		out.Members = append(out.Members, m)
	}
	if !added {
		out.Members = append(out.Members, self)
	}
	return out
}

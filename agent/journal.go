package agent

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/wire"
)

// The journal is this node's history (issue 11): every change it publishes
// (entity registered, up/down, alarm raised/cleared, unregistered) and
// every change of its cluster view (master and epoch, its own role, stale),
// numbered by a cursor that grows by one per entry for the agent's run. It
// is what `fmctl history` shows, what a Watch resumes from, what the notify
// hooks are fed from, and where the per-entity fail and flap counts come
// from. Kept on every node, bounded (historySize entries); recording
// allocates nothing (the names and causes are the table's own strings).

// historySize is how many entries the journal keeps.
var historySize = 4096

type jentry struct {
	cursor uint64
	seq    uint64
	at     int64 // unix ns: when the change was made (master's clock), or observed
	pub    int64 // unix ns, a table change: when this node published it (its clock; 0: not yet)
	kind   api.EventKind
	id     uint64
	name   string
	ekind  wire.EntityKind
	owner  wire.NodeID
	cause  string
	sev    wire.Severity
	state  wire.State
	by     wire.NodeID
	master wire.NodeID
	epoch  uint64
	role   wire.Role
}

type jcounts struct {
	name     string
	fails    uint64
	raises   uint64
	lastFail int64
	state    wire.State
	changes  [32]int64 // times of the latest state changes, a ring
	nch      int
}

type journal struct {
	run    uint64 // this agent run: its start, unix ns
	cursor uint64
	ring   []jentry
	counts map[uint64]*jcounts

	// loading: the table's first load is being published (no hooks).
	loading bool
	loaded  bool

	// The cluster view last recorded.
	init   bool
	role   wire.Role
	master wire.NodeID
	epoch  uint64
	stale  bool
}

func (j *journal) start(now time.Time) {
	j.run = uint64(now.UnixNano())
	j.ring = make([]jentry, historySize)
	j.counts = make(map[uint64]*jcounts)
}

// record appends e (numbering it) and updates the counts.
func (j *journal) record(e jentry) *jentry {
	j.cursor++
	e.cursor = j.cursor
	slot := &j.ring[j.cursor%uint64(len(j.ring))]
	*slot = e
	if e.id == 0 {
		return slot
	}
	c, ok := j.counts[e.id]
	if !ok {
		c = &jcounts{name: e.name, state: e.state}
		j.counts[e.id] = c
	}
	switch e.kind {
	case api.EventState:
		if e.state == wire.StateDown {
			c.fails++
			c.lastFail = e.at
		}
		c.changes[c.nch%len(c.changes)] = e.at
		c.nch++
		c.state = e.state
	case api.EventRaise:
		c.raises++
	case api.EventRegister:
		c.state = e.state
	case api.EventUnregister:
		delete(j.counts, e.id)
	}
	return slot
}

// published stamps the entries after cursor from (the table changes of one
// shared-memory transaction, just committed) with this node's time of the
// commit, unix ns.
func (j *journal) published(from uint64, at int64) {
	if j.cursor-from > uint64(len(j.ring)) {
		from = j.cursor - uint64(len(j.ring))
	}
	for c := from + 1; c <= j.cursor; c++ {
		j.ring[c%uint64(len(j.ring))].pub = at
	}
}

// since returns the entries after cursor from, oldest first, if the
// journal still holds all of them.
func (j *journal) since(from uint64) ([]*jentry, bool) {
	if from > j.cursor {
		return nil, false
	}
	oldest := uint64(1)
	if j.cursor > uint64(len(j.ring)) {
		oldest = j.cursor - uint64(len(j.ring)) + 1
	}
	if from+1 < oldest {
		return nil, false
	}
	out := make([]*jentry, 0, j.cursor-from)
	for c := from + 1; c <= j.cursor; c++ {
		out = append(out, &j.ring[c%uint64(len(j.ring))])
	}
	return out, true
}

// recordEntity records a change of e. mu held.
func (a *agent) recordEntity(kind api.EventKind, cause string, sev wire.Severity, e *table.Entity) *jentry {
	return a.journal.record(jentry{seq: e.ChangedSeq, at: e.ChangedAt, kind: kind, id: e.ID, name: e.Name, ekind: e.Kind,
		owner: e.Owner, cause: cause, sev: sev, state: e.State, by: e.ChangedBy})
}

// clusterEvents records (and streams) the changes of this node's cluster
// view since the last call: master and epoch, its role, stale. mu held.
func (a *agent) clusterEvents() {
	st := a.core.Role()
	stale := a.core.Stale()
	j := &a.journal
	if j.init && st.Master == j.master && st.Epoch == j.epoch && st.Role == j.role && stale == j.stale {
		return
	}
	first := !j.init
	at := time.Now().UnixNano()
	add := func(e jentry) {
		e.at, e.master, e.epoch, e.role = at, st.Master, st.Epoch, st.Role
		je := j.record(e)
		a.hookEntry(je)
		if len(a.watchers) > 0 {
			ev := a.apiEvent(je, nil)
			a.broadcast(&ev)
		}
	}
	if first || st.Master != j.master || st.Epoch != j.epoch {
		add(jentry{kind: api.EventMaster})
	}
	if first || st.Role != j.role {
		add(jentry{kind: api.EventRole})
	}
	if stale != j.stale {
		if stale {
			add(jentry{kind: api.EventStale})
		} else {
			add(jentry{kind: api.EventFresh})
		}
	}
	j.init, j.master, j.epoch, j.role, j.stale = true, st.Master, st.Epoch, st.Role, stale
}

// apiEvent converts a journal entry. The entity is e when given (the table
// row now), else what the entry says of it.
func (a *agent) apiEvent(je *jentry, e *table.Entity) api.Event {
	ev := api.Event{Seq: je.seq, Kind: je.kind, Cause: je.cause, Cursor: je.cursor, Agent: a.journal.run,
		Time: time.Unix(0, je.at).UTC(), By: je.by}
	if je.pub != 0 {
		ev.PublishedAt = time.Unix(0, je.pub).UTC()
	}
	if je.kind == api.EventRaise {
		ev.Severity = api.SeverityOf(je.sev)
	}
	switch je.kind {
	case api.EventMaster, api.EventRole, api.EventStale, api.EventFresh:
		ev.Master, ev.Epoch, ev.Role = je.master, je.epoch, api.RoleOf(je.role)
		ev.By = 0
		return ev
	}
	if e != nil {
		ev.Entity = toAPI(e)
	} else {
		ev.Entity = api.Entity{ID: api.ID(je.id), Name: je.name, Kind: api.KindOf(je.ekind), Owner: je.owner,
			State: api.StateOf(je.state), ChangedSeq: je.seq, ChangedAt: ev.Time, ChangedBy: je.by, Alarms: []api.Alarm{}}
	}
	return ev
}

// watchBegin is what a watch must be sent before the live events: the
// replay of a resume, or a snapshot (the rows copied under mu, turned into
// events after, rowCopy), then the sync event. None for a plain watch.
type watchBegin struct {
	replay   []api.Event
	snapshot *rowCopy // nil: none
	cursor   uint64
	run      uint64
	sync     *api.Event
}

// events are the watch's first events. Without mu.
func (b *watchBegin) events() []api.Event {
	if b.sync == nil {
		return nil
	}
	out := b.replay
	if b.snapshot == nil {
		return append(out, *b.sync)
	}
	defer b.snapshot.release()
	rows := b.snapshot.entities()
	for i := range rows {
		e := &rows[i]
		out = append(out, api.Event{Seq: e.ChangedSeq, Kind: api.EventSnapshot, Entity: toAPI(e), Cursor: b.cursor, Agent: b.run,
			Time: time.Unix(0, e.ChangedAt).UTC(), By: e.ChangedBy})
	}
	return append(out, *b.sync)
}

// watchStart returns what a new watch must be sent before the live events:
// a snapshot or the replay of a resume, ended by a sync event (nothing for
// a plain watch). mu held.
func (a *agent) watchStart(req *api.WatchRequest) *watchBegin {
	b := &watchBegin{}
	if !req.Snapshot && req.From == 0 {
		return b
	}
	j := &a.journal
	tab := a.core.Table()
	st := a.core.Role()
	sync := api.Event{Kind: api.EventSync, Cursor: j.cursor, Agent: j.run, Seq: tab.Seq(), Time: time.Now().UTC(),
		Master: st.Master, Epoch: st.Epoch, Role: api.RoleOf(st.Role)}
	b.sync, b.cursor, b.run = &sync, j.cursor, j.run
	if req.From > 0 && req.Agent == j.run {
		if entries, ok := j.since(req.From); ok {
			for _, je := range entries {
				if je.id == 0 && req.Prefix != "" || !strings.HasPrefix(je.name, req.Prefix) {
					continue
				}
				b.replay = append(b.replay, a.apiEvent(je, nil))
			}
			sync.Resumed = true
			return b
		}
	}
	b.snapshot = newRowCopy()
	tab.Range(func(e *table.Entity) bool {
		if strings.HasPrefix(e.Name, req.Prefix) {
			b.snapshot.add(e)
		}
		return true
	})
	return b
}

// History implements api.HistoryHandler.
func (h *handler) History(ctx context.Context, req *api.HistoryRequest) (*api.HistoryResult, error) {
	a := h.a
	limit := req.Limit
	if limit == 0 {
		limit = api.DefaultHistory
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	j := &a.journal
	res := &api.HistoryResult{Agent: j.run, Cursor: j.cursor, Events: []api.Event{}, Counts: []api.EntityCounts{}}
	from := uint64(0)
	if j.cursor > uint64(len(j.ring)) {
		from = j.cursor - uint64(len(j.ring))
	}
	entries, _ := j.since(from)
	for i := len(entries) - 1; i >= 0 && len(res.Events) < limit; i-- {
		je := entries[i]
		if je.id == 0 && req.Prefix != "" || !strings.HasPrefix(je.name, req.Prefix) {
			continue
		}
		res.Events = append(res.Events, a.apiEvent(je, nil))
	}
	slices.Reverse(res.Events)
	window := time.Now().Add(-api.FlapWindow).UnixNano()
	for _, c := range j.counts {
		if !strings.HasPrefix(c.name, req.Prefix) || c.nch == 0 && c.raises == 0 {
			continue
		}
		ec := api.EntityCounts{Name: c.name, Fails: c.fails, Raises: c.raises, State: api.StateOf(c.state)}
		if c.lastFail != 0 {
			ec.LastFail = time.Unix(0, c.lastFail).UTC()
		}
		for i := 0; i < min(c.nch, len(c.changes)); i++ {
			if c.changes[i] >= window {
				ec.Flaps++
			}
		}
		res.Counts = append(res.Counts, ec)
	}
	slices.SortFunc(res.Counts, func(x, y api.EntityCounts) int { return strings.Compare(x.Name, y.Name) })
	return res, nil
}

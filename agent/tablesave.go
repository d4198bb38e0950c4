package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/persist"
	"github.com/fmagent/fmagent/wire"
)

// tableSaver keeps the cluster table on disk on a master-eligible node
// (persist/table.go), so that a full-cluster restart comes back with every
// registered entity and every alarm raised and not cleared (core.Restore
// decides what of it is trusted).
//
// The rows changed since the last save are copied under a.mu (rowCopy, no
// allocation once its buffers have grown), merged into the saver's own
// copy of the table, encoded, written and fsync'd off it, by one
// goroutine; changes that arrive during a save are covered by the next
// one. Encoding under a.mu, as until 2 December 2026, held the real-time
// loop after every quiet write: at 4,096 entities 186-210 us
// (BenchmarkTableSaveLockHeld; the copy 90-118 us), 0.2-3.4 ms while the
// machine was busy, 28 ms the first time (the buffer's growth). Copying
// the whole table under a.mu, as then until the evening of 2 December
// 2026, held it 2-6 ms a save on the busy machine in a registration storm
// (five agents of 4,000 entities, every node saving every tableSaveEvery
// and for every write it answers): the loops waited for it. A write the API answers
// waits for a save that began after the write reached this node's table:
// acknowledged means on this node's disk.
//
// The real-time loop does not wake the saver for each change: it marks the
// table dirty, and at its next tick at least quietAfterPublish after the
// segment's last commit (handOffQuiet; at most quietMax plus an
// interval) wakes the saver if the saver is not already polling; the saver
// then saves, and polls
// every tableSaveEvery for as long as changes keep coming. A wake per change
// was a futex call on the loop's path right after each publication, and a
// thread of Go's at nice -20 woken on every node at the moment the table's
// readers were woken, ahead of them, then a save and its fsync per change
// (hundreds a second per node under the end-to-end benchmark's changes).
// A write a client waits for still wakes the saver at once (waitSaved).
type tableSaver struct {
	on      bool          // this node is master-eligible: it persists the table
	kick    chan struct{} // a save to start (cap 1)
	dirty   atomic.Bool   // the table changed since the last encoding began
	polling atomic.Bool   // the saver polls dirty; no kick needed
	// What changed since the last copy (under a.mu): the IDs of the
	// entities changed or removed, or full (the whole table: the first
	// save, a snapshot replaced the table, or more changes than rows).
	changed []uint64
	full    bool
	// The saver goroutine's own: the rows copied under a.mu (delta, and
	// the IDs removed, gone; the whole table when fullCopy), its own copy
	// of the table they are merged into (mirror) and the count the table
	// had (rowsWant), the encoding scratch.
	delta    rowCopy
	gone     []uint64
	fullCopy bool
	rowsWant int
	mirror   map[uint64]*mirrorRow
	order    []*mirrorRow // the mirror's rows, in ID order
	mirrorAt uint64       // the copy merged last (mirrorRow.at)
	buf      []byte
	row      persist.Entity

	started uint64 // saves begun; under a.mu

	mu    sync.Mutex // guards done, err, waits
	done  uint64     // saves finished (the last one: started == done)
	err   error      // the last save's error
	waits []saveWaiter
}

// tableSaveEvery is how often the saver looks for changes while they keep
// coming: what a burst of changes may wait to be on this node's disk, on
// top of the interval the loop may take to wake the saver (a change no
// client waits for; one a client waits for is saved at once).
const tableSaveEvery = 20 * time.Millisecond

type saveWaiter struct {
	gen uint64
	ch  chan error
}

// initTableSaver loads what an earlier life of this node saved and gives it
// to the core. A corrupt file is moved aside and logged: the node starts
// without it (the other eligible nodes hold the same table).
func (a *agent) initTableSaver() {
	ts := &a.tsave
	ts.on = a.cfg.Eligible
	ts.kick = make(chan struct{}, 1)
	if !ts.on {
		return
	}
	t, err := persist.LoadTable(a.stateDir)
	if err != nil {
		var aside []string
		for _, p := range persist.TablePaths(a.stateDir) {
			to := fmt.Sprintf("%s.corrupt-%d", p, time.Now().Unix())
			if os.Rename(p, to) == nil {
				aside = append(aside, to)
			}
		}
		a.log.Error("the saved table cannot be trusted; starting without it", "err", err, "moved_to", aside)
		return
	}
	if t == nil {
		return
	}
	rows := make([]table.Entity, len(t.Entities))
	alarms := 0
	for i, e := range t.Entities {
		rows[i] = table.Entity{Name: e.Name, Kind: wire.EntityKind(e.Kind), Owner: wire.NodeID(e.Owner), State: wire.State(e.State),
			Incarnation: e.Incarnation, ChangedAt: e.ChangedAt, ChangedSeq: e.ChangedSeq, ChangedBy: wire.NodeID(e.ChangedBy)}
		for _, al := range e.Alarms {
			rows[i].Alarms = append(rows[i].Alarms, table.Alarm{Cause: al.Cause, Severity: wire.Severity(al.Severity),
				RaisedAt: al.RaisedAt, RaisedBy: wire.NodeID(al.RaisedBy), Seq: al.Seq})
			alarms++
		}
	}
	refused := a.core.Restore(rows, t.Seq)
	a.log.Info("restored the saved table", "entities", len(rows), "alarms", alarms, "seq", t.Seq,
		"saved_master", t.Master, "saved_epoch", t.Epoch, "refused", refused)
}

// tableChanged notes a Ready that changed the table, and which entities
// it changed. mu held.
func (a *agent) tableChanged(rd *core.Ready) {
	ts := &a.tsave
	if !ts.on || (len(rd.Changed) == 0 && len(rd.Removed) == 0 && !rd.Reset) {
		return
	}
	ts.dirty.Store(true)
	switch {
	case rd.Reset:
		ts.full, ts.changed = true, ts.changed[:0]
	case !ts.full:
		ts.changed = append(ts.changed, rd.Changed...)
		ts.changed = append(ts.changed, rd.Removed...)
		if len(ts.changed) > max(1024, 2*a.core.Table().Len()) {
			// A saver that cannot keep up (a hung disk): the whole
			// table next time, not an ever longer list.
			ts.full, ts.changed = true, ts.changed[:0]
		}
	}
}

// kickTableSaver wakes the saver if the table changed and the saver is not
// polling. The real-time loop calls it from handOffQuiet: off the path of a
// change to the table's readers (tableSaver and quietAfterPublish say why).
func (a *agent) kickTableSaver() {
	if a.tsave.wantsKick() {
		a.kickSaver()
	}
}

// wantsKick reports whether the table changed and the saver is not polling.
func (ts *tableSaver) wantsKick() bool { return ts.dirty.Load() && !ts.polling.Load() }

// tableSaverLoop saves the table after changes, until done is closed: once
// kicked, at once and then every tableSaveEvery while the table keeps
// changing or a client waits for a save.
func (a *agent) tableSaverLoop(done <-chan struct{}) {
	ts := &a.tsave
	poll := time.NewTimer(tableSaveEvery)
	poll.Stop()
	defer poll.Stop()
	// At the end, what changed since the last save (a stopped node's
	// file is what a full-cluster restart finds).
	final := func() {
		if ts.dirty.Load() {
			a.saveTable()
		}
	}
	for {
		select {
		case <-done:
			final()
			return
		case <-ts.kick:
		}
		ts.polling.Store(true)
		for a.saveTable() {
			poll.Reset(tableSaveEvery)
			select {
			case <-done:
				final()
				return
			case <-ts.kick: // a client waits (waitSaved)
			case <-poll.C:
			}
		}
		ts.polling.Store(false)
		if ts.dirty.Load() {
			// Changed after saveTable looked, before polling was
			// cleared: the loop saw polling and did not kick.
			a.kickSaver()
		}
	}
}

// kickSaver wakes the saver, or leaves it the kick it has not taken yet.
func (a *agent) kickSaver() {
	select {
	case a.tsave.kick <- struct{}{}:
	default:
	}
}

// saveTable saves the table if it changed since the last save began or a
// client waits for a save, and reports whether it saved.
func (a *agent) saveTable() bool {
	ts := &a.tsave
	waiting := func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return len(ts.waits) > 0
	}
	if !ts.dirty.Load() && !waiting() {
		return false // without a.mu: the last poll of a burst
	}
	a.mu.Lock()
	awaited := waiting()
	if !ts.dirty.Swap(false) && !awaited {
		a.mu.Unlock()
		return false
	}
	gen, hdr := a.copyTable()
	a.mu.Unlock()
	if !a.mergeCopy() {
		// The saver's copy of the table does not have the table's count:
		// a change it was not told of. Never saved so: the whole table
		// again, and said.
		a.log.Error("table saver: its copy of the table disagrees with the table; copying the whole table", "copy", len(ts.mirror), "table", ts.rowsWant)
		a.mu.Lock()
		ts.full = true
		gen, hdr = a.copyTable()
		a.mu.Unlock()
		a.mergeCopy()
	}
	b, err := a.encodeTable(hdr)
	if err == nil {
		err = a.writeTable(b, awaited)
	}
	a.m.tableSaves.Inc()
	if err != nil {
		a.m.tableErrors.Inc()
		a.log.Error("saving the table", "err", err)
	}
	ts.mu.Lock()
	ts.done, ts.err = gen, err
	k := 0
	for _, w := range ts.waits {
		if w.gen <= gen {
			w.ch <- err // buffered
		} else {
			ts.waits[k] = w
			k++
		}
	}
	clear(ts.waits[k:])
	ts.waits = ts.waits[:k]
	ts.mu.Unlock()
	return true
}

// writeTable writes an encoded table (onBackground).
func (a *agent) writeTable(b []byte, awaited bool) error {
	return a.onBackground(awaited, func() error { return persist.SaveTableBytes(a.stateDir, b) })
}

// onBackground runs a file write on the background thread (a.bg) and
// returns its error; a write a client waits for (awaited) with the thread
// hurried to the agent's priority (a no-op while it runs there, as by
// default: backgroundNice). Never on the goroutine that calls it while the
// real-time loop is at SCHED_FIFO: that goroutine may be running on the
// loop's thread, where the loop's yield runs what the loop readied
// (transport.Locked.YieldInPlace), and an fsync there blocked the loop's
// thread (traced: 44 fsyncs of the table at SCHED_FIFO in 3 s of the
// benchmark; the owned file's, 13–357 ms loop yields in a registration
// storm). Without a background thread, or for an awaited write while the
// loop is at the normal policy, it is written on the caller: there it is
// not ahead of the loop. (Until 2 December 2026 the table's rule was "the agent
// could not renice its threads", which RLIMIT_RTPRIO without RLIMIT_NICE
// makes true of a loop at SCHED_FIFO; the owned file's was "always the
// background thread".)
func (a *agent) onBackground(awaited bool, write func() error) error {
	if a.bg == nil || (awaited && a.rtPrio == 0) {
		return write()
	}
	if awaited && a.otherNice != 0 {
		defer a.bg.Hurry(a.otherNice)()
	}
	var err error
	a.bg.Do(func() { err = write() })
	return err
}

// mirrorRow is a row of the saver's copy of the table: the entity, its
// alarms the copy's own, and the copy that last brought it (a whole
// table's copy drops the rows it did not bring, without clearing the map:
// the rows it brings keep their alarm slices, and nothing is allocated).
type mirrorRow struct {
	e  table.Entity
	at uint64
}

// tableHeader is what a saved table's header says of the table copied.
type tableHeader struct {
	seq, epoch uint64
	master     wire.NodeID
}

// copyTable copies what changed in the table since the last copy (the
// whole table the first time, after a snapshot replaced it, or when
// changes outgrew it) into ts.delta and ts.gone, as save number
// started+1, and returns that number and the header. mu held.
func (a *agent) copyTable() (uint64, tableHeader) {
	ts := &a.tsave
	tab := a.core.Table()
	st := a.core.Role()
	// Changes applied and not yet handed to the loop in a Ready (a
	// Submit on the master applies its change at once, the loop
	// handles its Ready after): in the table, so in this copy.
	if ch, rm, reset := a.core.UnhandedChanges(); reset {
		ts.full = true
	} else if !ts.full {
		ts.changed = append(ts.changed, ch...)
		ts.changed = append(ts.changed, rm...)
	}
	ts.delta.reset()
	ts.gone = ts.gone[:0]
	ts.fullCopy = ts.full || ts.mirror == nil
	if ts.fullCopy {
		tab.Range(func(e *table.Entity) bool {
			ts.delta.add(e)
			return true
		})
	} else {
		slices.Sort(ts.changed)
		for _, id := range slices.Compact(ts.changed) {
			if e, ok := tab.Get(id); ok {
				ts.delta.add(e)
			} else {
				ts.gone = append(ts.gone, id)
			}
		}
	}
	ts.changed, ts.full = ts.changed[:0], false
	ts.rowsWant = tab.Len()
	ts.started++
	return ts.started, tableHeader{seq: tab.Seq(), epoch: st.Epoch, master: st.Master}
}

// mergeCopy merges the rows copyTable copied into the saver's copy of the
// table, and reports whether it then has as many entities as the table
// had. The saver's goroutine, without mu.
func (a *agent) mergeCopy() bool {
	ts := &a.tsave
	if ts.mirror == nil {
		ts.mirror = make(map[uint64]*mirrorRow)
	}
	ts.mirrorAt++
	if ts.fullCopy {
		clear(ts.order)
		ts.order = ts.order[:0] // rebuilt from the rows, in the table's (ID) order
	}
	for _, e := range ts.delta.entities() {
		r, had := ts.mirror[e.ID]
		if !had {
			r = new(mirrorRow)
			ts.mirror[e.ID] = r
		}
		al := append(r.e.Alarms[:0], e.Alarms...) // the copy's own
		r.e, r.e.Alarms, r.at = e, al, ts.mirrorAt
		switch {
		case ts.fullCopy:
			ts.order = append(ts.order, r)
		case !had:
			i, _ := slices.BinarySearchFunc(ts.order, e.ID, byRowID)
			ts.order = slices.Insert(ts.order, i, r)
		}
	}
	for _, id := range ts.gone {
		if _, ok := ts.mirror[id]; !ok {
			continue
		}
		delete(ts.mirror, id)
		if i, ok := slices.BinarySearchFunc(ts.order, id, byRowID); ok {
			ts.order = slices.Delete(ts.order, i, i+1)
		}
	}
	if ts.fullCopy {
		for id, r := range ts.mirror {
			if r.at != ts.mirrorAt {
				delete(ts.mirror, id)
			}
		}
	}
	ts.delta.reset()
	return len(ts.mirror) == ts.rowsWant && len(ts.order) == ts.rowsWant
}

func byRowID(r *mirrorRow, id uint64) int { return cmp.Compare(r.e.ID, id) }

// encodeTable encodes the saver's copy of the table, in ID order, into a
// reused buffer (one reused row, no allocation per entity). The saver's
// goroutine, without mu.
func (a *agent) encodeTable(h tableHeader) ([]byte, error) {
	ts := &a.tsave
	b, err := persist.AppendTableHeader(ts.buf[:0], h.seq, h.epoch, uint32(h.master), len(ts.order))
	r := &ts.row
	for _, row := range ts.order {
		if err != nil {
			break
		}
		persistRow(&row.e, r)
		b, err = persist.AppendTableEntity(b, r)
	}
	if err == nil {
		b = persist.FinishTable(b, 0)
	}
	ts.buf = b
	return b, err
}

// persistRow sets r to the table file's row of e, reusing r's alarm slice.
func persistRow(e *table.Entity, r *persist.Entity) {
	*r = persist.Entity{Name: e.Name, Kind: uint8(e.Kind), State: uint8(e.State), Owner: uint32(e.Owner),
		Incarnation: e.Incarnation, ChangedAt: e.ChangedAt, ChangedSeq: e.ChangedSeq, ChangedBy: uint32(e.ChangedBy),
		Alarms: r.Alarms[:0]}
	for _, al := range e.Alarms {
		r.Alarms = append(r.Alarms, persist.Alarm{Cause: al.Cause, Severity: uint8(al.Severity), RaisedAt: al.RaisedAt,
			RaisedBy: uint32(al.RaisedBy), Seq: al.Seq})
	}
}

// waitSaved waits, on a master-eligible node, until a save that began
// after this call has reached the disk: the table as this node holds it now
// (with the caller's write) is durable.
func (a *agent) waitSaved(ctx context.Context, seq uint64) error {
	ts := &a.tsave
	if !ts.on || seq == 0 {
		return nil
	}
	a.mu.Lock()
	gen := ts.started + 1
	ch := make(chan error, 1)
	ts.mu.Lock()
	ts.waits = append(ts.waits, saveWaiter{gen: gen, ch: ch})
	ts.mu.Unlock()
	a.kickSaver()
	a.mu.Unlock()
	select {
	case err := <-ch:
		if err != nil {
			return api.Errorf(api.ErrInternal, "the change was applied (seq %d) but this node could not save the table: %v", seq, err)
		}
		return nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return api.Errorf(api.ErrTimeout, "the change was applied (seq %d) but is not yet on this node's disk", seq)
		}
		return ctx.Err()
	}
}

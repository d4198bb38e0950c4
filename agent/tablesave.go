package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
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
// The table is encoded under a.mu (a copy, no I/O) and written and fsync'd
// off it, by one goroutine; changes that arrive during a save are covered by
// the next one. A write the API answers waits for a save that began after
// the write reached this node's table: acknowledged means on this node's
// disk.
type tableSaver struct {
	on   bool           // this node is master-eligible: it persists the table
	kick chan struct{}  // a change to save (cap 1)
	buf  []byte         // encoding scratch; under a.mu
	row  persist.Entity // encoding scratch; under a.mu

	started uint64 // saves begun; under a.mu

	mu    sync.Mutex // guards done, err, waits
	done  uint64     // saves finished (the last one: started == done)
	err   error      // the last save's error
	waits []saveWaiter
}

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
		aside := fmt.Sprintf("%s.corrupt-%d", persist.TablePath(a.stateDir), time.Now().Unix())
		a.log.Error("the saved table cannot be trusted; starting without it", "err", err, "moved_to", aside)
		os.Rename(persist.TablePath(a.stateDir), aside)
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

// tableChanged notes a Ready that changed the table. mu held.
func (a *agent) tableChanged(rd *core.Ready) {
	if a.tsave.on && (len(rd.Changed) > 0 || len(rd.Removed) > 0 || rd.Reset) {
		select {
		case a.tsave.kick <- struct{}{}:
		default:
		}
	}
}

// tableSaverLoop saves the table after changes, until done is closed.
func (a *agent) tableSaverLoop(done <-chan struct{}) {
	ts := &a.tsave
	// The file is written on a thread of its own below the table's
	// readers (a.bg, transport.Background says why and what it cost); the
	// encoding stays here, under a.mu, at the other threads' priority.
	for {
		select {
		case <-done:
			return
		case <-ts.kick:
		}
		a.mu.Lock()
		gen, b, err := a.encodeTable()
		ts.mu.Lock()
		awaited := len(ts.waits) > 0
		ts.mu.Unlock()
		a.mu.Unlock()
		if err == nil {
			// A save a client's write waits for (waitSaved) is written
			// here, at the agent's priority: the write is answered when
			// it is on disk. The others go behind the readers.
			if a.bg != nil && !awaited {
				a.bg.Do(func() { err = persist.SaveTableBytes(a.stateDir, b) })
			} else {
				err = persist.SaveTableBytes(a.stateDir, b)
			}
		}
		if err != nil {
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
	}
}

// encodeTable encodes the table as it is now, as save number started+1,
// straight from the table's rows into a reused buffer (one reused row, no
// allocation per entity: it runs under mu). mu held.
func (a *agent) encodeTable() (uint64, []byte, error) {
	ts := &a.tsave
	tab := a.core.Table()
	st := a.core.Role()
	b, err := persist.AppendTableHeader(ts.buf[:0], tab.Seq(), st.Epoch, uint32(st.Master), tab.Len())
	r := &ts.row
	tab.Range(func(e *table.Entity) bool {
		if err != nil {
			return false
		}
		*r = persist.Entity{Name: e.Name, Kind: uint8(e.Kind), State: uint8(e.State), Owner: uint32(e.Owner),
			Incarnation: e.Incarnation, ChangedAt: e.ChangedAt, ChangedSeq: e.ChangedSeq, ChangedBy: uint32(e.ChangedBy),
			Alarms: r.Alarms[:0]}
		for _, al := range e.Alarms {
			r.Alarms = append(r.Alarms, persist.Alarm{Cause: al.Cause, Severity: uint8(al.Severity), RaisedAt: al.RaisedAt,
				RaisedBy: uint32(al.RaisedBy), Seq: al.Seq})
		}
		b, err = persist.AppendTableEntity(b, r)
		return true
	})
	if err == nil {
		b = persist.FinishTable(b, 0)
	}
	ts.buf = b
	ts.started++
	return ts.started, b, err
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
	select {
	case ts.kick <- struct{}{}:
	default:
	}
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

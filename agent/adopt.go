package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/persist"
	"github.com/fmagent/fmagent/wire"
)

// ownedSet is what this node's agent registered for its local clients,
// kept in <state_dir>/owned (persist/owned.go) so that an agent restarted
// on a host that kept running adopts what still runs: a process entity
// whose process is alive with the same start time, and every service and
// custom entity this node registered. It re-registers them under its new
// incarnation (the master gives a restarted node's entities a grace period
// for that, core/adopt.go; and brings back up what went down with the
// node while its agent was away). What really died stays down.
// testHookOwnedSaved, if set, is called where the owned file is written
// (tests: on which thread).
var testHookOwnedSaved func()

type ownedSet struct {
	mu      sync.Mutex // guards byName and the file
	boot    string
	byName  map[string]persist.OwnedEntity
	adopt   []persist.OwnedEntity // from the previous agent of this boot
	saveErr error
}

// initOwned loads the owned file. Entries of another boot are dropped:
// nothing of them still runs.
func (a *agent) initOwned() {
	o := &a.owned
	o.boot = persist.BootID()
	o.byName = make(map[string]persist.OwnedEntity)
	prev, err := persist.LoadOwned(a.stateDir)
	if errors.Is(err, persist.ErrCorrupt) {
		// It is written without fsync (persist.SaveOwned): after a crash
		// of the host it may be torn, and then is of another boot anyway.
		a.log.Warn("the owned-entities file fails its checks (torn by a crash of the host, as it is not synced, or damaged); adopting nothing", "err", err)
		return
	}
	if err != nil {
		a.log.Error("the owned-entities file cannot be read; adopting nothing", "err", err)
		return
	}
	if prev == nil || prev.BootID != o.boot || o.boot == "" {
		return
	}
	o.adopt = prev.Entries
	for _, e := range prev.Entries {
		o.byName[e.Name] = e
	}
}

// ownedState records the state the owner declared for an entity this node
// registered (a service set down by its owner is not adopted up).
func (a *agent) ownedState(name string, st wire.State) {
	o := &a.owned
	o.mu.Lock()
	defer o.mu.Unlock()
	e, ok := o.byName[name]
	if !ok || e.State == uint8(st) {
		return
	}
	e.State = uint8(st)
	o.byName[name] = e
	o.saveLocked(a)
}

// ownedPut records (pid 0: not tied to a process) or drops an entity this
// node registered, and saves the set. A registration declares it up.
func (a *agent) ownedPut(name string, kind wire.EntityKind, pid int32, drop bool) {
	o := &a.owned
	o.mu.Lock()
	defer o.mu.Unlock()
	if drop {
		if _, ok := o.byName[name]; !ok {
			return
		}
		delete(o.byName, name)
	} else {
		e := persist.OwnedEntity{Name: name, Kind: uint8(kind), State: uint8(wire.StateUp)}
		if pid > 0 {
			if start, ok := procStart(pid); ok {
				e.PID, e.StartTicks = uint32(pid), start
			}
		}
		if old, ok := o.byName[name]; ok && old == e {
			return
		}
		o.byName[name] = e
	}
	o.saveLocked(a)
}

// saveLocked writes the set (o.mu held); the caller, an API handler,
// waits for it. It goes to the background thread like the table's writes
// (onBackground): the handler may be running on the real-time loop's
// thread, which the loop's yield lends to what the loop readied, and each
// register or unregister rewrote and fsynced this file there. A
// registration storm (`soak -listers 1`, 4,000 registrations) had loop
// yields of 13–357 ms and false downs of the nodes whose loops they were:
// 86 in six rounds before, 38 after (docs/bench.md).
func (o *ownedSet) saveLocked(a *agent) {
	f := &persist.Owned{BootID: o.boot, Entries: make([]persist.OwnedEntity, 0, len(o.byName))}
	for _, e := range o.byName {
		f.Entries = append(f.Entries, e)
	}
	err := a.onBackground(true, func() error {
		if testHookOwnedSaved != nil {
			testHookOwnedSaved()
		}
		return persist.SaveOwned(a.stateDir, f)
	})
	if err != nil && o.saveErr == nil {
		a.log.Error("saving the owned entities (an agent restart will not adopt them)", "err", err)
		o.saveErr = err
	} else if err == nil {
		o.saveErr = nil
	}
}

// adoptLoop adopts, once this node has joined a master under its new
// incarnation, what the previous agent of this boot registered and still
// runs. It gives up after the master's grace period.
func (a *agent) adoptLoop(done <-chan struct{}) {
	if len(a.owned.adopt) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	self := table.NodeEntityID(a.self)
	deadline := time.Now().Add(a.coreCfgGrace() + 10*time.Second)
	// Joined: our table, synced from the master, shows this node up under
	// the incarnation we started with.
	for {
		a.mu.Lock()
		e, ok := a.core.Table().Get(self)
		joined := ok && e.State == wire.StateUp && e.Incarnation >= a.startInc && a.core.Role().Master != 0
		a.mu.Unlock()
		if joined {
			break
		}
		if time.Now().After(deadline) {
			a.log.Warn("not joined a master in time: adopting nothing", "entities", len(a.owned.adopt))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	var adopted, dead, gone int
	for _, oe := range a.owned.adopt {
		id := table.ID(oe.Name)
		a.mu.Lock()
		e, ok := a.core.Table().Get(id)
		if !ok || e.Owner != a.self || e.Name != oe.Name {
			a.mu.Unlock()
			gone++ // unregistered (or taken) while we were away
			a.ownedPut(oe.Name, 0, 0, true)
			continue
		}
		kind := e.Kind
		if oe.State == uint8(wire.StateDown) {
			a.mu.Unlock()
			continue // its owner said down: it stays as the table has it
		}
		if oe.PID != 0 {
			pid := int32(oe.PID)
			if start, alive := procStart(pid); !alive || start != oe.StartTicks {
				a.mu.Unlock()
				dead++
				continue // it died: its entity goes (or stays) down
			}
			if err := a.pw.Watch(pid, id); err != nil {
				a.mu.Unlock()
				a.log.Warn("cannot watch a process to adopt", "entity", oe.Name, "pid", pid, "err", err)
				continue
			}
			// Started at the same time after pidfd_open: the pidfd is
			// that process, not a reused pid.
			if start, alive := procStart(pid); !alive || start != oe.StartTicks {
				a.pw.Unwatch(id)
				a.mu.Unlock()
				dead++
				continue
			}
			a.procs[id] = oe.Name
		}
		a.mu.Unlock()
		_, err := a.write(ctx, core.Request{Kind: wire.ReportRegister, Name: oe.Name, EntityKind: kind}, nil)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return
			}
			a.log.Warn("adopting an entity", "entity", oe.Name, "err", err)
			continue
		}
		adopted++
	}
	a.log.Info("adopted what the previous agent registered and still runs", "adopted", adopted, "dead", dead, "gone", gone)
}

func (a *agent) coreCfgGrace() time.Duration {
	c := core.Config{Interval: a.cfg.Timing.Interval, Misses: a.cfg.Timing.Misses}
	return c.AdoptGrace()
}

// procStart returns the start time of process pid (clock ticks since boot,
// field 22 of /proc/PID/stat) and whether it is alive (not a zombie).
func procStart(pid int32) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, false
	}
	f := bytes.Fields(b[i+2:])
	if len(f) < 20 || f[0][0] == 'Z' || f[0][0] == 'X' {
		return 0, false
	}
	start, err := strconv.ParseUint(string(f[19]), 10, 64)
	return start, err == nil
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/procwatch"
	"github.com/fmagent/fmagent/wire"
)

// handler serves the API (api.Handler) from the agent.
//
// Writes go to the master through core.Submit and wait for its answer,
// then for the change to be applied to this node's own table, so a client
// that writes and then reads (Get, List, shared memory) on the same node
// sees its write. Reads are answered from this node's table.
//
// Writes about an entity that must exist (Unregister, Raise, Clear,
// SetState) are checked against this node's table first: not_found if it
// does not hold the entity (or, for Clear, the alarm), permission_denied for
// SetState on an entity another node owns, collision for a Register of a
// name held with another kind or owner (docs/api.md). Report is not
// checked: a fault about anything goes to the master's plugins.
//
// Register with Process ties the entity to the caller's process (the
// connection's SO_PEERCRED pid): when it exits, this node reports the
// entity down as its owner. The entity keeps the name the client gave; the
// convention for process entities is node/<id>/proc/<name> (which also
// makes the owner node explicit in the name), but it is not imposed.
type handler struct{ a *agent }

var _ api.Handler = (*handler)(nil)

// write submits req to the master and waits for its result and for this
// node's table to reach the result's seq. check, if not nil, runs under the
// lock before the request is submitted, and may fill in the request.
func (a *agent) write(ctx context.Context, req core.Request, check func(*core.Request) error) (core.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	id, ch, err := a.submitWrite(ctx, &req, check)
	if err != nil {
		return core.Result{}, err
	}
	return a.awaitWrite(ctx, id, ch, req.Name)
}

// submitWrite checks req (check, if not nil, under the lock) and submits
// it, waiting for a master if there is none yet; the result will come on
// the channel, under the request's id in a.waiters.
func (a *agent) submitWrite(ctx context.Context, req *core.Request, check func(*core.Request) error) (uint64, chan core.Result, error) {
	a.mu.Lock()
	for {
		if a.stopping {
			a.mu.Unlock()
			return 0, nil, api.Errorf(api.ErrUnavailable, "the agent is shutting down")
		}
		noMaster := a.core.Role().Master == 0
		if check != nil {
			// Without a master (a cold start waiting for quorum) this node's
			// table may be empty or behind: "not found" would be a guess.
			// Wait for a master, then check again; if none comes, the
			// answer is no_master (issue 11).
			if err := check(req); err != nil && !(noMaster && errors.Is(err, api.ErrNotFound)) {
				a.mu.Unlock()
				return 0, nil, err
			}
		}
		if !noMaster {
			break
		}
		// No master (yet: an election may be in progress): wait for one
		// rather than queue a request nobody can answer.
		ch := a.masterCh
		a.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return 0, nil, api.Errorf(api.ErrNoMaster, "no master in the cluster (waited %v)", requestTimeout)
			}
			return 0, nil, ctx.Err()
		}
		a.mu.Lock()
	}
	ch := make(chan core.Result, 1)
	id := a.submitOffLoop(*req, ch)
	a.mu.Unlock()
	return id, ch, nil
}

// awaitWrite waits for the result of the write submitted as id, then for
// this node's table to apply it and (master-eligible nodes) its disk to
// hold it: only then is the write acknowledged.
func (a *agent) awaitWrite(ctx context.Context, id uint64, ch chan core.Result, name string) (core.Result, error) {
	var res core.Result
	select {
	case res = <-ch:
	case <-ctx.Done():
		a.mu.Lock()
		delete(a.waiters, id)
		noMaster := a.core.Role().Master == 0
		a.mu.Unlock()
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return core.Result{}, ctx.Err()
		}
		if noMaster {
			return core.Result{}, api.Errorf(api.ErrNoMaster, "the master was lost before it answered; the outcome is unknown")
		}
		return core.Result{}, api.Errorf(api.ErrTimeout, "no answer from the master; the outcome is unknown")
	}
	if res.Err != nil {
		return res, mapErr(res.Err, name)
	}
	if err := a.waitSeq(ctx, res.Seq); err != nil {
		return res, err
	}
	// Acknowledged means on this node's disk too (master-eligible nodes).
	if err := a.waitSaved(ctx, res.Seq); err != nil {
		return res, err
	}
	return res, nil
}

// waitSeq waits until this node's table has applied seq.
func (a *agent) waitSeq(ctx context.Context, seq uint64) error {
	a.mu.Lock()
	if seq == 0 || a.core.Table().Seq() >= seq || a.stopping {
		a.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	a.seqWait = append(a.seqWait, seqWaiter{seq: seq, ch: ch})
	a.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return api.Errorf(api.ErrTimeout, "the master applied the change (seq %d) but it has not reached this node yet", seq)
		}
		return ctx.Err()
	}
}

// mapErr turns a core error into the API's.
func mapErr(err error, name string) error {
	switch {
	case errors.Is(err, core.ErrNoMaster):
		return fmt.Errorf("%w", api.ErrNoMaster)
	case errors.Is(err, core.ErrCollision):
		return api.Errorf(api.ErrCollision, "%q: its ID collides with another entity's name", name)
	case errors.Is(err, core.ErrBadName):
		return api.Errorf(api.ErrBadRequest, "%q: bad entity name", name)
	case errors.Is(err, table.ErrTooManyAlarms), errors.Is(err, core.ErrAlarmsFull):
		return api.Errorf(api.ErrLimit, "%q: not applied: %v", name, err)
	case errors.Is(err, core.ErrEntityLimit):
		return api.Errorf(api.ErrLimit, "%q was not registered: the master holds the cluster's limit of entities ([shm] entities) or this node's ([shm] entities_per_owner)", name)
	case errors.Is(err, core.ErrUnknownEntity):
		return notFound(name)
	case errors.Is(err, core.ErrBadRequest):
		return api.Errorf(api.ErrBadRequest, "%q: not applied: %v", name, err)
	}
	// Any other answer of the master is a refusal: the write was not
	// applied (core.ErrRejected, and whatever reason the core adds).
	return api.Errorf(api.ErrRefused, "%q: not applied: %v", name, err)
}

func notFound(name string) error { return fmt.Errorf("entity %q: %w", name, api.ErrNotFound) }

// lookup returns the entity named name from this node's table. mu held.
func (a *agent) lookup(name string) (*table.Entity, bool) { return a.core.Table().Lookup(name) }

// Register implements api.Handler.
func (h *handler) Register(ctx context.Context, cred api.Cred, req *api.RegisterRequest) (out *api.Entity, err error) {
	a := h.a
	defer func() {
		a.audit(cred, "register", req.Name, []any{"kind", string(req.Kind), "process", req.Process}, nil, err)
	}()
	self := a.self
	kind := req.Kind.Wire()
	id := table.ID(req.Name)
	if req.Process && cred.PID <= 0 {
		return nil, api.Errorf(api.ErrBadRequest, "process: the caller's pid is unknown")
	}
	res, err := a.write(ctx, core.Request{Kind: wire.ReportRegister, Name: req.Name, EntityKind: kind, Txn: req.Txn}, func(*core.Request) error {
		if e, ok := a.core.Table().Get(id); ok {
			switch {
			case e.Name != req.Name:
				return api.Errorf(api.ErrCollision, "%q has the ID of the entity %q", req.Name, e.Name)
			case e.Kind != kind:
				return api.Errorf(api.ErrCollision, "%q is registered as a %s", req.Name, api.KindOf(e.Kind))
			case e.Owner != self:
				return api.Errorf(api.ErrCollision, "%q is registered by node %d", req.Name, e.Owner)
			}
		}
		return a.roomFor(id, req.Name)
	})
	if err != nil {
		return nil, err
	}
	// Registering again an entity that is down (a restarted process) brings
	// it up (docs/api.md): the master's register of an entity it holds down
	// under the same owner and kind is a change of state to up.
	// What this node registered survives an agent restart (adopt.go).
	if req.Process {
		a.ownedPut(req.Name, kind, cred.PID, false)
	} else {
		a.ownedPut(req.Name, kind, 0, false)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if req.Process {
		if err := a.pw.Watch(cred.PID, id); err != nil {
			// An entity whose process is not watched would never go
			// down: take the registration back, and refuse it.
			a.mu.Unlock()
			_, uerr := a.write(ctx, core.Request{Kind: wire.ReportUnregister, Name: req.Name}, nil)
			a.mu.Lock()
			if uerr != nil {
				return nil, api.Errorf(api.ErrInternal, "%q is registered, but its process %d cannot be watched (%v) and unregistering it failed: %v", req.Name, cred.PID, err, uerr)
			}
			if errors.Is(err, procwatch.ErrLimit) {
				return nil, api.Errorf(api.ErrBusy, "%q: not registered: %v", req.Name, err)
			}
			return nil, api.Errorf(api.ErrInternal, "%q: not registered: its process %d cannot be watched: %v", req.Name, cred.PID, err)
		}
		a.procs[id] = req.Name
	} else if _, ok := a.procs[id]; ok {
		a.pw.Unwatch(id)
		delete(a.procs, id)
	}
	if e, ok := a.lookup(req.Name); ok {
		out := toAPI(e)
		if v := api.VersionOf(res.Ver); v != nil {
			out.Version = v // this registration's, even if the table has moved on
		}
		return &out, nil
	}
	// Registered, then removed again by a later write before we could read
	// it: the registration was applied all the same, and is answered as
	// such, with its version. (It was once answered not_found, an error
	// for a write the master had applied and this node's ledger went on
	// re-asserting: netns chaos, svc/w3-0.)
	return &api.Entity{ID: api.ID(id), Name: req.Name, Kind: req.Kind, Owner: self, State: api.StateUp,
		ChangedSeq: res.Seq, ChangedBy: self, Alarms: []api.Alarm{}, Version: api.VersionOf(res.Ver)}, nil
}

// Unregister implements api.Handler.
func (h *handler) Unregister(ctx context.Context, cred api.Cred, req *api.UnregisterRequest) (out *api.ReportResult, err error) {
	a := h.a
	defer func() { a.audit(cred, "unregister", req.Name, nil, out, err) }()
	res, err := a.write(ctx, core.Request{Kind: wire.ReportUnregister, Name: req.Name}, func(*core.Request) error {
		e, ok := a.lookup(req.Name)
		if !ok {
			return notFound(req.Name)
		}
		return a.foreignCheck(cred, api.OpUnregister, e)
	})
	if err != nil {
		return nil, err
	}
	a.ownedPut(req.Name, 0, 0, true)
	id := table.ID(req.Name)
	a.mu.Lock()
	if _, ok := a.procs[id]; ok {
		a.pw.Unwatch(id)
		delete(a.procs, id)
	}
	a.mu.Unlock()
	return &api.ReportResult{Seq: res.Seq, Verdict: verdict(res.Seq, "unregister"), Version: api.VersionOf(res.Ver)}, nil
}

// faultWrite is one of the four fault writes (Report, Raise, Clear,
// SetState), in the parts the datagram socket needs apart
// (dgramwrite.go): what is checked (check, under the lock, which may fill
// in req) and submitted, and what is answered once the change is in this
// node's table (done). On the stream, runFault does all of it in a row.
type faultWrite struct {
	op    string // its name in the audit log
	name  string // the entity's
	attrs []any  // the audit's own attributes
	req   core.Request
	check func(*core.Request) error
	done  func(res core.Result) (*api.ReportResult, error)
}

// runFault makes the write fw for cred, waits for it and audits it.
func (a *agent) runFault(ctx context.Context, cred api.Cred, fw *faultWrite) (out *api.ReportResult, err error) {
	res, err := a.write(ctx, fw.req, fw.check)
	return a.finishFault(cred, fw, res, err)
}

// finishFault answers the write fw from its result (or its error) and
// audits it.
func (a *agent) finishFault(cred api.Cred, fw *faultWrite, res core.Result, err error) (out *api.ReportResult, _ error) {
	if err == nil {
		out, err = fw.done(res)
	}
	if err != nil {
		out = nil
	}
	a.audit(cred, fw.op, fw.name, fw.attrs, out, err)
	return out, err
}

// faultWriteOf is the faultWrite of a decoded fault request (a
// *api.ReportRequest, *api.RaiseRequest, *api.ClearRequest or
// *api.SetStateRequest) made by cred.
func (a *agent) faultWriteOf(cred api.Cred, req any) *faultWrite {
	switch r := req.(type) {
	case *api.ReportRequest:
		return a.reportWrite(r)
	case *api.RaiseRequest:
		return a.raiseWrite(cred, r)
	case *api.ClearRequest:
		return a.clearWrite(cred, r)
	case *api.SetStateRequest:
		return a.setStateWrite(cred, r)
	}
	panic(fmt.Sprintf("agent: %T is not a fault write", req))
}

// Report implements api.Handler.
func (h *handler) Report(ctx context.Context, cred api.Cred, req *api.ReportRequest) (*api.ReportResult, error) {
	return h.a.runFault(ctx, cred, h.a.reportWrite(req))
}

// Raise implements api.Handler.
func (h *handler) Raise(ctx context.Context, cred api.Cred, req *api.RaiseRequest) (*api.ReportResult, error) {
	return h.a.runFault(ctx, cred, h.a.raiseWrite(cred, req))
}

// Clear implements api.Handler.
func (h *handler) Clear(ctx context.Context, cred api.Cred, req *api.ClearRequest) (*api.ReportResult, error) {
	return h.a.runFault(ctx, cred, h.a.clearWrite(cred, req))
}

// SetState implements api.Handler: the owner (this node) speaking for its
// own entity.
func (h *handler) SetState(ctx context.Context, cred api.Cred, req *api.SetStateRequest) (*api.ReportResult, error) {
	return h.a.runFault(ctx, cred, h.a.setStateWrite(cred, req))
}

// reportWrite is a Report. The verdict is read back from the table: what
// the change with the result's seq did.
func (a *agent) reportWrite(req *api.ReportRequest) *faultWrite {
	return &faultWrite{op: "report", name: req.Name, attrs: append(causeAttr(req.Cause), sevAttr(req.Severity)...),
		req: core.Request{Kind: wire.ReportFault, Name: req.Name, Severity: req.Severity.Wire(), Cause: req.Cause, Txn: req.Txn},
		check: func(r *core.Request) error {
			if e, ok := a.lookup(req.Name); ok {
				r.EntityKind = e.Kind
				return nil
			}
			// A report about an unknown name may register it (the plugins'
			// verdict): only if it fits.
			return a.roomFor(table.ID(req.Name), req.Name)
		},
		done: func(res core.Result) (*api.ReportResult, error) { return a.reportVerdict(req, res), nil },
	}
}

// reportVerdict is the answer to the Report req whose result is res.
func (a *agent) reportVerdict(req *api.ReportRequest, res core.Result) *api.ReportResult {
	out := &api.ReportResult{Seq: res.Seq, Verdict: "ignore", Version: api.VersionOf(res.Ver)}
	if res.Seq == 0 {
		return out
	}
	cause := req.Cause
	if cause == "" {
		cause = "fault" // plugin.CauseFault
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	out.Verdict = "applied"
	if e, ok := a.lookup(req.Name); ok {
		if al, ok := e.Alarm(cause); ok && al.Seq == res.Seq {
			out.Verdict = "raise"
		} else if e.State == wire.StateDown && e.ChangedSeq == res.Seq {
			out.Verdict = "down"
		}
	}
	if out.Verdict == "applied" {
		if e, ok := a.core.Table().Get(table.NodeEntityID(a.self)); ok && e.ChangedSeq == res.Seq {
			out.Verdict = "blame-reporter"
		}
	}
	return out
}

func verdict(seq uint64, v string) string {
	if seq == 0 {
		return "ignore"
	}
	return v
}

// raiseWrite is a Raise.
func (a *agent) raiseWrite(cred api.Cred, req *api.RaiseRequest) *faultWrite {
	return &faultWrite{op: "raise", name: req.Name, attrs: append(causeAttr(req.Cause), sevAttr(req.Severity)...),
		req: core.Request{Kind: wire.ReportRaise, Name: req.Name, Severity: req.Severity.Wire(), Cause: req.Cause},
		check: func(r *core.Request) error {
			e, ok := a.lookup(req.Name)
			if !ok {
				return notFound(req.Name)
			}
			r.EntityKind = e.Kind
			return a.foreignCheck(cred, api.OpRaise, e)
		},
		done: func(res core.Result) (*api.ReportResult, error) {
			if err := a.raised(req.Name, req.Cause, res.Seq); err != nil {
				return nil, err
			}
			return &api.ReportResult{Seq: res.Seq, Verdict: verdict(res.Seq, "raise"), Version: api.VersionOf(res.Ver)}, nil
		},
	}
}

// clearWrite is a Clear.
func (a *agent) clearWrite(cred api.Cred, req *api.ClearRequest) *faultWrite {
	return &faultWrite{op: "clear", name: req.Name, attrs: causeAttr(req.Cause),
		req: core.Request{Kind: wire.ReportClear, Name: req.Name, Cause: req.Cause},
		check: func(*core.Request) error {
			e, ok := a.lookup(req.Name)
			if !ok {
				return notFound(req.Name)
			}
			if _, ok := e.Alarm(req.Cause); !ok {
				return fmt.Errorf("no alarm %q on %q: %w", req.Cause, req.Name, api.ErrNotFound)
			}
			return a.foreignCheck(cred, api.OpClear, e)
		},
		done: func(res core.Result) (*api.ReportResult, error) {
			return &api.ReportResult{Seq: res.Seq, Verdict: verdict(res.Seq, "clear"), Version: api.VersionOf(res.Ver)}, nil
		},
	}
}

// setStateWrite is a SetState.
func (a *agent) setStateWrite(cred api.Cred, req *api.SetStateRequest) *faultWrite {
	kind := wire.ReportUp
	if req.State == api.StateDown {
		kind = wire.ReportDown
	}
	return &faultWrite{op: "set-state", name: req.Name, attrs: []any{"state", string(req.State)},
		req: core.Request{Kind: kind, Name: req.Name},
		check: func(r *core.Request) error {
			e, ok := a.lookup(req.Name)
			if !ok {
				return notFound(req.Name)
			}
			r.EntityKind = e.Kind
			if e.Owner != a.self {
				return api.Errorf(api.ErrPermission, "%q is owned by node %d; only its owner sets its state (report a fault instead)", req.Name, e.Owner)
			}
			return a.foreignCheck(cred, api.OpSetState, e)
		},
		done: func(res core.Result) (*api.ReportResult, error) {
			a.ownedState(req.Name, req.State.Wire())
			return &api.ReportResult{Seq: res.Seq, Verdict: verdict(res.Seq, string(req.State)), Version: api.VersionOf(res.Ver)}, nil
		},
	}
}

// Get implements api.Handler.
func (h *handler) Get(ctx context.Context, name string) (*api.Entity, error) {
	a := h.a
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.lookup(name)
	if !ok {
		return nil, notFound(name)
	}
	out := toAPI(e)
	return &out, nil
}

// List implements api.Handler; entities come in ID order.
func (h *handler) List(ctx context.Context, req *api.ListRequest) ([]api.Entity, error) {
	a := h.a
	kind, state := req.Kind.Wire(), req.State.Wire()
	rc := newRowCopy()
	defer rc.release()
	a.mu.Lock()
	a.core.Table().Range(func(e *table.Entity) bool {
		if (kind == 0 || e.Kind == kind) && (state == 0 || e.State == state) &&
			(!req.AlarmedOnly || len(e.Alarms) > 0) && strings.HasPrefix(e.Name, req.Prefix) {
			rc.add(e)
		}
		return true
	})
	a.mu.Unlock()
	rows := rc.entities()
	if len(rows) == 0 {
		return nil, nil
	}
	out := make([]api.Entity, len(rows))
	for i := range rows {
		out[i] = toAPI(&rows[i])
	}
	return out, nil
}

// Watch implements api.Handler.
func (h *handler) Watch(ctx context.Context, req *api.WatchRequest, send func(*api.Event) error) error {
	a := h.a
	w := &watcher{prefix: req.Prefix, ch: make(chan api.Event, watchBuffer), gone: make(chan struct{})}
	a.mu.Lock()
	if a.stopping {
		a.mu.Unlock()
		return api.Errorf(api.ErrUnavailable, "the agent is shutting down")
	}
	a.watchers[w] = struct{}{}
	// A snapshot or a resume, taken with the subscription under one lock:
	// no change falls between them (journal.go).
	start := a.watchStart(req)
	a.mu.Unlock()
	initial := start.events()
	defer func() {
		a.mu.Lock()
		delete(a.watchers, w)
		a.mu.Unlock()
	}()
	req.Ready()
	for i := range initial {
		if err := send(&initial[i]); err != nil {
			return err
		}
	}
	for {
		select {
		case ev := <-w.ch:
			if err := send(&ev); err != nil {
				return err
			}
		case <-w.gone:
			// Deliver what was queued before the drop, then end.
			for {
				select {
				case ev := <-w.ch:
					if err := send(&ev); err != nil {
						return err
					}
				default:
					return w.err
				}
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Status implements api.Handler.
func (h *handler) Status(ctx context.Context) (*api.Status, error) {
	a := h.a
	a.mu.Lock()
	st := a.core.Status()
	a.mu.Unlock()
	out := a.statusOf(&st)
	out.Watchdog = a.watchdogStatus()
	out.ExitWatch = a.exitStatus()
	return out, nil
}

// Switchover implements api.Handler: the master hands over to the
// vice-master (asked here, the request is forwarded to the master). It
// returns once this node sees a new master, or with a timeout.
func (h *handler) Switchover(ctx context.Context, cred api.Cred) (err error) {
	a := h.a
	defer func() { a.audit(cred, "switchover", "", nil, nil, err) }()
	a.mu.Lock()
	before := a.core.Role()
	err = a.core.Switchover(time.Now())
	a.mu.Unlock()
	// The call for the switchover is sent by the real-time loop (rare,
	// and not on a fault's path: submitOffLoop says what sending it here
	// would take).
	a.poke()
	switch {
	case errors.Is(err, core.ErrNoMaster):
		return api.Errorf(api.ErrNoMaster, "no master to hand over from")
	case errors.Is(err, core.ErrNoVice):
		return api.Errorf(api.ErrUnavailable, "the master has no vice-master to hand over to")
	case err != nil:
		return api.Errorf(api.ErrInternal, "%v", err)
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(2 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case <-ctx.Done():
			return api.Errorf(api.ErrTimeout, "switchover: %v", ctx.Err())
		case <-deadline.C:
			return api.Errorf(api.ErrTimeout, "switchover asked; node %d is still master after 2s", before.Master)
		case <-tick.C:
		}
		a.mu.Lock()
		now := a.core.Role()
		a.mu.Unlock()
		if now.Master != 0 && now.Master != before.Master && now.Epoch > before.Epoch {
			return nil
		}
	}
}

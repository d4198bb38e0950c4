// Package apitest provides an in-memory api.Handler for tests of the API
// server, the client library and tools built on them. It keeps a map of
// entities and a sequence number, and streams changes to watchers; it has
// no cluster, no master and no plugins.
package apitest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/wire"
)

// Handler is an in-memory api.Handler. The zero value is not usable; use
// NewHandler.
type Handler struct {
	// Node is the node ID the fake claims to be (owner of what it registers).
	Node wire.NodeID
	// Hook, if set, is called at the start of every method with the method
	// name ("register", "get", ...); a non-nil error is returned to the
	// client instead of running the method. Tests use it to block (it gets
	// the request's context) or to inject errors.
	Hook func(ctx context.Context, method string) error

	mu       sync.Mutex
	seq      uint64
	entities map[string]*api.Entity
	watchers map[*watcher]struct{}
	calls    []Call
	status   api.Status
}

// Call records one write call, for tests that check credentials.
type Call struct {
	Method string
	Cred   api.Cred
	Name   string
	// Process is the PID an entity was tied to by Register with Process.
	Process int32
}

type watcher struct {
	prefix string
	ch     chan api.Event
}

// NewHandler returns an empty fake handler claiming to be node 1, master of
// a one-node cluster.
func NewHandler() *Handler {
	h := &Handler{
		Node:     1,
		entities: make(map[string]*api.Entity),
		watchers: make(map[*watcher]struct{}),
	}
	h.status = api.Status{
		Node: 1, Cluster: 7, Role: api.RoleMaster, Epoch: 1, Master: 1,
		Incarnation: 1,
		Members: []api.Member{{
			Node: 1, Incarnation: 1, Role: api.RoleMaster, State: api.StateUp,
			Links: api.Links{A: true, B: true}, Priority: 10, Eligible: true,
		}},
	}
	return h
}

// Calls returns the write calls seen so far.
func (h *Handler) Calls() []Call {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Call(nil), h.calls...)
}

// WatcherCount returns the number of Watch calls in progress.
func (h *Handler) WatcherCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.watchers)
}

func (h *Handler) hook(ctx context.Context, m string) error {
	if h.Hook != nil {
		return h.Hook(ctx, m)
	}
	return nil
}

// change applies a change under h.mu: bumps seq, stamps e, notifies watchers.
func (h *Handler) change(kind api.EventKind, cause string, e *api.Entity) uint64 {
	h.seq++
	e.ChangedSeq = h.seq
	e.ChangedAt = time.Now().UTC()
	e.ChangedBy = h.Node
	h.status.TableSeq = h.seq
	ev := api.Event{Seq: h.seq, Kind: kind, Cause: cause, Entity: clone(e)}
	for w := range h.watchers {
		if strings.HasPrefix(e.Name, w.prefix) {
			select {
			case w.ch <- ev:
			default: // a watcher this far behind loses events; tests keep up
			}
		}
	}
	return h.seq
}

func clone(e *api.Entity) api.Entity {
	c := *e
	c.Alarms = append([]api.Alarm(nil), e.Alarms...)
	return c
}

func (h *Handler) lookup(name string) (*api.Entity, error) {
	e, ok := h.entities[name]
	if !ok {
		return nil, fmt.Errorf("entity %q: %w", name, api.ErrNotFound)
	}
	return e, nil
}

// Register implements api.Handler.
func (h *Handler) Register(ctx context.Context, cred api.Cred, req *api.RegisterRequest) (*api.Entity, error) {
	if err := h.hook(ctx, "register"); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	c := Call{Method: "register", Cred: cred, Name: req.Name}
	if req.Process {
		c.Process = cred.PID
	}
	h.calls = append(h.calls, c)
	if e, ok := h.entities[req.Name]; ok {
		if e.Kind != req.Kind {
			return nil, fmt.Errorf("%q is registered as a %s: %w", req.Name, e.Kind, api.ErrCollision)
		}
		e.Incarnation++
		e.State = api.StateUp
		h.change(api.EventRegister, "", e)
		r := clone(e)
		return &r, nil
	}
	e := &api.Entity{
		ID:          api.ID(wire.EntityID(req.Name)),
		Name:        req.Name,
		Kind:        req.Kind,
		Owner:       h.Node,
		State:       api.StateUp,
		Incarnation: 1,
	}
	h.entities[req.Name] = e
	h.change(api.EventRegister, "", e)
	r := clone(e)
	return &r, nil
}

// Unregister implements api.Handler.
func (h *Handler) Unregister(ctx context.Context, cred api.Cred, req *api.UnregisterRequest) (*api.ReportResult, error) {
	if err := h.hook(ctx, "unregister"); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, Call{Method: "unregister", Cred: cred, Name: req.Name})
	e, err := h.lookup(req.Name)
	if err != nil {
		return nil, err
	}
	delete(h.entities, req.Name)
	return &api.ReportResult{Seq: h.change(api.EventUnregister, "", e), Verdict: "unregister"}, nil
}

// Report implements api.Handler: a critical fault marks the entity down, a
// fault on an unknown entity is ignored (seq 0), anything else raises an
// alarm with the fault's cause.
func (h *Handler) Report(ctx context.Context, cred api.Cred, req *api.ReportRequest) (*api.ReportResult, error) {
	if err := h.hook(ctx, "report"); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, Call{Method: "report", Cred: cred, Name: req.Name})
	e, ok := h.entities[req.Name]
	if !ok {
		return &api.ReportResult{Verdict: "ignore"}, nil
	}
	if req.Severity == api.SevCritical {
		e.State = api.StateDown
		return &api.ReportResult{Seq: h.change(api.EventState, "", e), Verdict: "down"}, nil
	}
	h.raise(e, req.Cause, req.Severity)
	return &api.ReportResult{Seq: h.change(api.EventRaise, req.Cause, e), Verdict: "raise"}, nil
}

func (h *Handler) raise(e *api.Entity, cause string, sev api.Severity) {
	a := api.Alarm{Cause: cause, Severity: sev, RaisedAt: time.Now().UTC(), RaisedBy: h.Node}
	for i := range e.Alarms {
		if e.Alarms[i].Cause == cause {
			e.Alarms[i] = a
			return
		}
	}
	e.Alarms = append(e.Alarms, a)
}

// Raise implements api.Handler.
func (h *Handler) Raise(ctx context.Context, cred api.Cred, req *api.RaiseRequest) (*api.ReportResult, error) {
	if err := h.hook(ctx, "raise"); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, Call{Method: "raise", Cred: cred, Name: req.Name})
	e, err := h.lookup(req.Name)
	if err != nil {
		return nil, err
	}
	h.raise(e, req.Cause, req.Severity)
	return &api.ReportResult{Seq: h.change(api.EventRaise, req.Cause, e), Verdict: "raise"}, nil
}

// Clear implements api.Handler.
func (h *Handler) Clear(ctx context.Context, cred api.Cred, req *api.ClearRequest) (*api.ReportResult, error) {
	if err := h.hook(ctx, "clear"); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, Call{Method: "clear", Cred: cred, Name: req.Name})
	e, err := h.lookup(req.Name)
	if err != nil {
		return nil, err
	}
	for i := range e.Alarms {
		if e.Alarms[i].Cause == req.Cause {
			e.Alarms = append(e.Alarms[:i], e.Alarms[i+1:]...)
			return &api.ReportResult{Seq: h.change(api.EventClear, req.Cause, e), Verdict: "clear"}, nil
		}
	}
	return nil, fmt.Errorf("no alarm %q on %q: %w", req.Cause, req.Name, api.ErrNotFound)
}

// SetState implements api.Handler.
func (h *Handler) SetState(ctx context.Context, cred api.Cred, req *api.SetStateRequest) (*api.ReportResult, error) {
	if err := h.hook(ctx, "set_state"); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, Call{Method: "set_state", Cred: cred, Name: req.Name})
	e, err := h.lookup(req.Name)
	if err != nil {
		return nil, err
	}
	if e.State == req.State {
		return &api.ReportResult{Verdict: "ignore"}, nil
	}
	e.State = req.State
	return &api.ReportResult{Seq: h.change(api.EventState, "", e), Verdict: string(req.State)}, nil
}

// Get implements api.Handler.
func (h *Handler) Get(ctx context.Context, name string) (*api.Entity, error) {
	if err := h.hook(ctx, "get"); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	e, err := h.lookup(name)
	if err != nil {
		return nil, err
	}
	c := clone(e)
	return &c, nil
}

// List implements api.Handler; entities come sorted by name.
func (h *Handler) List(ctx context.Context, req *api.ListRequest) ([]api.Entity, error) {
	if err := h.hook(ctx, "list"); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []api.Entity
	for _, e := range h.entities {
		if req.Match(e) {
			out = append(out, clone(e))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Watch implements api.Handler.
func (h *Handler) Watch(ctx context.Context, req *api.WatchRequest, send func(*api.Event) error) error {
	if err := h.hook(ctx, "watch"); err != nil {
		return err
	}
	w := &watcher{prefix: req.Prefix, ch: make(chan api.Event, 1024)}
	h.mu.Lock()
	h.watchers[w] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.watchers, w)
		h.mu.Unlock()
	}()
	req.Ready()
	for {
		select {
		case ev := <-w.ch:
			if err := send(&ev); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Status implements api.Handler.
func (h *Handler) Status(ctx context.Context) (*api.Status, error) {
	if err := h.hook(ctx, "status"); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.status
	st.Members = append([]api.Member(nil), h.status.Members...)
	return &st, nil
}

// Switchover implements api.Handler: a one-node cluster has no vice-master
// to hand over to unless SetVice named one.
func (h *Handler) Switchover(ctx context.Context, cred api.Cred) error {
	if err := h.hook(ctx, "switchover"); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, Call{Method: "switchover", Cred: cred})
	if h.status.Vice == 0 {
		return fmt.Errorf("no vice-master to hand over to: %w", api.ErrUnsupported)
	}
	h.status.Master, h.status.Vice = h.status.Vice, h.status.Master
	h.status.Role = api.RoleVice
	h.status.Epoch++
	return nil
}

// SetVice names a vice-master so that Switchover succeeds.
func (h *Handler) SetVice(n wire.NodeID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.status.Vice = n
}

// Package hooks runs the operator's notify scripts on cluster events, the
// way keepalived runs its notify scripts and pacemaker its alert agents: a
// script per event kind, the event in FMAGENT_* environment variables and as
// one JSON object on stdin, a timeout, failures logged.
//
// The agent must never wait for a script: Notify only queues (each hook
// has its own queue and one worker, so one hook's events run in order and a
// slow hook delays no other); when a queue is full the event is dropped for
// that hook and the drop is logged (rate-limited) and counted.
package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Event kinds a hook may subscribe to (config.HookKinds).
const (
	KindNode  = "node"  // a node up or down (joined, lost, left)
	KindLink  = "link"  // a node's link up or down
	KindRole  = "role"  // this node's role, the master or epoch, stale/fresh
	KindAlarm = "alarm" // an alarm raised or cleared
	KindState = "state" // any other entity up, down, registered or unregistered
)

// Event is what a script is told. The JSON names are those of the
// environment variables without the FMAGENT_ prefix, in lower case.
type Event struct {
	Kind       string    `json:"event"`  // KindNode...
	Action     string    `json:"action"` // up, down, register, unregister, raise, clear, master, role, stale, fresh
	Node       uint32    `json:"node"`   // the node running the hook
	Cluster    uint32    `json:"cluster"`
	Entity     string    `json:"entity,omitempty"`
	EntityKind string    `json:"entity_kind,omitempty"`
	Owner      uint32    `json:"owner,omitempty"`
	State      string    `json:"state,omitempty"`
	Cause      string    `json:"cause,omitempty"`
	Severity   string    `json:"severity,omitempty"`
	By         uint32    `json:"by,omitempty"`
	Seq        uint64    `json:"seq,omitempty"`
	Cursor     uint64    `json:"cursor"`
	Time       time.Time `json:"time"`
	Master     uint32    `json:"master"`
	Epoch      uint64    `json:"epoch"`
	Role       string    `json:"role"`
}

// Env returns the event as FMAGENT_* environment variables.
func (e *Event) Env() []string {
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	return []string{
		"FMAGENT_EVENT=" + e.Kind,
		"FMAGENT_ACTION=" + e.Action,
		"FMAGENT_NODE=" + u(uint64(e.Node)),
		"FMAGENT_CLUSTER=" + u(uint64(e.Cluster)),
		"FMAGENT_ENTITY=" + e.Entity,
		"FMAGENT_ENTITY_KIND=" + e.EntityKind,
		"FMAGENT_OWNER=" + u(uint64(e.Owner)),
		"FMAGENT_STATE=" + e.State,
		"FMAGENT_CAUSE=" + e.Cause,
		"FMAGENT_SEVERITY=" + e.Severity,
		"FMAGENT_BY=" + u(uint64(e.By)),
		"FMAGENT_SEQ=" + u(e.Seq),
		"FMAGENT_CURSOR=" + u(e.Cursor),
		"FMAGENT_TIME=" + e.Time.UTC().Format(time.RFC3339Nano),
		"FMAGENT_MASTER=" + u(uint64(e.Master)),
		"FMAGENT_EPOCH=" + u(e.Epoch),
		"FMAGENT_ROLE=" + e.Role,
	}
}

// Hook is one configured script.
type Hook struct {
	Command string
	Args    []string
	On      []string // kinds; empty: all
	Timeout time.Duration
}

func (h *Hook) wants(kind string) bool {
	if len(h.On) == 0 {
		return true
	}
	for _, k := range h.On {
		if k == kind {
			return true
		}
	}
	return false
}

// QueueSize is each hook's queue of events waiting to run.
var QueueSize = 256

// Stats count what the runner did.
type Stats struct {
	Runs, Failures, Timeouts, Dropped atomic.Uint64
}

// Runner runs the hooks.
type Runner struct {
	log     *slog.Logger
	workers []*worker
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
	start   func(*exec.Cmd) error
	Stats   Stats
}

type worker struct {
	h        Hook
	q        chan *Event
	dropMu   sync.Mutex
	dropped  int
	dropLast time.Time
}

// New starts a runner for hooks (nil if there are none). start starts a
// hook's process (nil: exec.Cmd.Start); the agent passes one that starts
// it at the normal scheduling policy and nice value
// (transport.StartNormal), so no script inherits its threads'.
func New(hooks []Hook, log *slog.Logger, start func(*exec.Cmd) error) *Runner {
	if len(hooks) == 0 {
		return nil
	}
	if start == nil {
		start = (*exec.Cmd).Start
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Runner{log: log, ctx: ctx, cancel: cancel, start: start}
	for _, h := range hooks {
		w := &worker{h: h, q: make(chan *Event, QueueSize)}
		r.workers = append(r.workers, w)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.work(w)
		}()
	}
	return r
}

// Wants reports whether any hook runs for kind (so the caller can skip
// building the event).
func (r *Runner) Wants(kind string) bool {
	if r == nil {
		return false
	}
	for _, w := range r.workers {
		if w.h.wants(kind) {
			return true
		}
	}
	return false
}

// Notify queues e for every hook that wants its kind. It never blocks.
func (r *Runner) Notify(e *Event) {
	if r == nil {
		return
	}
	for _, w := range r.workers {
		if !w.h.wants(e.Kind) {
			continue
		}
		select {
		case w.q <- e:
		default:
			r.Stats.Dropped.Add(1)
			w.dropMu.Lock()
			w.dropped++
			if time.Since(w.dropLast) >= time.Minute {
				r.log.Warn("hook queue full: events dropped for this hook (the script is slower than the events)",
					"hook", w.h.Command, "dropped", w.dropped, "queue", cap(w.q))
				w.dropped, w.dropLast = 0, time.Now()
			}
			w.dropMu.Unlock()
		}
	}
}

// Close stops the runner: queued events are dropped, running scripts are
// killed, and Close waits for the workers.
func (r *Runner) Close() {
	if r == nil {
		return
	}
	r.cancel()
	for _, w := range r.workers {
		close(w.q)
	}
	r.wg.Wait()
}

func (r *Runner) work(w *worker) {
	for e := range w.q {
		if r.ctx.Err() != nil {
			continue // closing: drain without running
		}
		r.run(&w.h, e)
	}
}

// maxOutput is how much of a failing script's output is logged.
const maxOutput = 512

func (r *Runner) run(h *Hook, e *Event) {
	body, err := json.Marshal(e)
	if err != nil {
		r.log.Error("hook: encoding the event", "hook", h.Command, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, h.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.Command, h.Args...)
	cmd.Env = append(os.Environ(), e.Env()...)
	cmd.Stdin = bytes.NewReader(append(body, '\n'))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, so that a timeout kills what it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	start := time.Now()
	if err = r.start(cmd); err == nil {
		err = cmd.Wait()
	}
	r.Stats.Runs.Add(1)
	took := time.Since(start)
	if err == nil {
		r.log.Debug("hook ran", "hook", h.Command, "event", e.Kind, "action", e.Action, "entity", e.Entity, "took", took)
		return
	}
	r.Stats.Failures.Add(1)
	msg := "hook failed"
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		r.Stats.Timeouts.Add(1)
		msg = fmt.Sprintf("hook killed after its timeout of %v", h.Timeout)
	}
	o := out.String()
	if len(o) > maxOutput {
		o = o[:maxOutput] + "..."
	}
	r.log.Warn(msg, "hook", h.Command, "event", e.Kind, "action", e.Action, "entity", e.Entity, "err", err, "took", took, "output", o)
}

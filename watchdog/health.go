package watchdog

import (
	"sync"
	"sync/atomic"
	"time"
)

// Health is the agent's liveness signal: its critical loops, each of which
// says when it starts work (Busy) and when it is back waiting for input
// (Idle), and, for a loop that must run on its own clock, each time it goes
// round (Beat). A loop is stalled when it has been busy for longer than the
// check's window (stuck in a lock, a syscall, a bug) or, if periodic, has
// not gone round within the window. A loop blocked waiting for input that
// may never come (a receive loop on a quiet network, the accept loop) is
// idle, and healthy.
//
// Busy, Idle and Beat are atomic stores: safe on the hot paths, no
// allocation.
type Health struct {
	mu    sync.Mutex
	loops []*Loop
}

// Loop is one critical loop.
type Loop struct {
	name     string
	periodic bool
	window   time.Duration // at least this long a window (LoopWithin); 0: the check's
	busy     atomic.Int64  // unix nanoseconds when work started; 0 idle
	last     atomic.Int64  // unix nanoseconds of the last Idle or Beat
}

// Loop registers a loop. A periodic loop must Beat within every window.
func (h *Health) Loop(name string, periodic bool) *Loop {
	l := &Loop{name: name, periodic: periodic}
	l.last.Store(time.Now().UnixNano())
	h.mu.Lock()
	h.loops = append(h.loops, l)
	h.mu.Unlock()
	return l
}

// LoopWithin registers a periodic loop that must Beat within window, or
// within the check's window if that is longer: a loop that goes round less
// often than the guard checks.
func (h *Health) LoopWithin(name string, window time.Duration) *Loop {
	l := h.Loop(name, true)
	l.window = window
	return l
}

// Started counts every loop's progress from now: the guard's first check
// comes when the loops start, and the time it took to get there (the
// agent opening its sockets, its shared memory and its API, which on a
// loaded machine took over a window) is not a loop's stall. Every loop's
// last progress becomes now (a later one, from a clock read after now on
// another thread, stays); a loop busy since before keeps its busy time,
// which is judged as ever.
func (h *Health) Started(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := now.UnixNano()
	for _, l := range h.loops {
		if l.last.Load() < t {
			l.last.Store(t)
		}
	}
}

// Name is the loop's name.
func (l *Loop) Name() string { return l.name }

// Busy marks the start of work (before taking a lock, say). Nested Busy
// calls keep the first start.
func (l *Loop) Busy() {
	l.busy.CompareAndSwap(0, time.Now().UnixNano())
}

// Idle marks the end of work: the loop made progress.
func (l *Loop) Idle() {
	l.last.Store(time.Now().UnixNano())
	l.busy.Store(0)
}

// Beat records that a periodic loop went round.
func (l *Loop) Beat() { l.last.Store(time.Now().UnixNano()) }

// LoopStatus is one loop as a check saw it.
type LoopStatus struct {
	Name    string
	Healthy bool
	// LastProgress is the last Idle or Beat.
	LastProgress time.Time
	// BusyFor is how long the current piece of work has lasted (0: idle).
	BusyFor time.Duration
}

// Check returns every loop's status at now, with a window: the longest a
// loop may be busy, and the longest a periodic loop may go without a Beat.
// stalled names the stalled loops (nil if none).
func (h *Health) Check(now time.Time, window time.Duration) (loops []LoopStatus, stalled []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.loops {
		st := LoopStatus{Name: l.name, Healthy: true, LastProgress: time.Unix(0, l.last.Load())}
		w := max(window, l.window)
		if b := l.busy.Load(); b != 0 {
			st.BusyFor = max(now.Sub(time.Unix(0, b)), 0)
			if st.BusyFor > w {
				st.Healthy = false
			}
		}
		if l.periodic && now.Sub(st.LastProgress) > w {
			st.Healthy = false
		}
		if !st.Healthy {
			stalled = append(stalled, l.name)
		}
		loops = append(loops, st)
	}
	return loops, stalled
}

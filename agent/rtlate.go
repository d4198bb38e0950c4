package agent

import (
	"slices"
	"sync"
	"time"
)

// A late tick is a wake-up of the real-time loop for a deadline (a
// heartbeat to send, a peer to judge) that came lateTickIntervals heartbeat
// intervals or more after it: this node's heartbeat went out late, and its
// peers heard it silent for that long. The loop records each with what held it,
// and the agent logs it (lateLogger) and counts it by cause
// (fmagent_rt_late_ticks_total), so that a peer's suspicion of this node,
// or a false down, can be traced to its cause at this node:
//
//   - yield: the loop's yield to Go's scheduler (yieldEvery) ran past the
//     deadline. The loop yields in place (transport.Locked.YieldInPlace):
//     what its P had queued runs first, on the loop's thread, and another
//     thread may take the loop's goroutine (then the loop waits for that
//     thread, at the normal policy, to run); so a burst of the agent's
//     other goroutines, the garbage collector's work, or CPU load on the
//     agent's CPUs after such a move, keep the loop waiting. (Until
//     2 December 2026 every yield handed the P to another thread and
//     back: most late ticks of the 10 ms profile under a CPU hog.)
//   - lock_wait: the loop waited for the agent's lock, held by the API,
//     publishing or the process watcher.
//   - work: the loop woke in time (or for something else than its
//     deadline) and its own work after waking ran past the deadline:
//     reading a burst from its sockets, answering requests left to it, or
//     its thread preempted or stopped while it worked (the host, the
//     garbage collector's stop-the-world). Until 3 December 2026 only a
//     wake-up by the timer was checked for lateness, so a stall in the
//     work of a wake-up for a request or a change went uncounted: the
//     soak's silences "in no late tick of the agent's own".
//   - wake: the rest — the kernel ran the loop's SCHED_FIFO thread late
//     (a paused or descheduled virtual CPU, real-time throttling, an
//     interrupt storm) or a page fault, before it woke.
type lateTick struct {
	due      time.Time     // the deadline
	late     time.Duration // how long after it the loop ticked
	yield    time.Duration // of late, in a yield that ran past the deadline
	lockWait time.Duration // of late, waiting for the agent's lock
	work     time.Duration // of late, the loop's work after it woke, lock waits aside
}

// lateTickIntervals: how many heartbeat intervals after its deadline a
// tick is late. Two: a peer tolerates one missed heartbeat at every
// profile, and the core defers its own judgements past two (EvStalled).
const lateTickIntervals = 2

// The causes of a late tick, the labels of fmagent_rt_late_ticks_total.
const (
	lateYield = iota
	lateLockWait
	lateWake
	lateWork
	numLateCauses
)

var lateCauseNames = [numLateCauses]string{"yield", "lock_wait", "wake", "work"}

// waking is what is left of late once the yield, the lock wait and the
// work are taken out.
func (l *lateTick) waking() time.Duration { return max(l.late-l.yield-l.lockWait-l.work, 0) }

// cause is the largest of the four parts (yield, lock wait, work, waking).
func (l *lateTick) cause() int {
	c, d := lateWake, l.waking()
	if l.yield > d {
		c, d = lateYield, l.yield
	}
	if l.lockWait > d {
		c, d = lateLockWait, l.lockWait
	}
	if l.work > d {
		c = lateWork
	}
	return c
}

// workPast is how much of the loop's work after it woke at woke ran past
// due, until now, the lock wait aside.
func workPast(woke, due, now time.Time, lockWait time.Duration) time.Duration {
	from := woke
	if due.After(from) {
		from = due
	}
	return max(now.Sub(from)-lockWait, 0)
}

// yieldPast is how much of a yield from..to ran past due.
func yieldPast(from, to, due time.Time) time.Duration {
	if !to.After(due) {
		return 0
	}
	if from.After(due) {
		return to.Sub(from)
	}
	return to.Sub(due)
}

// lateLog holds the late ticks the loop recorded and the logger has not
// logged yet; record allocates nothing and never waits for the logger
// longer than a copy.
type lateLog struct {
	mu      sync.Mutex
	pending [lateLogCap]lateTick
	n       int // pending[:n]
	dropped int // recorded while pending was full
}

// lateLogCap: late ticks kept between two of the logger's passes; more are
// counted (and still in the metric), not kept.
const lateLogCap = 32

func (l *lateLog) record(t lateTick) {
	l.mu.Lock()
	if l.n < len(l.pending) {
		l.pending[l.n] = t
		l.n++
	} else {
		l.dropped++
	}
	l.mu.Unlock()
}

// take appends the pending late ticks to dst and empties the log.
func (l *lateLog) take(dst []lateTick) ([]lateTick, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	dst = append(dst, l.pending[:l.n]...)
	dropped := l.dropped
	l.n, l.dropped = 0, 0
	return dst, dropped
}

// lateTickMsg is the log message of a late tick (soak reads it).
const lateTickMsg = "real-time loop late: this node's heartbeat went out late, and its peers heard it silent as long"

// lateLinesPerPass: late ticks logged one by one in a pass of the logger
// (the longest); the rest of the pass are summed up in one line.
const lateLinesPerPass = 5

var lateHints = [numLateCauses]string{
	"its yield to Go's scheduler ran other work of the agent first (a burst of API work, the garbage collector) or moved it to another thread that CPU load then kept waiting",
	"it waited for the agent's lock (API, publishing, process watcher)",
	"the kernel ran its thread late (a paused or descheduled virtual CPU, real-time throttling, an interrupt storm, a page fault; without SCHED_FIFO, any CPU load)",
	"it woke in time but its work after waking ran past the deadline: a burst read from its sockets, requests answered, or its thread preempted or stopped while it worked (the host, the garbage collector's stop-the-world)",
}

// lateLogger logs the late ticks once a second until done: each of the
// lateLinesPerPass longest of the second with its parts and cause, the
// others summed up.
// With [realtime] trace_dir set, it keeps the flight recorder (latetrace.go)
// running meanwhile.
func (a *agent) lateLogger(done chan struct{}) {
	if dir := a.cfg.Realtime.TraceDir; dir != "" {
		minLate := a.cfg.Timing.Detection() / 2
		t, err := startLateTracer(dir, minLate)
		if err != nil {
			a.log.Error("no execution traces of late ticks", "err", err)
		} else {
			a.lateTrace = t
			defer t.stop()
			a.log.Info("execution traces of late ticks: Go's flight recorder is running (it costs CPU)", "dir", dir, "late_at_least", minLate,
				"at_most_every", t.every, "keep", t.keep)
		}
	}
	var buf []lateTick
	every(done, time.Second, func() bool {
		var dropped int
		buf, dropped = a.late.take(buf[:0])
		a.logLate(buf, dropped)
		a.traceLate(time.Now(), buf)
		a.warnFit(time.Now())
		return true
	})
}

func (a *agent) logLate(ticks []lateTick, dropped int) {
	// The lateLinesPerPass longest are logged one by one (in the order
	// they came): they are what a peer may have judged.
	cut := time.Duration(-1)
	if len(ticks) > lateLinesPerPass {
		var top [lateLinesPerPass]time.Duration
		for i := range top {
			top[i] = -1
		}
		for i := range ticks {
			if l := ticks[i].late; l > top[0] {
				top[0] = l
				slices.Sort(top[:])
			}
		}
		cut = top[0]
	}
	var worst time.Duration
	var counts [numLateCauses]int
	logged := 0
	for i := range ticks {
		t := &ticks[i]
		if logged < lateLinesPerPass && t.late >= cut {
			logged++
			c := t.cause()
			a.log.Warn(lateTickMsg, "due", t.due.UTC().Format(time.RFC3339Nano), "late", t.late,
				"in_yield", t.yield, "in_lock_wait", t.lockWait, "in_work", t.work, "waking", t.waking(),
				"cause", lateCauseNames[c], "hint", lateHints[c])
			continue
		}
		worst = max(worst, t.late)
		counts[t.cause()]++
	}
	if more := len(ticks) - logged + dropped; more > 0 {
		a.log.Warn("real-time loop late again: further late ticks this second (counted by cause in fmagent_rt_late_ticks_total)",
			"ticks", more, "worst_late", worst, "yield", counts[lateYield], "lock_wait", counts[lateLockWait], "wake", counts[lateWake], "work", counts[lateWork],
			"not_kept", dropped)
	}
}

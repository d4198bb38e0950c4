package transport

import (
	"errors"
	"fmt"
	"log"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// DefaultRTPriority is the SCHED_FIFO priority RunLocked uses when
// ThreadOptions.Priority is 0: above every SCHED_OTHER thread and below the
// kernel's own threaded interrupt handlers (50), so a busy receive loop
// cannot starve the NIC's interrupts.
const DefaultRTPriority = 10

// ThreadOptions say how RunLocked sets up its thread.
type ThreadOptions struct {
	// Realtime asks for SCHED_FIFO on the locked thread.
	Realtime bool
	// Priority is the SCHED_FIFO priority (1..99); 0 means DefaultRTPriority.
	Priority int
	// Logf receives the warning when SCHED_FIFO is not permitted; nil means
	// log.Printf.
	Logf func(format string, args ...any)
}

// RunLocked runs fn on the calling goroutine locked to its OS thread and,
// when opts.Realtime is set, with that thread (and only that thread) at
// SCHED_FIFO. It is meant for the heartbeat sender and the receive loops
// (DESIGN §8): under CPU load SCHED_OTHER leaves 8–15 ms gaps at p99, which a
// 1 ms heartbeat with 3 misses cannot absorb, while SCHED_FIFO keeps them
// near 1.1 ms; and the policy is per thread (`chrt -p` on the process changes
// one thread only), so it must be set on the thread that runs the loop, which
// therefore must stay locked to it.
//
// Not being permitted SCHED_FIFO (no CAP_SYS_NICE, RLIMIT_RTPRIO 0, a cgroup
// without an RT budget) is not fatal: RunLocked logs it, runs fn at the normal
// policy and returns the error after fn returns. The FIFO attribute carries
// SCHED_FLAG_RESET_ON_FORK so no thread created from this one inherits it.
// When fn returns the thread's previous policy is restored and the thread
// unlocked; if the restore fails the goroutine stays locked, so the thread
// ends with it instead of returning to the scheduler's pool at SCHED_FIFO.
func RunLocked(opts ThreadOptions, fn func()) error {
	return RunLockedWith(opts, func(*Locked) { fn() })
}

// Locked is the thread RunLockedWith runs its function on.
type Locked struct {
	tid   int
	old   *unix.SchedAttr // the thread's attributes before SCHED_FIFO; nil if not set
	prio  int
	logf  func(format string, args ...any)
	moves int
}

// Moves is how many times Yield came back on another thread.
func (l *Locked) Moves() int { return l.moves }

// Yield lets Go's scheduler run (a runtime.Gosched) at the cost of about one
// thread wake-up instead of three. A locked goroutine's Gosched hands its P
// to another thread (one wake-up), which finds the goroutine locked and
// hands the P back (another), and wakes a third to look for work; unlocked
// for the moment of the Gosched, the goroutine is simply run again by its
// own thread. It may come back on another thread (another thread took it
// from the run queue first): that thread then gets the SCHED_FIFO policy,
// and the one left behind its attributes from before, so the real-time
// policy stays with the loop.
func (l *Locked) Yield() {
	runtime.UnlockOSThread()
	runtime.Gosched()
	runtime.LockOSThread()
	tid := unix.Gettid()
	if tid == l.tid {
		return
	}
	l.moves++
	if l.old != nil {
		l.old.Size = unix.SizeofSchedAttr
		if err := unix.SchedSetAttr(l.tid, l.old, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			l.logf("fmagent: restoring the scheduling policy of thread %d: %v", l.tid, err)
		}
		old, err := setFIFO(l.prio)
		if err != nil {
			l.logf("fmagent: %v; the real-time loop moved to thread %d and runs at its policy", err, tid)
			l.old = nil
		} else {
			l.old = old
		}
	}
	l.tid = tid
}

// RunLockedWith is RunLocked for a function that yields (Locked.Yield).
func RunLockedWith(opts ThreadOptions, fn func(*Locked)) error {
	runtime.LockOSThread()
	logf := opts.Logf
	if logf == nil {
		logf = log.Printf
	}
	l := &Locked{tid: unix.Gettid(), prio: opts.Priority, logf: logf}
	var rtErr error
	if opts.Realtime {
		l.old, rtErr = setFIFO(opts.Priority)
		if rtErr != nil {
			logf("fmagent: %v; running at the normal scheduling policy (detection under load will be worse; DESIGN §8)", rtErr)
		}
	}
	fn(l)
	if old := l.old; old != nil {
		old.Size = unix.SizeofSchedAttr
		if err := unix.SchedSetAttr(0, old, 0); err != nil {
			logf("fmagent: restoring the scheduling policy of thread %d: %v; the thread ends with its goroutine", unix.Gettid(), err)
			return rtErr
		}
	}
	runtime.UnlockOSThread()
	return rtErr
}

// setFIFO puts the calling thread (sched_setattr with pid 0 is the calling
// thread, not the process) at SCHED_FIFO and returns its previous attributes.
func setFIFO(prio int) (*unix.SchedAttr, error) {
	if prio == 0 {
		prio = DefaultRTPriority
	}
	if prio < 1 || prio > 99 {
		return nil, fmt.Errorf("SCHED_FIFO priority %d out of range 1..99", prio)
	}
	old, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		return nil, fmt.Errorf("sched_getattr: %w", err)
	}
	attr := unix.SchedAttr{
		Size:     unix.SizeofSchedAttr,
		Policy:   unix.SCHED_FIFO,
		Priority: uint32(prio),
		Flags:    unix.SCHED_FLAG_RESET_ON_FORK,
	}
	if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
		return nil, fmt.Errorf("SCHED_FIFO %d on thread %d: %w", prio, unix.Gettid(), err)
	}
	return old, nil
}

// ProbeRealtime reports whether this process may put a thread at SCHED_FIFO
// priority prio (0: DefaultRTPriority): it tries on a locked thread of its
// own and restores it. nil means permitted; the error says why not (no
// CAP_SYS_NICE and RLIMIT_RTPRIO below prio, or a cgroup without an RT
// budget), so a profile that needs it can be refused at start.
func ProbeRealtime(prio int) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		old, err := setFIFO(prio)
		if err == nil {
			old.Size = unix.SizeofSchedAttr
			if rerr := unix.SchedSetAttr(0, old, 0); rerr != nil {
				// Leave the thread locked: it ends with this goroutine
				// instead of going back to the pool at SCHED_FIFO.
				errc <- nil
				return
			}
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// LockMemory locks the process's pages in RAM as they are touched
// (mlockall(MCL_CURRENT|MCL_FUTURE|MCL_ONFAULT)), so no heartbeat waits for
// a page to be read back from swap or a file. MCL_ONFAULT (Linux 4.4) locks
// a page when it is first touched instead of populating every mapping at
// once: Go reserves its heap arenas and thread stacks in large mappings it
// touches only in part, and without it every agent was resident at 170–190
// MiB instead of ~10 (five idle agents, 10 ms × 5). The hot path's pages —
// its buffers, its stack, the code it runs — are touched before the first
// heartbeat, so they are locked from then on. It needs CAP_IPC_LOCK or an
// RLIMIT_MEMLOCK above what the process touches.
func LockMemory() error {
	if err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE | unix.MCL_ONFAULT); err != nil {
		return fmt.Errorf("mlockall(MCL_CURRENT|MCL_FUTURE|MCL_ONFAULT): %w", err)
	}
	return nil
}

// SetProcessFIFO puts every thread of the process at SCHED_FIFO priority
// prio, without SCHED_FLAG_RESET_ON_FORK, so that the threads Go creates
// later inherit it (Go creates them with clone from a thread of the process,
// or from its template thread, which is one of them).
//
// Why the whole process and not only the real-time thread: the Go runtime
// shares its processors (Ps) among all of the process's threads. A thread at
// the normal policy that holds a P (running a goroutine, spinning for work,
// or in a stop-the-world of the garbage collector) and is preempted by a CPU
// hog keeps that P for a scheduler time slice; a real-time thread coming
// back from ppoll then finds no P and waits behind the hog too (measured by
// the soak: ~180 late ticks a minute and 131 false downs at the 10 ms profile
// with only the loop's thread at SCHED_FIFO). corosync runs every thread at
// SCHED_RR for the same reason. RunLocked then raises its own thread above
// the others.
func SetProcessFIFO(prio int) error {
	if prio < 1 || prio > 99 {
		return fmt.Errorf("SCHED_FIFO priority %d out of range 1..99", prio)
	}
	// Reset on fork: a process the agent starts (a supervised daemon, a
	// hook script, a test's go build) must not inherit real-time priority;
	// a CPU-bound child at SCHED_FIFO would starve the machine (seen: two
	// go linkers at FIFO 9 spinning for 20 minutes under a test that ran an
	// agent in-process). Threads the runtime creates later are at the
	// normal policy too; those that exist now, and the loop's own thread,
	// keep FIFO.
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: uint32(prio), Flags: unix.SCHED_FLAG_RESET_ON_FORK}
	// Threads may be created while we go through the list: go through it
	// until a pass finds nothing left to change.
	done := make(map[int]bool)
	for pass := 0; pass < 10; pass++ {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("listing the process's threads: %w", err)
		}
		changed := false
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || done[tid] {
				continue
			}
			if err := unix.SchedSetAttr(tid, &attr, 0); err != nil {
				if errors.Is(err, unix.ESRCH) {
					continue // the thread ended
				}
				return fmt.Errorf("SCHED_FIFO %d on thread %d: %w", prio, tid, err)
			}
			done[tid] = true
			changed = true
		}
		if !changed {
			return nil
		}
	}
	return nil
}

package transport

import (
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

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

// Locked is the real-time thread RunLockedWith runs its function on: the
// function's goroutine is locked to it (YieldUnlocked unlocks it for a
// moment and carries the thread's SCHED_FIFO to wherever it comes back).
type Locked struct {
	// old is the attributes the thread had before SCHED_FIFO (nil: not
	// real-time, nothing to carry across a move); tid is the thread's ID
	// (0 after a move that failed to carry SCHED_FIFO).
	old               *unix.SchedAttr
	tid               int
	cur               int            // the thread the goroutine is on (Tid)
	fifo              unix.SchedAttr // the attributes setFIFO gave the thread
	spare             unix.SchedAttr // the next thread's previous attributes
	normal            unix.SchedAttr // SCHED_NORMAL, nice 0
	moves, moveErrors atomic.Uint64
}

// Yield lets Go's scheduler run (a runtime.Gosched, which a loop that
// never blocks in Go needs: Waiter.HoldP says why) without leaving the
// thread: the goroutine stays locked, so it comes back on this thread at
// its policy. It costs three thread wake-ups (the P handed to another
// thread, which finds the goroutine locked elsewhere and hands the P back),
// and under a CPU hog it waits for that thread, at the normal policy, to
// be scheduled. The agent yields with YieldInPlace, which wakes none; Yield
// and YieldUnlocked stay to be measured against it (soak/cmd/yieldlat).
func (l *Locked) Yield() { runtime.Gosched() }

// YieldUnlocked is Yield with the goroutine unlocked for the moment of the
// Gosched. The same thread takes it back from the run queue almost always,
// but the thread the Gosched woke to look for work sometimes takes it
// first (1–3 % of yields in yieldlat, up to one in ten in the idle Go
// floor, idle or under a CPU hog); that thread is at the normal policy, so
// YieldUnlocked then puts it at SCHED_FIFO and the thread the goroutine
// left back at its previous attributes before returning (Moves counts
// it). Unlocking without that (b57456f) left the loop at the normal policy
// and caused false downs at idle.
//
// Measured (soak/cmd/yieldlat and e2e, 1 December 2026): idle, it saves
// CPU — five idle agents at N = 5, six alternated rounds, median CPU per
// agent 2.72 % locked against 1.87 % at 10 ms × 5, 5.89 against 5.17 % at
// 2 ms × 5, with as many idle false downs (2 of 12 runs each). Under two
// CPU burners it loses in the tail: a move leaves the loop on a normal
// thread until it runs again, and that wait is the slow yields (of the
// unlocked yields over 1 ms in eleven 30 s runs of yieldlat at 4 ms, all
// but one were moves); the worst wake-up per run had a median of 19.3 ms
// (at most 56.1) against 11.2 ms (at most 21.5) locked, for as many
// wake-ups later than an interval (103 against 114 in all).
// Detection that never cries wolf comes before idle CPU, so the agent
// kept the locked yield, until YieldInPlace.
//
// YieldUnlocked allocates nothing.
func (l *Locked) YieldUnlocked() { l.yieldUnlocked(runtime.Gosched) }

// YieldInPlace is YieldUnlocked with the runtime's own yield in place of
// runtime.Gosched: the goroutine goes to the tail of its P's local run
// queue, and its thread, unlocked for that moment, schedules at once —
// normally finding the goroutine again after whatever else that P had to
// run. No other thread is woken: a Gosched puts the goroutine on the
// global queue and wakes a thread to look for work (the moves
// YieldUnlocked pays for under load), and the locked Yield hands the P to
// another thread and waits for it to be scheduled and hand the P back
// (DESIGN §8: under a CPU hog such a thread, at the normal policy, may
// wait milliseconds for a CPU). A thread already looking for work may
// still take the goroutine off the queue; then SCHED_FIFO is carried to
// it, as YieldUnlocked does. Go's scheduler has run either way: a
// goroutine taken off a local queue's tail starts a new scheduling tick,
// which is all sysmon asks for.
//
// Whatever the P had queued runs first, on this thread and at its
// policy: goroutines the loop itself readied (they run at SCHED_FIFO for
// as long as they run, which for the agent's is until they block, as
// with any yield), and a timer or a garbage-collector worker the runtime
// starts on the P.
//
// YieldInPlace allocates nothing.
func (l *Locked) YieldInPlace() { l.yieldUnlocked(goyield) }

// yieldUnlocked runs yield with the goroutine unlocked and carries
// SCHED_FIFO to the thread it comes back on, if another; with more than
// one real-time loop in the process it yields locked (realtimeLoops).
func (l *Locked) yieldUnlocked(yield func()) {
	if l.old != nil && realtimeLoops.Load() > 1 {
		runtime.Gosched()
		return
	}
	runtime.UnlockOSThread()
	yield()
	runtime.LockOSThread()
	l.cur = unix.Gettid()
	if l.old == nil {
		return // not real-time: any thread will do
	}
	if l.cur != l.tid {
		l.moved(l.cur)
	}
}

// Tid is the ID of the thread the function runs on: fixed between yields
// (the goroutine is wired to it), and known without a system call, for
// pimutex.Mutex.LockOnThread.
func (l *Locked) Tid() int { return l.cur }

// realtimeLoops counts the functions RunLockedWith runs at SCHED_FIFO now.
// With more than one, the unlocked yields (YieldUnlocked, YieldInPlace)
// yield locked instead: two loops whose goroutines are unlocked at once
// can each come back on the thread the other left, and each would then
// carry SCHED_FIFO by its own account of the other's thread — restoring a
// thread the other loop now runs on, or recording SCHED_FIFO as a thread's
// attributes to restore — and leave a thread at SCHED_FIFO that runs
// ordinary goroutines. Seen: three agents in one test binary, yielding in
// place, failed their own API probes for seconds (the watchdog stopped
// kicking) and TestAttacks saw a master change; yielding locked while more
// than one loop runs, they pass. The agent runs one loop per process; the
// tests that run several agents in one binary yield locked.
var realtimeLoops atomic.Int32

// goyield is the runtime's yield to the local run queue (runtime.goyield).
// The runtime keeps it for the packages that link to it, gVisor among
// them: "Do not remove or change the type signature" (go.dev/issue/67401).
//
//go:linkname goyield runtime.goyield
func goyield()

// moved carries SCHED_FIFO from thread l.tid to tid, the calling thread.
// Raw system calls: nothing here may allocate or wait for the scheduler.
func (l *Locked) moved(tid int) {
	l.moves.Add(1)
	promoted := schedGetAttr(0, &l.spare) == 0 && schedSetAttr(0, &l.fifo) == 0
	if l.tid != 0 {
		l.old.Size = unix.SizeofSchedAttr
		if e := schedSetAttr(l.tid, l.old); e != 0 && e != unix.ESRCH {
			// Never leave a thread that runs other goroutines at
			// SCHED_FIFO: the normal policy at nice 0 needs no privilege.
			l.moveErrors.Add(1)
			l.normal = unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}
			_ = schedSetAttr(l.tid, &l.normal)
		}
	}
	if !promoted { // cannot happen (the thread was permitted before): try again at the next yield
		l.moveErrors.Add(1)
		l.tid = 0
		return
	}
	*l.old = l.spare
	l.tid = tid
}

// Moves returns how many times YieldUnlocked found the goroutine on
// another thread and carried SCHED_FIFO to it, and how many of those
// failed in part.
func (l *Locked) Moves() (moves, failed uint64) { return l.moves.Load(), l.moveErrors.Load() }

func schedGetAttr(tid int, attr *unix.SchedAttr) unix.Errno {
	_, _, e := unix.RawSyscall6(unix.SYS_SCHED_GETATTR, uintptr(tid), uintptr(unsafe.Pointer(attr)), unix.SizeofSchedAttr, 0, 0, 0)
	return e
}

func schedSetAttr(tid int, attr *unix.SchedAttr) unix.Errno {
	_, _, e := unix.RawSyscall(unix.SYS_SCHED_SETATTR, uintptr(tid), uintptr(unsafe.Pointer(attr)), 0)
	return e
}

// RunLockedWith is RunLocked for a function that yields (Locked.YieldInPlace).
func RunLockedWith(opts ThreadOptions, fn func(*Locked)) error {
	runtime.LockOSThread()
	logf := opts.Logf
	if logf == nil {
		logf = log.Printf
	}
	l := &Locked{tid: unix.Gettid()}
	l.cur = l.tid
	var rtErr error
	if opts.Realtime {
		l.old, rtErr = setFIFO(opts.Priority)
		if rtErr != nil {
			logf("fmagent: %v; running at the normal scheduling policy (detection under load will be worse; DESIGN §8)", rtErr)
		} else {
			l.fifo = fifoAttr(opts.Priority)
			realtimeLoops.Add(1)
			defer realtimeLoops.Add(-1)
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
	attr := fifoAttr(prio)
	if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
		return nil, fmt.Errorf("SCHED_FIFO %d on thread %d: %w", prio, unix.Gettid(), err)
	}
	return old, nil
}

// fifoAttr is SCHED_FIFO at prio (0: DefaultRTPriority); RESET_ON_FORK so
// that no thread or process cloned from the thread inherits it.
func fifoAttr(prio int) unix.SchedAttr {
	if prio == 0 {
		prio = DefaultRTPriority
	}
	return unix.SchedAttr{
		Size:     unix.SizeofSchedAttr,
		Policy:   unix.SCHED_FIFO,
		Priority: uint32(prio),
		Flags:    unix.SCHED_FLAG_RESET_ON_FORK,
	}
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

// SetProcessNice gives every thread of the process the nice value nice
// (normally -20, the most favoured) at the normal policy, and returns the
// nice value the process had, which StartNormal gives to child processes.
// The threads Go creates later inherit it from the thread they are cloned
// from; KeepNice gives it to any that did not (one cloned from the
// real-time thread, whose SCHED_FLAG_RESET_ON_FORK resets it to 0).
//
// Why the rest of the process needs more than the normal share, and why
// not SCHED_FIFO. The Go runtime shares its processors (Ps) among all of
// the process's threads, and a garbage collector's stop-the-world waits for
// every P: a thread holding one that a CPU hog keeps off the CPU holds up
// the real-time loop too (the loop itself keeps its P: Waiter.HoldP). At
// nice -20 such a thread weighs 88 times a nice-0 hog, so the kernel runs
// it as soon as it is runnable. SCHED_FIFO for the whole process was tried
// and is unsafe with Go: the runtime's background work (the sweeper, the
// scheduler's spinning) loops on runtime.Gosched waiting for another
// thread of the process, which a real-time thread never lets run on its
// CPU. Measured: two agents each spinning a CPU at SCHED_FIFO for ten
// minutes, until killed, with every other thread of theirs runnable and
// starved; and, with the other threads one priority below the loop,
// stalls of every agent of 0.8 to 1.0 s (the kernel's real-time
// throttling, 950 ms a second, ended them). The normal policy shares the
// CPU among all threads, so such a wait lasts a time slice at most.
func SetProcessNice(nice int) (orig int, err error) {
	if nice < -20 || nice > 19 {
		return 0, fmt.Errorf("nice %d out of range -20..19", nice)
	}
	orig, err = CurrentNice()
	if err != nil {
		return 0, err
	}
	// A real-time policy inherited from the parent (a harness, `chrt -f
	// 99 fmagent`) goes too: the process's threads are at the normal
	// policy but for the real-time loop's, which RunLocked raises
	// afterwards.
	if _, err := renice(nice, true); err != nil {
		return 0, err
	}
	return orig, nil
}

// CurrentNice is the calling thread's nice value.
func CurrentNice() (int, error) {
	// getpriority's raw system call returns 20 - nice.
	r, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
	if err != nil {
		return 0, fmt.Errorf("getpriority: %w", err)
	}
	return 20 - r, nil
}

// forEachThread calls fn for every thread of the process once, going
// through the list again until a pass finds no new thread (threads may be
// created meanwhile). A thread that ended (ESRCH) is skipped.
func forEachThread(fn func(tid int) error) error {
	seen := make(map[int]bool)
	for pass := 0; pass < 10; pass++ {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("listing the process's threads: %w", err)
		}
		found := false
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || seen[tid] {
				continue
			}
			seen[tid], found = true, true
			if _, bg := backgroundTids.Load(tid); bg {
				continue // a Background's thread keeps its own
			}
			if err := fn(tid); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("thread %d: %w", tid, err)
			}
		}
		if !found {
			return nil
		}
	}
	return nil
}

// KeepNice gives nice to every thread of the process at the normal policy
// whose nice value differs (a thread at SCHED_FIFO keeps its policy) and
// returns how many it changed. nice is per thread on Linux (setpriority
// with a thread's ID), so it goes through /proc/self/task.
func KeepNice(nice int) (int, error) { return renice(nice, false) }

// renice puts every thread of the process at the normal policy with nice
// value nice, those at a real-time policy too when dropRealtime, and
// returns how many it changed.
func renice(nice int, dropRealtime bool) (int, error) {
	changed := 0
	err := forEachThread(func(tid int) error {
		attr, err := unix.SchedGetAttr(tid, 0)
		if err != nil || (attr.Policy == 0 && int(attr.Nice) == nice) || (attr.Policy != 0 && !dropRealtime) {
			return nil // gone, done, or real-time and kept
		}
		if err := schedSet(tid, unix.SCHED_NORMAL, nice); err != nil {
			return fmt.Errorf("normal policy, nice %d: %w", nice, err)
		}
		changed++
		return nil
	})
	return changed, err
}

// StartNormal starts cmd (exec.Cmd.Start) from a thread at the normal
// scheduling policy and nice value nice (what SetProcessNice returned), so
// that the child does not inherit what SetProcessNice or SCHED_FIFO gave
// this process's threads: a child process is cloned from the thread that
// starts it and takes that thread's policy and nice value. The thread is
// discarded afterwards (its goroutine ends locked to it).
func StartNormal(cmd *exec.Cmd, nice int) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: Go ends the thread with the goroutine.
		if err := schedSet(0, unix.SCHED_NORMAL, nice); err != nil {
			errc <- fmt.Errorf("starting %s at the normal scheduling policy: %w", cmd.Path, err)
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// Background is an OS thread of the process's own for slow work (writing
// and fsyncing files) that must not run on the goroutine that asks for it:
// a goroutine the real-time loop readied may be running on the loop's own
// thread (Locked.YieldInPlace). It runs at SCHED_BATCH (no wake-up
// preemption) and the nice value it was started with, which
// SetProcessNice and KeepNice leave alone.
//
// A nice value below the process's other threads' costs the whole
// process under CPU load: the runtime hands one of Go's Ps to the thread
// whenever its goroutine is woken for work, and the thread keeps it while
// it runs Go code between its system calls; a stop-the-world of the
// garbage collector waits until the kernel runs the thread, and the
// real-time loop stops with the world. At nice 10 under a report flood
// and two CPU burners that took up to 201 ms (at most 10 ms at nice -20),
// so the agent starts it at its other threads' nice value (DESIGN §8).
// A caller about to wait for work given to a thread below it calls Hurry
// first.
type Background struct {
	work chan func()
	tid  int
	nice int
	done chan struct{}

	mu      sync.RWMutex // Do (read) against Stop (write)
	stopped bool
}

// backgroundTids holds the thread IDs of the running Backgrounds.
var backgroundTids sync.Map // int → struct{}

// StartBackground starts a Background thread at SCHED_BATCH and nice
// value nice (raising one's nice value needs no privilege).
func StartBackground(nice int) (*Background, error) {
	if nice < -20 || nice > 19 {
		return nil, fmt.Errorf("nice %d out of range -20..19", nice)
	}
	b := &Background{work: make(chan func()), nice: nice, done: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: Go ends the thread with the goroutine, so no
		// goroutine is ever scheduled on it at this policy.
		defer close(b.done)
		b.tid = unix.Gettid()
		backgroundTids.Store(b.tid, struct{}{})
		defer backgroundTids.Delete(b.tid)
		if err := b.setAttr(unix.SCHED_BATCH, nice); err != nil {
			errc <- fmt.Errorf("background thread: SCHED_BATCH, nice %d: %w", nice, err)
			return
		}
		errc <- nil
		for fn := range b.work {
			fn()
		}
	}()
	if err := <-errc; err != nil {
		<-b.done
		return nil, err
	}
	return b, nil
}

func (b *Background) setAttr(policy uint32, nice int) error { return schedSet(b.tid, policy, nice) }

// schedSet puts thread tid (0: the calling thread) at a non-real-time
// policy (SCHED_NORMAL, SCHED_BATCH) and nice value.
func schedSet(tid int, policy uint32, nice int) error {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: policy, Nice: int32(nice)}
	if err := unix.SchedSetAttr(tid, &attr, 0); err != nil {
		return fmt.Errorf("sched_setattr: %w", err)
	}
	return nil
}

// Do runs fn on the background thread and returns when it has returned.
// Calls are run one at a time, in order. After Stop, fn runs on the
// caller's thread.
func (b *Background) Do(fn func()) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.stopped {
		fn()
		return
	}
	// Off this P first. The send below readies the thread's goroutine on
	// the caller's P, and a goroutine locked to another thread takes the P
	// there (the runtime hands the P to that thread and stops the one
	// that readied it). A caller the real-time loop readied runs at the
	// loop's yield in place, on the loop's thread and P, ahead of the
	// loop's goroutine in that P's queue: the background thread then took
	// the loop's P for its whole save (a system call after another, each
	// taking the P back on return), the loop's goroutine queued behind it
	// until another thread took it — 5–15 ms yields under a report flood,
	// seen in execution traces of late ticks (3 December 2026). Yielded,
	// the caller goes to the global queue, the loop's thread runs the
	// loop's goroutine at once, and another thread takes the caller.
	runtime.Gosched()
	ran := make(chan struct{})
	b.work <- func() {
		defer close(ran)
		fn()
	}
	<-ran
}

// Hurry puts the background thread at the normal policy and nice value
// nice until the function it returns is called: for a caller about to
// wait for something the background work holds (a lock, a file), which
// must not wait behind the work's low priority too. Raising a thread's
// priority needs CAP_SYS_NICE; without it Hurry does nothing.
//
// A thread already at nice or a more favoured nice value is left as it is
// (SCHED_BATCH only forgoes preempting the thread it wakes up beside).
func (b *Background) Hurry(nice int) (done func()) {
	if b.nice <= nice || b.setAttr(unix.SCHED_NORMAL, nice) != nil {
		return func() {}
	}
	return func() { _ = b.setAttr(unix.SCHED_BATCH, b.nice) }
}

// Tid is the thread's ID.
func (b *Background) Tid() int { return b.tid }

// Stop ends the thread once the work in progress is done (Go parks the
// process's main thread for good instead, if that is the one it got).
// Work given after it runs on the caller's thread.
func (b *Background) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	b.stopped = true
	close(b.work)
	<-b.done
}

// PinProcess runs every thread of the process on the CPUs cpus only
// (sched_setaffinity of each thread; those Go creates later inherit it
// from the thread that creates them, which is one of these). Why: on a
// virtual machine waking a thread on another, idle CPU costs an
// inter-processor interrupt and a halted vCPU's exit, tens of µs each, and
// the real-time loop's every yield to Go's scheduler handed its P to other
// threads and back (Locked.Yield, the agent's until YieldInPlace); on one
// CPU those hand-offs are local. Measured with that yield, five idle
// agents at 10 ms × 5 on two vCPUs, each pinned to one CPU or not,
// alternated: 1.40–1.88 % of a core per agent against 3.12–3.96 %, and
// down propagation p50 685–833 µs against 979–1,242 µs. But a
// SCHED_FIFO thread alone on one CPU with the rest of its process can spin
// for a second inside Go's runtime (docs/bench.md, agent's warnOneCPU), so
// the agent pins only when told. A CPU the process may not use (its
// cgroup's cpuset, taskset) is an error.
func PinProcess(cpus []int) error {
	if len(cpus) == 0 {
		return errors.New("transport: no CPU to pin to")
	}
	var allowed, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		return fmt.Errorf("sched_getaffinity: %w", err)
	}
	for _, c := range cpus {
		if c < 0 || c >= len(set)*64 || !allowed.IsSet(c) {
			return fmt.Errorf("CPU %d is not one this process may run on (allowed: %s)", c, cpuList(&allowed))
		}
		set.Set(c)
	}
	return forEachThread(func(tid int) error {
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("sched_setaffinity(thread %d): %w", tid, err)
		}
		return nil
	})
}

// ProcessCPUs is the CPUs the calling thread may run on, as a list.
func ProcessCPUs() ([]int, error) {
	var s unix.CPUSet
	if err := unix.SchedGetaffinity(0, &s); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	var out []int
	for c := 0; c < len(s)*64; c++ {
		if s.IsSet(c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// cpuList formats s as "0,2-3".
func cpuList(s *unix.CPUSet) string {
	var b strings.Builder
	for c := 0; c < len(s)*64; c++ {
		if !s.IsSet(c) || (c > 0 && s.IsSet(c-1)) {
			continue
		}
		e := c
		for e+1 < len(s)*64 && s.IsSet(e+1) {
			e++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if e == c {
			fmt.Fprintf(&b, "%d", c)
		} else {
			fmt.Fprintf(&b, "%d-%d", c, e)
		}
	}
	return b.String()
}

// Boost puts the calling goroutine's thread at SCHED_FIFO for a short
// section of work that is on the real-time path but runs on another
// goroutine than the real-time loop: the agent's API and process watcher
// send a report from their own goroutine (one wake-up of the loop less on
// the report's way), at the loop's priority, so that the real-time loops
// its first packet wakes (the master's, on one host every node's) do not
// preempt it while it holds the agent's lock (agent.submitOffLoop). The
// zero value is ready; Enter and Exit are called in pairs, on one
// goroutine, and allocate nothing.
type Boost struct {
	old unix.SchedAttr
	on  bool
}

// Enter wires the goroutine to its thread and, when prio > 0, puts the
// thread at SCHED_FIFO prio, keeping its attributes for Exit. It reports
// whether the thread is now at SCHED_FIFO: false when prio is 0, when the
// thread already has a real-time policy (left as it is), or when the
// process may not (nothing changed but the wiring).
func (b *Boost) Enter(prio int) bool {
	runtime.LockOSThread()
	b.on = false
	if prio <= 0 || schedGetAttr(0, &b.old) != 0 {
		return false
	}
	if b.old.Policy == unix.SCHED_FIFO || b.old.Policy == unix.SCHED_RR {
		return false
	}
	attr := fifoAttr(prio)
	if schedSetAttr(0, &attr) != 0 {
		return false
	}
	b.on = true
	return true
}

// Exit restores what Enter changed and unwires the goroutine. A thread
// whose attributes cannot be restored is put at the normal policy (which
// needs no privilege); failing that too, the goroutine stays wired to it,
// so that the runtime ends the thread with the goroutine rather than
// reuse it at SCHED_FIFO for other goroutines.
func (b *Boost) Exit() {
	if b.on {
		b.on = false
		b.old.Size = unix.SizeofSchedAttr
		if schedSetAttr(0, &b.old) != 0 {
			normal := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}
			if schedSetAttr(0, &normal) != 0 {
				return
			}
		}
	}
	runtime.UnlockOSThread()
}

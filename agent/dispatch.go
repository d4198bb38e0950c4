package agent

import (
	"encoding/binary"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/internal/pimutex"
)

// The dispatcher: who wakes the goroutines the real-time loop answers.
//
// A channel send readies its receiver on the sender's P, and Go runs a
// P's ready goroutines before the one that yielded. The loop's P is the
// loop's own (it keeps it while it waits, transport.Waiter.HoldP), and its
// yield (transport.Locked.YieldInPlace, every 5 ms) ran everything the
// loop had readied since the last one on the loop's thread, at
// SCHED_FIFO, until each blocked: the API handler whose write the loop
// answered (its reply's encoding, its lock waits, the owned file's
// hand-off), the table saver the loop kicked (its copy of the changed
// rows). In a registration storm those yields held the loop 13–74 ms
// (docs/bench.md, 2 December 2026). So the loop readies nobody: what it
// would send or close it queues under a.mu (wakeBatch), and a goroutine on
// a thread of its own, woken through an eventfd (a write to it readies
// nothing in Go's scheduler), sends and closes it. Those it readies land
// on the dispatcher's P.
//
// Left on the loop: the watchers' events (a non-blocking send that drops
// a watcher that fell behind, a.watchers under a.mu), the bulk sender's
// jobs (a snapshot for a joining node) and a new membership state for its
// saver (an election). Each is readied on the loop's P as before.

// wakeBatch is what the loop would have readied: answers for writers and
// channels to close (seq waiters, masterCh), and whether the table saver
// is to be kicked.
type wakeBatch struct {
	results   []pendingResult
	closes    []chan struct{}
	kickSaver bool
}

type pendingResult struct {
	ch chan core.Result // buffered (agent.write): the send never blocks
	r  core.Result
}

func (b *wakeBatch) empty() bool {
	return len(b.results) == 0 && len(b.closes) == 0 && !b.kickSaver
}

// deliver sends and closes what b holds, and empties it (keeping its
// arrays, their channels cleared for the garbage collector).
func (b *wakeBatch) deliver(a *agent) {
	for _, p := range b.results {
		p.ch <- p.r
	}
	for _, ch := range b.closes {
		close(ch)
	}
	if b.kickSaver {
		a.kickSaver()
	}
	clear(b.results)
	clear(b.closes)
	b.results, b.closes, b.kickSaver = b.results[:0], b.closes[:0], false
}

// append moves what from holds to b, and empties from.
func (b *wakeBatch) take(from *wakeBatch) {
	b.results = append(b.results, from.results...)
	b.closes = append(b.closes, from.closes...)
	b.kickSaver = b.kickSaver || from.kickSaver
	clear(from.results)
	clear(from.closes)
	from.results, from.closes, from.kickSaver = from.results[:0], from.closes[:0], false
}

// dispatcher delivers the loop's wakeBatches on a thread of its own.
type dispatcher struct {
	// mu guards out, stopped and efd. A priority-inheriting lock: the
	// loop (SCHED_FIFO) takes it to hand a batch over, and the
	// dispatcher's thread (the normal policy) must not keep it waiting
	// behind a CPU hog for the moment it holds it.
	mu      pimutex.Mutex
	out     wakeBatch
	stopped bool
	// efd wakes the dispatcher when a hand-over finds out empty: a write
	// to it (a raw system call that never blocks) readies nothing on the
	// loop's P. Written and closed under mu.
	efd int
	one [8]byte

	done chan struct{}
	// wakes counts the dispatcher's wake-ups (tests).
	wakes atomic.Uint64
}

// startDispatcher starts the dispatcher; without an eventfd (never on
// Linux since 2.6.22) the loop readies its waiters itself, as it did.
func (a *agent) startDispatcher() {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		a.log.Warn("the real-time loop wakes the API's goroutines itself (no eventfd): they may run on its thread at its yields", "err", err)
		return
	}
	d := &dispatcher{efd: efd, done: make(chan struct{})}
	binary.NativeEndian.PutUint64(d.one[:], 1)
	a.disp = d
	go d.run(a)
}

// run delivers what is handed over until stop.
func (d *dispatcher) run(a *agent) {
	// Never unlocked: Go ends the thread with the goroutine. Unlocked, it
	// could be run by any thread, the loop's at its yield among them
	// (logq's writer has the same rule).
	runtime.LockOSThread()
	defer close(d.done)
	var work wakeBatch
	var buf [8]byte
	for {
		// A blocking read Go's scheduler is told of: the thread sleeps in
		// the kernel, its P free for others.
		for {
			if _, err := unix.Read(d.efd, buf[:]); err != unix.EINTR {
				break
			}
		}
		d.wakes.Add(1)
		d.mu.Lock()
		work.take(&d.out)
		stopped := d.stopped
		if stopped {
			unix.Close(d.efd)
			d.efd = -1
		}
		d.mu.Unlock()
		work.deliver(a)
		if stopped {
			return
		}
	}
}

// hand gives b to the dispatcher and empties it; after stop (or without
// a dispatcher) it delivers b on the caller. a.mu held (b is the loop's).
func (a *agent) handWakes(b *wakeBatch) {
	if b.empty() {
		return
	}
	d := a.disp
	if d == nil {
		b.deliver(a)
		return
	}
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		b.deliver(a)
		return
	}
	first := d.out.empty()
	d.out.take(b)
	if first {
		_, _, _ = unix.RawSyscall(unix.SYS_WRITE, uintptr(d.efd), uintptr(unsafe.Pointer(&d.one[0])), 8)
	}
	d.mu.Unlock()
}

// stopDispatcher delivers what is still handed over and ends the
// dispatcher; what is handed over afterwards is delivered by the caller.
func (a *agent) stopDispatcher() {
	d := a.disp
	if d == nil {
		return
	}
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return
	}
	d.stopped = true
	_, _, _ = unix.RawSyscall(unix.SYS_WRITE, uintptr(d.efd), uintptr(unsafe.Pointer(&d.one[0])), 8)
	d.mu.Unlock()
	<-d.done
}

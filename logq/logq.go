// Package logq is an io.Writer for a daemon's log that never blocks the
// goroutine that logs: what is written is queued, and a goroutine locked to
// a thread of its own writes it out a period after the first line queued.
//
// Why: fmagent's real-time loop logs what it decides (a peer down, a master
// elected) on its own thread, at SCHED_FIFO. Written straight to stderr —
// under systemd, a stream socket to journald — a line costs a system call
// on the path of a down (three lines after a node's death took 90 µs of the
// master's loop, traced), and when the journal does not keep up the write
// blocks, and the loop with it: no heartbeat goes out, and the peers judge
// this node down. corosync's logsys queues its log for a thread of its own
// for the same reason. A line waits at most a period here; what does not fit
// in the queue is dropped, and counted, and said (OnDrop) once the output
// takes lines again.
package logq

import (
	"encoding/binary"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Writer queues writes for out. Its zero value is not usable: see New.
type Writer struct {
	out   io.Writer
	limit int

	mu      sync.Mutex
	pending []byte
	dropped uint64 // writes dropped since the last OnDrop
	closed  bool
	onDrop  func(n uint64)

	// efd (an eventfd) wakes the writing goroutine when a write finds
	// the queue empty: it then waits a period (the lines that follow join
	// the same write) and writes the queue out. An idle daemon's writer
	// so never wakes: a ticker woke it, and with it a thread of the
	// process, twenty times a second for nothing (handing a locked
	// goroutine's P to its thread and back is several thread switches,
	// a noticeable part of an idle agent's CPU on a VM).
	//
	// An eventfd and not a channel: a channel send readies the receiver
	// on the sender's P, and the sender is often fmagent's real-time loop
	// (it logs what it decides), whose yield to Go's scheduler would then
	// find a goroutine locked to another thread first in its queue and
	// hand its P over to that thread (the loop's goroutine moving to a
	// thread at the normal policy). A write to the eventfd wakes the
	// writer's thread through the kernel, blocked in its read. Kicked
	// under mu (Close sets closed under it, so no write comes after the
	// writer closed it); one is the counter's increment.
	efd int
	one [8]byte
	// wakes counts the writing goroutine's wake-ups (tests).
	wakes atomic.Uint64

	stop chan struct{}
	done chan struct{}
}

// New starts a Writer that writes what is queued to out a period after the
// first line queued (so at most once a period), in the order it was
// written, and queues at most limit bytes: a write that does not fit is
// dropped whole.
func New(out io.Writer, limit int, period time.Duration) *Writer {
	w := &Writer{out: out, limit: limit, stop: make(chan struct{}), done: make(chan struct{})}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		// No eventfd (never on Linux since 2.6.22): the writer writes
		// every period, as it did.
		efd = -1
	}
	w.efd = efd
	binary.NativeEndian.PutUint64(w.one[:], 1)
	go w.run(period)
	return w
}

// OnDrop sets f, which the writing goroutine calls with how many writes
// were dropped after it has written out what was queued before them. f may
// log through the Writer: its line is written at the next period.
func (w *Writer) OnDrop(f func(n uint64)) {
	w.mu.Lock()
	w.onDrop = f
	w.mu.Unlock()
}

// Write queues p and returns at once: len(p), nil, queued or dropped (a log
// handler has nothing better to do with an error). After Close it writes
// p to out itself.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return w.out.Write(p)
	}
	first := len(w.pending) == 0 && w.dropped == 0
	if len(w.pending)+len(p) > w.limit {
		w.dropped++
	} else {
		w.pending = append(w.pending, p...)
	}
	if first && w.efd >= 0 {
		// Never blocks (the counter cannot overflow): a raw system call.
		_, _, _ = unix.RawSyscall(unix.SYS_WRITE, uintptr(w.efd), uintptr(unsafe.Pointer(&w.one[0])), 8)
	}
	w.mu.Unlock()
	return len(p), nil
}

// run writes the queue out a period after each first line, until Close.
func (w *Writer) run(period time.Duration) {
	// Never unlocked: Go ends the thread with the goroutine. A goroutine
	// that is not locked can be run by any thread, the real-time loop's
	// among them (it runs what it readied when it yields), and a write
	// that blocks there would block that thread.
	runtime.LockOSThread()
	defer close(w.done)
	t := time.NewTimer(period)
	t.Stop()
	defer t.Stop()
	var spare []byte
	var buf [8]byte
	for {
		if w.efd >= 0 {
			// A blocking read Go's scheduler is told of: the thread
			// sleeps in the kernel, its P handed to others.
			for {
				if _, err := unix.Read(w.efd, buf[:]); err != unix.EINTR {
					break
				}
			}
			select {
			case <-w.stop:
				w.exit(&spare)
				return
			default:
			}
		}
		w.wakes.Add(1)
		t.Reset(period)
		select {
		case <-w.stop:
			w.exit(&spare)
			return
		case <-t.C:
		}
		w.flush(&spare)
	}
}

// exit writes out what is queued and closes the eventfd, under mu: Close
// writes to it under mu, and no write does once closed is set.
func (w *Writer) exit(spare *[]byte) {
	w.flush(spare)
	w.mu.Lock()
	if w.efd >= 0 {
		unix.Close(w.efd)
		w.efd = -1
	}
	w.mu.Unlock()
}

// flush writes out what is queued, then reports what was dropped.
func (w *Writer) flush(spare *[]byte) {
	w.mu.Lock()
	b := w.pending
	w.pending = (*spare)[:0]
	dropped, onDrop := w.dropped, w.onDrop
	w.dropped = 0
	w.mu.Unlock()
	if len(b) > 0 {
		_, _ = w.out.Write(b)
	}
	*spare = b
	if dropped > 0 && onDrop != nil {
		onDrop(dropped)
	}
}

// Close writes out what is queued, waiting at most wait for the output,
// and from then on writes straight to out. It returns false if the output
// did not take the queue in time (its writer goes on trying).
func (w *Writer) Close(wait time.Duration) bool {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return true
	}
	w.closed = true
	close(w.stop)
	if w.efd >= 0 {
		_, _, _ = unix.RawSyscall(unix.SYS_WRITE, uintptr(w.efd), uintptr(unsafe.Pointer(&w.one[0])), 8)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
		return true
	case <-time.After(wait):
		return false
	}
}

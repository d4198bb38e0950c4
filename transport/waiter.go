package transport

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/wire"
)

// Events is what Waiter.Wait found ready: one bit per socket (Readable),
// EvTimer when the deadline passed, EvWoken after Wake, EvStopped after Stop,
// EvExtra when the descriptor given to SetExtra is readable.
type Events uint32

const (
	EvTimer Events = 1 << (2*wire.NumNets + iota)
	EvWoken
	EvStopped
	EvExtra
)

// Readable is the bit of network n's group socket (unicast false) or
// unicast socket (unicast true).
func Readable(n wire.Net, unicast bool) Events {
	b := 2 * uint(n)
	if unicast {
		b++
	}
	return 1 << b
}

// ErrStopped is returned by Waiter.Wait once Stop was called.
var ErrStopped = errors.New("transport: waiter stopped")

// Waiter is the real-time loop's one blocking point (DESIGN §8): a single
// ppoll on the four sockets, a timerfd armed at an absolute CLOCK_MONOTONIC
// deadline and an eventfd that other goroutines write to wake the loop. It
// is meant to run on a thread locked with RunLocked at SCHED_FIFO: the
// kernel wakes that thread itself when a datagram arrives or the deadline
// passes, with no hop through Go's netpoller (whose waiter is a normal
// thread a CPU hog delays by milliseconds) and no Go timer (about 1 ms
// granular, and run by the same normal threads). Sockets are then read with
// TryReadBatch.
//
// Wait is called by one goroutine at a time; Wake and Stop from any. Wait
// allocates nothing.
type Waiter struct {
	tfd, efd int
	fds      [2*wire.NumNets + 3]unix.PollFd
	its      unix.ItimerSpec
	buf      [8]byte
	stopped  atomic.Bool
	mu       sync.RWMutex // Wake (read) against Close (write): no write to a reused fd
	closed   bool

	// base and baseNs are one instant on Go's monotonic clock and as
	// CLOCK_MONOTONIC (the same clock): a deadline is then converted with
	// no clock read (Wait would otherwise make a clock_gettime system
	// call every time: x/sys/unix's is not the vDSO's).
	base   time.Time
	baseNs int64
	// armed is the absolute CLOCK_MONOTONIC time the timer is armed at
	// and has not yet been seen to fire (0: not armed). Wait re-arms it
	// only for another time: most wake-ups (a datagram, a Wake) leave
	// the next deadline where it was.
	armed int64

	// HoldP makes Wait block in a raw ppoll that keeps the calling
	// goroutine's P (Go's scheduler is not told of the system call), so
	// the thread wakes straight into Go code: it never waits for a P that
	// other goroutines took meanwhile (a loop thread at SCHED_FIFO waiting
	// for a P held by a normal thread a CPU hog preempts waits behind the
	// hog), and no thread is woken to take the P over. The rest of the
	// process then has one P less (the agent raises GOMAXPROCS by one). A
	// signal (Go's preemption, a stop-the-world) interrupts the wait: Wait
	// returns with no event so the goroutine reaches a safe point. Only
	// for a goroutine locked to its thread, with GOMAXPROCS of 2 or more:
	// with one P, nothing else would run until the wait ends.
	HoldP bool
}

// NewWaiter opens the timerfd and the eventfd for t's sockets. Close it
// before closing t.
func (t *Transport) NewWaiter() (*Waiter, error) {
	w := &Waiter{tfd: -1, efd: -1}
	var err error
	if w.tfd, err = unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC|unix.TFD_NONBLOCK); err != nil {
		return nil, os.NewSyscallError("timerfd_create", err)
	}
	if w.efd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		unix.Close(w.tfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	for n := range t.nets {
		ns := &t.nets[n]
		for u, s := range []*sock{ns.grp, ns.uni} {
			if s == nil {
				w.Close()
				return nil, fmt.Errorf("transport: network %s: %w", netName(ns.net), errors.ErrUnsupported)
			}
			w.fds[2*n+u] = unix.PollFd{Fd: int32(s.fd), Events: unix.POLLIN}
		}
	}
	w.fds[2*wire.NumNets] = unix.PollFd{Fd: int32(w.tfd), Events: unix.POLLIN}
	w.fds[2*wire.NumNets+1] = unix.PollFd{Fd: int32(w.efd), Events: unix.POLLIN}
	w.fds[2*wire.NumNets+2] = unix.PollFd{Fd: -1} // SetExtra's; ppoll skips a negative fd
	var now unix.Timespec
	w.base = time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
		w.Close()
		return nil, os.NewSyscallError("clock_gettime", err)
	}
	// Read after base: a deadline fires at most the time between the two
	// reads (well under a microsecond) late, never early.
	w.baseNs = now.Nano()
	return w, nil
}

// Wait arms the timer at deadline (absolute: a deadline already past fires
// at once) and blocks until a socket is readable, the deadline passes, Wake
// or Stop is called. It returns what is ready, the eventfd consumed (the
// timer's expiry is cleared by the next Wait's arming).
func (w *Waiter) Wait(deadline time.Time) (Events, error) {
	if w.stopped.Load() {
		return EvStopped, ErrStopped
	}
	// The core's deadlines are time.Time (Go's monotonic clock is
	// CLOCK_MONOTONIC); the timerfd wants an absolute CLOCK_MONOTONIC time
	// (a time already past fires at once; 0 would disarm it).
	d := deadline.Sub(w.base) // saturates: a zero deadline is long past
	var at int64
	if d > 0 && int64(d) > math.MaxInt64-w.baseNs {
		at = math.MaxInt64 // never, in practice
	} else {
		at = max(w.baseNs+int64(d), 1)
	}
	if at != w.armed {
		w.its.Value = unix.NsecToTimespec(at)
		// Never blocks: a raw system call (reader.recv says why).
		if _, _, e := unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, uintptr(w.tfd), unix.TFD_TIMER_ABSTIME,
			uintptr(unsafe.Pointer(&w.its)), 0, 0, 0); e != 0 {
			w.armed = 0
			return 0, os.NewSyscallError("timerfd_settime", e)
		}
		w.armed = at
	}
	for i := range w.fds {
		w.fds[i].Revents = 0
	}
	if w.HoldP {
		_, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&w.fds[0])), uintptr(len(w.fds)), 0, 0, 0, 0)
		if e == unix.EINTR {
			return 0, nil // a signal: let the caller reach a safe point
		}
		if e != 0 {
			return 0, os.NewSyscallError("ppoll", e)
		}
	} else {
		for {
			_, err := unix.Ppoll(w.fds[:], nil, nil)
			if err == nil {
				break
			}
			if err != unix.EINTR {
				return 0, os.NewSyscallError("ppoll", err)
			}
		}
	}
	var ev Events
	for i := 0; i < 2*wire.NumNets; i++ {
		if w.fds[i].Revents != 0 {
			ev |= 1 << i
		}
	}
	if w.fds[2*wire.NumNets].Revents != 0 {
		// Not read: the next Wait arms the timer again (armed is 0, so
		// even at the same time), and timerfd_settime clears the count of
		// expirations, which is what made it readable. One system call
		// less at every tick (TestWaiter).
		w.armed = 0 // fired: a one-shot timer is disarmed
		ev |= EvTimer
	}
	if w.fds[2*wire.NumNets+1].Revents != 0 {
		w.drain(w.efd)
		ev |= EvWoken
	}
	if w.fds[2*wire.NumNets+2].Revents != 0 {
		ev |= EvExtra
	}
	if w.stopped.Load() {
		return ev | EvStopped, ErrStopped
	}
	return ev, nil
}

// SetExtra makes Wait poll fd too (readable: EvExtra); -1 stops it. Only
// between two Waits, by Wait's caller, or before the first: the agent's
// datagram API socket, which its real-time loop reads itself. The caller
// keeps fd open while Wait may poll it.
func (w *Waiter) SetExtra(fd int) {
	w.fds[2*wire.NumNets+2] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
}

func (w *Waiter) drain(fd int) {
	// Non-blocking (EAGAIN when another reader, none, or a reset got it):
	// a raw system call, as reader.recv's.
	_, _, _ = unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&w.buf[0])), 8)
}

// Wake makes the current or next Wait return EvWoken (a request was
// submitted that may need a tick sooner than the one planned). It allocates
// nothing and never blocks.
func (w *Waiter) Wake() {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return
	}
	one := [8]byte{1}
	// Non-blocking (EFD_NONBLOCK): a raw system call, as reader.recv's.
	_, _, _ = unix.RawSyscall(unix.SYS_WRITE, uintptr(w.efd), uintptr(unsafe.Pointer(&one[0])), 8)
}

// Stop makes the current and every later Wait return ErrStopped.
func (w *Waiter) Stop() {
	w.stopped.Store(true)
	w.Wake()
}

// Close releases the timerfd and the eventfd. Call it after the loop that
// Waits has returned.
func (w *Waiter) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	if w.tfd >= 0 {
		unix.Close(w.tfd)
	}
	if w.efd >= 0 {
		unix.Close(w.efd)
	}
}

// Package pimutex is a mutual-exclusion lock with priority inheritance: a
// Linux PI futex (FUTEX_LOCK_PI). While a thread of a higher priority waits
// for it, the kernel runs the thread that holds it at the waiter's priority.
//
// Why the agent needs it: its real-time loop (SCHED_FIFO) takes the agent's
// lock at every wake-up, and the API, the savers and the metrics take it
// too, on threads at the normal policy. With sync.Mutex, a normal thread
// preempted while it held the lock (by a CPU hog, or by another process's
// real-time threads) kept the loop waiting for as long as it stayed off the
// CPU: 2–13 ms waits were traced on the loop (docs/bench.md, registration
// storm), beyond a 10 ms profile's interval. With priority inheritance the
// holder runs at the loop's priority until it unlocks, and the kernel then
// hands the lock straight to the highest-priority waiter.
//
// The cost: a futex PI lock belongs to a thread, not a goroutine, so Lock
// wires the calling goroutine to its thread (runtime.LockOSThread) until
// Unlock, and Unlock must be called by the goroutine that locked (sync.Mutex
// allows another). Uncontended, Lock is a gettid system call and a
// compare-and-swap (LockOnThread, for a goroutine that knows its thread, only
// the compare-and-swap), Unlock a compare-and-swap; contended, a waiter
// sleeps in the kernel (its thread, not only its goroutine, waits) and the
// holder's Unlock is a system call.
package pimutex

import (
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Mutex is a priority-inheriting lock. The zero value is unlocked. It must
// not be copied after first use.
type Mutex struct {
	// state is the futex word: 0 when unlocked, else the owner's thread ID,
	// with FUTEX_WAITERS set by the kernel while others wait.
	state atomic.Uint32
	// owner is the holder's thread ID, read back by Unlock (written only by
	// the holder).
	owner uint32
	// hb carries the happens-before edge from an Unlock to the next Lock
	// for the race detector, which does not see the hand-over the kernel
	// makes inside FUTEX_UNLOCK_PI / FUTEX_LOCK_PI: an atomic add before
	// every release and an atomic load after every acquisition.
	hb atomic.Uint32
}

// The futex operations (linux/futex.h; golang.org/x/sys/unix does not name
// them), private to this process (no shared mapping).
const (
	futexLockPI      = 6
	futexUnlockPI    = 7
	futexPrivateFlag = 128
	// futexWaiters is the bit the kernel sets in the word while threads
	// wait for it (FUTEX_WAITERS).
	futexWaiters = 0x80000000

	lockPI   = futexLockPI | futexPrivateFlag
	unlockPI = futexUnlockPI | futexPrivateFlag
)

// Lock takes m, waiting in the kernel (at the caller's priority, lent to the
// holder) if another thread holds it. The calling goroutine stays on its
// thread until Unlock.
func (m *Mutex) Lock() {
	runtime.LockOSThread()
	m.lock(uint32(unix.Gettid()))
}

// LockOnThread is Lock for a goroutine already wired to its thread
// (runtime.LockOSThread) whose thread ID it knows: it saves Lock's gettid,
// a system call (about 1 µs on a VM), which the real-time loop would pay
// at every wake-up. tid must be the calling thread's.
func (m *Mutex) LockOnThread(tid int) {
	checkTid(tid) // the caller is wired to its thread already
	runtime.LockOSThread()
	m.lock(uint32(tid))
}

// checkTid panics, under the race detector, if tid is not the calling
// thread's: a stale thread ID in the futex word would lend priority to
// another thread, or make every waiter's FUTEX_LOCK_PI fail.
func checkTid(tid int) {
	if raceEnabled && tid != unix.Gettid() {
		panic("pimutex: LockOnThread with another thread's ID")
	}
}

func (m *Mutex) lock(tid uint32) {
	if !m.state.CompareAndSwap(0, tid) {
		m.lockSlow(tid)
	}
	m.hb.Load() // before anything the holder touches
	m.owner = tid
}

func (m *Mutex) lockSlow(tid uint32) {
	for {
		// The kernel sets FUTEX_WAITERS, boosts the owner and, when the
		// owner unlocks, writes our tid into the word for us.
		_, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(&m.state)), lockPI, 0, 0, 0, 0)
		switch e {
		case 0:
			return
		case unix.EINTR, unix.EAGAIN:
			// EAGAIN: the owner is exiting; try again.
			continue
		case unix.EDEADLK:
			panic("pimutex: Lock of a Mutex this thread already holds")
		default:
			panic("pimutex: FUTEX_LOCK_PI: " + e.Error())
		}
	}
}

// TryLock takes m if no one holds it and reports whether it did.
func (m *Mutex) TryLock() bool {
	runtime.LockOSThread()
	return m.tryLock(uint32(unix.Gettid()))
}

// TryLockOnThread is TryLock for a goroutine already wired to thread tid
// (see LockOnThread).
func (m *Mutex) TryLockOnThread(tid int) bool {
	checkTid(tid)
	runtime.LockOSThread()
	return m.tryLock(uint32(tid))
}

func (m *Mutex) tryLock(tid uint32) bool {
	if !m.state.CompareAndSwap(0, tid) {
		runtime.UnlockOSThread()
		return false
	}
	m.hb.Load()
	m.owner = tid
	return true
}

// Contended reports whether the kernel has marked m as waited for
// (FUTEX_WAITERS in its word): set as soon as a thread waits for it, and
// kept, when the kernel hands m to a waiter, until that holder unlocks it.
// For a test that must release m only once another thread is known to
// wait for it.
func (m *Mutex) Contended() bool { return m.state.Load()&futexWaiters != 0 }

// Unlock releases m. It must be called by the goroutine that locked m:
// under the race detector an unlock from another thread panics; otherwise
// it is not checked (that would cost a gettid at every unlock).
func (m *Mutex) Unlock() {
	tid := m.owner
	if tid == 0 || raceEnabled && tid != uint32(unix.Gettid()) {
		// As sync.Mutex, an unlock of an unlocked lock is fatal; unlike
		// it, so is an unlock by another thread than the holder.
		panic("pimutex: Unlock of a Mutex not held by this thread")
	}
	m.owner = 0
	m.hb.Add(1)
	if !m.state.CompareAndSwap(tid, 0) {
		// Waiters: the kernel hands the lock to the highest-priority one
		// and ends our boost.
		_, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(&m.state)), unlockPI, 0, 0, 0, 0)
		if e != 0 {
			panic("pimutex: FUTEX_UNLOCK_PI: " + e.Error())
		}
	}
	runtime.UnlockOSThread()
}

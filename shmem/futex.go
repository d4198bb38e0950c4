// Futex wait and wake on the table seq word: how readers sleep until the
// writer commits, across processes.

package shmem

import (
	"context"
	"math"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	L "github.com/fmagent/fmagent/shmem/internal/layout"
)

// Futex operations (linux/futex.h). The segment is shared between processes,
// so the non-private variants are used.
const (
	futexWait = 0
	futexWake = 1
)

// wake wakes every process waiting on the futex word at addr. FUTEX_WAKE
// never blocks, so it is a raw system call: Syscall6's entersyscall and
// exitsyscall would let Go's scheduler retake the writer's P meanwhile, and
// a writer on a real-time thread then spins in exitsyscall for the thread
// retaking it (agent: the one-CPU warning).
func wake(addr unsafe.Pointer) {
	unix.RawSyscall6(unix.SYS_FUTEX, uintptr(addr), futexWake, math.MaxInt32, 0, 0, 0)
}

// waitOn sleeps while the 32-bit word at addr equals val, at most d.
func waitOn(addr unsafe.Pointer, val uint32, d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	unix.Syscall6(unix.SYS_FUTEX, uintptr(addr), futexWait, uintptr(val), uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// waitSlice bounds one futex wait, so that cancellation and a dead writer
// are noticed within it.
const waitSlice = 100 * time.Millisecond

// Wait blocks until the table seq differs from last and is even (a commit
// was published), and returns it. It sleeps on a futex the writer wakes
// after every commit. It returns ctx's error when ctx is done (noticed
// within 100 ms), ErrClosed or ErrRecreated when the segment is closed or
// replaced, ErrWriterDead when the writer dies.
func (r *Reader) Wait(ctx context.Context, last uint64) (uint64, error) {
	deadline, _ := ctx.Deadline()
	return r.wait(ctx.Done(), ctx.Err, deadline, last)
}

// WaitTimeout is Wait with a timeout instead of a context; it fails with
// ErrTimeout.
func (r *Reader) WaitTimeout(last uint64, d time.Duration) (uint64, error) {
	return r.wait(nil, nil, time.Now().Add(d), last)
}

func (r *Reader) wait(done <-chan struct{}, ctxErr func() error, deadline time.Time, last uint64) (uint64, error) {
	addr := unsafe.Add(r.base, L.HdrTableSeq)
	for {
		if st := r.status(); st != L.StatusReady {
			return 0, r.statusErr("wait", 0, st)
		}
		s := ld64(r.base, L.HdrTableSeq)
		if s != last && s&1 == 0 {
			return s, nil
		}
		select {
		case <-done:
			return s, ctxErr()
		default:
		}
		d := waitSlice
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				if ctxErr != nil {
					return s, context.DeadlineExceeded
				}
				return s, &Error{Op: "wait", Path: r.path, Err: ErrTimeout}
			}
			d = min(d, left)
		}
		waitOn(addr, uint32(s), d)
		if r.status() == L.StatusReady && ld64(r.base, L.HdrTableSeq) == s {
			if ok, why := r.writerAlive(); !ok {
				return s, &Error{Op: "wait", Path: r.path, Err: ErrWriterDead, Detail: why}
			}
		}
	}
}

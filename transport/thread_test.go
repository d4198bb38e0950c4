package transport

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The function runs on one OS thread throughout, even across reschedules.
func TestRunLockedStaysOnOneThread(t *testing.T) {
	var tids []int
	err := RunLocked(ThreadOptions{}, func() {
		for range 20 {
			tids = append(tids, unix.Gettid())
			runtime.Gosched()
		}
	})
	require.NoError(t, err)
	for _, tid := range tids {
		assert.Equal(t, tids[0], tid, "the goroutine moved to another thread")
	}
}

// With Realtime the locked thread runs SCHED_FIFO; or, where that is not
// permitted, RunLocked logs why, runs fn anyway and returns the error.
func TestRunLockedRealtime(t *testing.T) {
	before, err := unix.SchedGetAttr(0, 0)
	require.NoError(t, err)
	var logs []string
	var inside *unix.SchedAttr
	var insideErr error
	ran := false
	rtErr := RunLocked(ThreadOptions{Realtime: true, Priority: 5, Logf: func(f string, a ...any) {
		logs = append(logs, fmt.Sprintf(f, a...))
	}}, func() {
		ran = true
		inside, insideErr = unix.SchedGetAttr(0, 0)
	})
	require.True(t, ran, "fn must run even without SCHED_FIFO")
	require.NoError(t, insideErr)
	if rtErr != nil {
		t.Logf("SCHED_FIFO not permitted here: %v", rtErr)
		require.Len(t, logs, 1, "a refusal is logged")
		assert.Contains(t, logs[0], "SCHED_FIFO")
		assert.Equal(t, before.Policy, inside.Policy, "fn runs at the normal policy")
		return
	}
	assert.Empty(t, logs)
	assert.Equal(t, uint32(unix.SCHED_FIFO), inside.Policy)
	assert.Equal(t, uint32(5), inside.Priority)
	assert.Equal(t, uint64(unix.SCHED_FLAG_RESET_ON_FORK), inside.Flags&unix.SCHED_FLAG_RESET_ON_FORK)
	// This goroutine is not locked, but the restored thread must not be
	// FIFO: check every thread of the process instead.
	assertNoFIFOThreads(t)
}

func TestRunLockedBadPriority(t *testing.T) {
	var logs []string
	ran := false
	err := RunLocked(ThreadOptions{Realtime: true, Priority: 100, Logf: func(f string, a ...any) {
		logs = append(logs, fmt.Sprintf(f, a...))
	}}, func() { ran = true })
	assert.True(t, ran)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "out of range")
	assert.Len(t, logs, 1)
}

// assertNoFIFOThreads checks that no thread of the process is left at
// SCHED_FIFO.
func assertNoFIFOThreads(t *testing.T) {
	t.Helper()
	assert.Empty(t, fifoThreads(t), "threads left at SCHED_FIFO")
}

// fifoThreads lists the threads of the process at SCHED_FIFO.
func fifoThreads(t *testing.T) []int {
	t.Helper()
	d, err := unix.Open("/proc/self/task", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	require.NoError(t, err)
	defer unix.Close(d)
	buf := make([]byte, 8192)
	n, err := unix.ReadDirent(d, buf)
	require.NoError(t, err)
	var names []string
	_, _, names = unix.ParseDirent(buf[:n], -1, names)
	checked := 0
	var fifo []int
	for _, name := range names {
		var tid int
		if _, err := fmt.Sscan(name, &tid); err != nil {
			continue
		}
		attr, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			continue // the thread exited
		}
		checked++
		if attr.Policy == unix.SCHED_FIFO {
			fifo = append(fifo, tid)
		}
	}
	require.Positive(t, checked)
	return fifo
}

// needFIFO fails the test unless this process may use SCHED_FIFO (CI runs
// as root), and skips it when not root, where that is expected.
func needFIFO(t *testing.T) {
	t.Helper()
	if err := ProbeRealtime(5); err != nil {
		if os.Geteuid() != 0 {
			t.Skipf("needs CAP_SYS_NICE for SCHED_FIFO (CI runs as root): %v", err)
		}
		t.Fatalf("SCHED_FIFO refused to root: %v", err)
	}
}

// YieldUnlocked unlocks the goroutine for the moment of its Gosched, so it may come
// back on another thread: wherever it does, it runs at SCHED_FIFO, and no
// other thread of the process is left at it. Goroutines ping-ponging on
// channels keep threads waking to look for work (as the agent's other
// goroutines do), which is what takes the goroutine to another thread.
func TestLockedYieldUnlockedCarriesFIFO(t *testing.T) {
	moves := yieldKeepsFIFO(t, (*Locked).YieldUnlocked, 30)
	require.Positive(t, moves, "the goroutine never came back on another thread: nothing was tested")
}

// YieldInPlace leaves its thread only when a thread looking for work takes
// the goroutine off the local queue first (rarely: no thread is woken for
// it); whatever happens, the loop is at SCHED_FIFO after every yield and
// no other thread of the process is.
func TestLockedYieldInPlaceKeepsFIFO(t *testing.T) {
	yieldKeepsFIFO(t, (*Locked).YieldInPlace, 30)
}

// yieldKeepsFIFO yields with yield, beside goroutines ping-ponging on
// channels, up to 200,000 times or until wantMoves moves, checking after
// each that the calling thread is at SCHED_FIFO 5 and, after a move, that
// it is the process's only such thread. It returns the moves.
func yieldKeepsFIFO(t *testing.T, yield func(*Locked), wantMoves uint64) uint64 {
	needFIFO(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(max(4, runtime.GOMAXPROCS(0))))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		ping, pong := make(chan int), make(chan int)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for {
				select {
				case ping <- 1:
				case <-stop:
					return
				}
				<-pong
			}
		}()
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ping:
				case <-stop:
					return
				}
				pong <- 1
			}
		}()
	}
	var (
		moves, failed uint64
		wrong         []string
		nWrong        int
	)
	note := func(f string, a ...any) {
		if nWrong++; len(wrong) < 5 {
			wrong = append(wrong, fmt.Sprintf(f, a...))
		}
	}
	err := RunLockedWith(ThreadOptions{Realtime: true, Priority: 5}, func(l *Locked) {
		seen := uint64(0)
		for i := 0; i < 200000 && seen < wantMoves; i++ {
			yield(l)
			if attr, err := unix.SchedGetAttr(0, 0); err != nil {
				note("yield %d: %v", i, err)
			} else if attr.Policy != unix.SCHED_FIFO || attr.Priority != 5 {
				note("yield %d: thread %d at policy %d priority %d", i, unix.Gettid(), attr.Policy, attr.Priority)
			}
			if m, _ := l.Moves(); m != seen {
				seen = m
				if f := fifoThreads(t); len(f) != 1 || f[0] != unix.Gettid() {
					note("after move %d: threads at SCHED_FIFO %v, the loop on %d", m, f, unix.Gettid())
				}
			}
		}
		moves, failed = l.Moves()
	})
	close(stop)
	wg.Wait()
	require.NoError(t, err)
	assert.Zero(t, nWrong, "the first: %v", wrong)
	assert.Zero(t, failed)
	assertNoFIFOThreads(t)
	return moves
}

// With two real-time loops in the process, each yields locked: neither
// goroutine leaves its thread, so neither can carry SCHED_FIFO by its own
// account of a thread the other now runs on (realtimeLoops).
func TestLockedYieldInPlaceTwoLoopsStayLocked(t *testing.T) {
	needFIFO(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(max(4, runtime.GOMAXPROCS(0))))
	var started, yielded, wg sync.WaitGroup
	started.Add(2)
	yielded.Add(2)
	errs := make(chan error, 4) // each loop: at most one of its own, and RunLockedWith's
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- RunLockedWith(ThreadOptions{Realtime: true, Priority: 5}, func(l *Locked) {
				started.Done()
				started.Wait() // both loops run before either yields
				// Neither ends (and so leaves the other the only loop,
				// which may move) before both have done their yields.
				defer yielded.Wait()
				defer yielded.Done()
				tid := unix.Gettid()
				for i := range 20000 {
					l.YieldInPlace()
					if got := unix.Gettid(); got != tid {
						errs <- fmt.Errorf("yield %d: the loop left thread %d for %d", i, tid, got)
						return
					}
				}
				if m, _ := l.Moves(); m != 0 {
					errs <- fmt.Errorf("%d moves", m)
				}
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	assertNoFIFOThreads(t)
}

// YieldInPlace lets Go's scheduler run: with one P, a goroutine started
// just before it (queued on that P) has run by the time it returns, on the
// loop's own thread, which is still at SCHED_FIFO. Without a yield it
// could not have run (the one P is the loop's).
func TestLockedYieldInPlaceRunsTheQueue(t *testing.T) {
	needFIFO(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	err := RunLockedWith(ThreadOptions{Realtime: true, Priority: 5}, func(l *Locked) {
		tid := unix.Gettid()
		for i := range 100 {
			var ran atomic.Bool
			go ran.Store(true)
			l.YieldInPlace()
			require.True(t, ran.Load(), "yield %d: the queued goroutine did not run", i)
			require.Equal(t, tid, unix.Gettid(), "one P: no other thread can take the goroutine")
			attr, err := unix.SchedGetAttr(0, 0)
			require.NoError(t, err)
			require.Equal(t, uint32(unix.SCHED_FIFO), attr.Policy)
		}
		moves, _ := l.Moves()
		require.Zero(t, moves)
	})
	require.NoError(t, err)
	assertNoFIFOThreads(t)
}

// The agent's loop yields every 5 ms: a yield in place allocates nothing.
func TestLockedYieldInPlaceAllocatesNothing(t *testing.T) {
	needFIFO(t)
	err := RunLockedWith(ThreadOptions{Realtime: true, Priority: 5}, func(l *Locked) {
		l.YieldInPlace()
		if n := testing.AllocsPerRun(500, l.YieldInPlace); n != 0 {
			t.Errorf("YieldInPlace allocates %.1f times", n)
		}
	})
	require.NoError(t, err)
	assertNoFIFOThreads(t)
}

// A move — the goroutine found on another thread after the Gosched — takes
// SCHED_FIFO to the new thread and gives the old one back its attributes,
// allocating nothing. The move is staged: thread old is a thread of the
// test's own, put at SCHED_FIFO as if the loop had run there.
func TestLockedMoveAllocatesNothing(t *testing.T) {
	needFIFO(t)
	oldTid := make(chan int)
	release := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		oldTid <- unix.Gettid()
		<-release
	}()
	old := <-oldTid
	defer close(release)
	before, err := unix.SchedGetAttr(old, 0)
	require.NoError(t, err)

	err = RunLockedWith(ThreadOptions{Realtime: true, Priority: 7}, func(l *Locked) {
		self := unix.Gettid()
		prev := *l.old
		normal := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}
		stage := func() {
			// As if the loop had been on old until now: old at FIFO,
			// this thread at the normal policy, l.old old's attributes.
			*l.old = *before
			require.Zero(t, schedSetAttr(old, &l.fifo))
			require.Zero(t, schedSetAttr(0, &normal))
			l.tid = old
		}
		stage()
		l.moved(self)
		after, err := unix.SchedGetAttr(0, 0)
		require.NoError(t, err)
		assert.Equal(t, uint32(unix.SCHED_FIFO), after.Policy)
		assert.Equal(t, uint32(7), after.Priority)
		oldNow, err := unix.SchedGetAttr(old, 0)
		require.NoError(t, err)
		assert.Equal(t, before.Policy, oldNow.Policy, "the old thread's policy restored")
		assert.Equal(t, before.Nice, oldNow.Nice, "the old thread's nice value restored")
		assert.Equal(t, self, l.tid)
		assert.Equal(t, uint32(unix.SCHED_NORMAL), l.old.Policy, "l.old is now this thread's attributes before the move")
		moves, failed := l.Moves()
		assert.Equal(t, uint64(1), moves)
		assert.Zero(t, failed)

		if n := testing.AllocsPerRun(50, func() { stage(); l.moved(self) }); n != 0 {
			t.Errorf("a move allocates %.1f times", n)
		}
		*l.old = prev // what RunLockedWith restores at the end
	})
	require.NoError(t, err)
	assertNoFIFOThreads(t)
}

// Without CAP_SYS_NICE and with RLIMIT_RTPRIO 0, SCHED_FIFO is refused:
// RunLocked logs it and runs fn anyway. Capabilities are per thread, so the
// test drops CAP_SYS_NICE on a thread of its own, which it never unlocks:
// the thread ends with its goroutine instead of going back to the pool.
func TestRunLockedNotPermitted(t *testing.T) {
	var lim unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_RTPRIO, &lim))
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_RTPRIO, &unix.Rlimit{Cur: 0, Max: lim.Max}))
	defer unix.Setrlimit(unix.RLIMIT_RTPRIO, &lim)

	type result struct {
		err    error
		logs   []string
		ran    bool
		policy uint32
		setup  error
		boost  bool   // Boost.Enter's answer
		boostP uint32 // the policy between Enter and Exit
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var r result
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if r.setup = unix.Capget(&hdr, &data[0]); r.setup == nil {
			data[0].Effective &^= 1 << unix.CAP_SYS_NICE
			r.setup = unix.Capset(&hdr, &data[0])
		}
		if r.setup == nil {
			r.err = RunLocked(ThreadOptions{Realtime: true, Logf: func(f string, a ...any) {
				r.logs = append(r.logs, fmt.Sprintf(f, a...))
			}}, func() {
				r.ran = true
				if attr, err := unix.SchedGetAttr(0, 0); err == nil {
					r.policy = attr.Policy
				}
			})
			var b Boost
			r.boost = b.Enter(5)
			if attr, err := unix.SchedGetAttr(0, 0); err == nil {
				r.boostP = attr.Policy
			}
			b.Exit()
		}
		ch <- r
	}()
	r := <-ch
	require.NoError(t, r.setup)
	assert.True(t, r.ran)
	require.Error(t, r.err)
	assert.ErrorIs(t, r.err, unix.EPERM)
	require.Len(t, r.logs, 1)
	assert.Contains(t, r.logs[0], "normal scheduling policy")
	assert.Equal(t, uint32(0), r.policy, "SCHED_OTHER")
	assert.False(t, r.boost, "Boost refused too")
	assert.Equal(t, uint32(0), r.boostP, "and the thread left at SCHED_OTHER")
}

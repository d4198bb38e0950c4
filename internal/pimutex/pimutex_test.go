package pimutex_test

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/internal/pimutex"
	"github.com/fmagent/fmagent/transport"
)

// Many goroutines, on many threads, increment a plain counter under the
// lock: none is lost (and, under -race, the detector sees the lock's
// hand-overs, including those made by the kernel).
func TestMutualExclusion(t *testing.T) {
	var m pimutex.Mutex
	counter := 0
	const workers, each = 16, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				switch (w + i) % 4 {
				case 0:
					for !m.TryLock() {
						runtime.Gosched()
					}
				case 1:
					runtime.LockOSThread()
					m.LockOnThread(unix.Gettid())
					runtime.UnlockOSThread() // still wired: the lock's own
				default:
					m.Lock()
				}
				c := counter
				if i%100 == 0 {
					time.Sleep(10 * time.Microsecond) // waiters pile up in the kernel
				}
				counter = c + 1
				m.Unlock()
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, workers*each, counter)
}

func TestTryLock(t *testing.T) {
	var m pimutex.Mutex
	require.True(t, m.TryLock())
	other := make(chan bool)
	go func() { other <- m.TryLock() }()
	assert.False(t, <-other, "held: another thread cannot take it")
	m.Unlock()
	go func() {
		ok := m.TryLock()
		if ok {
			m.Unlock()
		}
		other <- ok
	}()
	assert.True(t, <-other, "released: another thread takes it")
}

// Contended: not while m is only held, yes once another thread waits in
// the kernel for it, not once that thread has taken it and let it go.
func TestContended(t *testing.T) {
	var m pimutex.Mutex
	assert.False(t, m.Contended(), "free")
	m.Lock()
	assert.False(t, m.Contended(), "held, no one waiting")
	took := make(chan struct{})
	turns := 0
	go func() {
		m.Lock()
		turns++
		m.Unlock()
		close(took)
	}()
	require.Eventually(t, m.Contended, 10*time.Second, time.Millisecond, "a waiter in the kernel")
	m.Unlock()
	<-took
	assert.Equal(t, 1, turns)
	assert.False(t, m.Contended(), "free again")
}

// The lock belongs to the thread that took it: unlocking it twice is a bug,
// and panics rather than corrupting it; so do, under the race detector
// (make test runs every package's tests under it), unlocking it from
// another goroutine, which is on another thread, the holder's being wired
// to it, and taking it with LockOnThread or TryLockOnThread under another
// thread's ID (a stale one, kept across a move).
func TestUnlockByOtherPanics(t *testing.T) {
	var m pimutex.Mutex
	m.Lock()
	if pimutex.RaceEnabled {
		panicked := make(chan bool)
		go func() {
			defer func() { panicked <- recover() != nil }()
			m.Unlock()
		}()
		assert.True(t, <-panicked, "unlock from another thread")
	}
	m.Unlock()
	assert.Panics(t, m.Unlock, "unlock of an unlocked mutex")
	if pimutex.RaceEnabled {
		runtime.LockOSThread()
		assert.Panics(t, func() { m.LockOnThread(unix.Gettid() + 1) }, "another thread's ID")
		assert.Panics(t, func() { m.TryLockOnThread(unix.Gettid() + 1) }, "another thread's ID")
		runtime.UnlockOSThread()
	}
	// Still usable.
	require.True(t, m.TryLock())
	m.Unlock()
}

// Lock wires the goroutine to its thread until Unlock, and only until then.
func TestLockWiresGoroutineToThread(t *testing.T) {
	var m pimutex.Mutex
	m.Lock()
	tid := unix.Gettid()
	for range 50 {
		runtime.Gosched()
		time.Sleep(10 * time.Microsecond)
		require.Equal(t, tid, unix.Gettid(), "moved off the thread that holds the lock")
	}
	m.Unlock()
}

// threadPrio is the kernel's current priority of thread tid
// (/proc/self/task/TID/stat, field 18): 0..39 (20 + nice) at the normal
// policy, -2..-100 (-1 - the real-time priority) when the thread runs, or is
// boosted to run, at SCHED_FIFO.
func threadPrio(t *testing.T, tid int) int {
	b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/stat")
	require.NoError(t, err)
	s := string(b)
	// Fields after the command name (which may hold spaces), field 3 on.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	p, err := strconv.Atoi(f[18-3])
	require.NoError(t, err)
	return p
}

// The point of the package: a thread at the normal policy holding the lock
// runs at the priority of a SCHED_FIFO thread waiting for it, and at its
// own again once it has unlocked. sync.Mutex fails this (the holder stays
// at 20).
func TestPriorityInheritance(t *testing.T) {
	if err := transport.ProbeRealtime(10); err != nil {
		t.Skipf("needs CAP_SYS_NICE for SCHED_FIFO (CI runs as root): %v", err)
	}
	var m pimutex.Mutex
	m.Lock()
	holder := unix.Gettid()
	before := threadPrio(t, holder)
	require.GreaterOrEqual(t, before, 0, "the holder starts at the normal policy")

	got := make(chan struct{})
	waiterDone := make(chan error, 1)
	go func() {
		waiterDone <- transport.RunLocked(transport.ThreadOptions{Realtime: true, Priority: 10}, func() {
			m.LockOnThread(unix.Gettid()) // as the real-time loop does
			close(got)
			m.Unlock()
		})
	}()
	// The waiter sleeps in the kernel; the holder is boosted to its
	// priority (-11: SCHED_FIFO 10) for as long as it waits.
	boosted := before
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if boosted = threadPrio(t, holder); boosted < 0 {
			break
		}
	}
	assert.Equal(t, -11, boosted, "the holder runs at the waiting SCHED_FIFO 10 thread's priority")
	select {
	case <-got:
		t.Fatal("the waiter took a held lock")
	default:
	}
	m.Unlock()
	<-got
	require.NoError(t, <-waiterDone)
	assert.Equal(t, before, threadPrio(t, holder), "unlocked, the boost ends")
}

func TestLockAllocs(t *testing.T) {
	var m pimutex.Mutex
	n := 0
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		m.Lock()
		n++
		m.Unlock()
		if m.TryLock() {
			n++
			m.Unlock()
		}
		runtime.LockOSThread()
		m.LockOnThread(unix.Gettid())
		n++
		m.Unlock()
		runtime.UnlockOSThread()
	}))
	assert.Equal(t, 3*1001, n, "every lock taken (AllocsPerRun runs once more to warm up)")
}

// BenchmarkUncontended: what the lock costs the real-time loop, which takes
// it two or three times a wake-up, against sync.Mutex.
func BenchmarkUncontended(b *testing.B) {
	n := 0
	lockUnlock := func(b *testing.B, l sync.Locker) {
		for b.Loop() {
			l.Lock()
			n++ // not an empty critical section
			l.Unlock()
		}
	}
	b.Run("pimutex", func(b *testing.B) { lockUnlock(b, new(pimutex.Mutex)) })
	b.Run("pimutex-on-thread", func(b *testing.B) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var m pimutex.Mutex
		tid := unix.Gettid()
		for b.Loop() {
			m.LockOnThread(tid)
			n++
			m.Unlock()
		}
	})
	b.Run("sync.Mutex", func(b *testing.B) { lockUnlock(b, new(sync.Mutex)) })
}

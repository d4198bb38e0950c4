package agent

import (
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/transport"
)

// The P counts with fractional mark workers are those the runtime names
// (runtime.gcControllerState.startCycle: "GOMAXPROCS<=3 or GOMAXPROCS=6"),
// and procsForLoop steps over them.
func TestProcsForLoop(t *testing.T) {
	for p := 1; p <= 256; p++ {
		assert.Equal(t, p <= 3 || p == 6, fractionalMarking(p), "GOMAXPROCS %d", p)
	}
	for n, want := range map[int]int{1: 4, 2: 4, 3: 4, 4: 4, 5: 5, 6: 7, 7: 7, 9: 9, 17: 17} {
		assert.Equal(t, want, procsForLoop(n), "procsForLoop(%d)", n)
	}
}

// writeBarrier is the runtime's write-barrier switch, on while the
// collector marks (the runtime keeps it for the packages that link to
// it, go.dev/issue/67401).
//
//go:linkname writeBarrier runtime.writeBarrier
var writeBarrier struct {
	enabled bool
	pad     [3]byte
	alignme uint64
}

// With procsForLoop's P count, a goroutine that holds its P as the loop
// does (sleeping in a raw system call, yielding in place) runs no mark
// worker on its thread when it yields while the collector marks; with
// three Ps (fractional workers) many such yields do (a third of them
// here: the P runs one each time it is behind its share of the marking). A yield that ran a
// worker is told by the CPU time its thread spent in it (its own clock,
// not the wall's, so a busy machine does not make one look like one).
func TestProcsForLoopKeepsMarkWorkersOffTheLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("collects a large heap for seconds")
	}
	heap := make([]*[4]uintptr, 2<<20)
	for i := range heap {
		heap[i] = new([4]uintptr)
	}
	defer runtime.KeepAlive(heap)
	fractional := workerYields(t, 3)
	dedicated := workerYields(t, procsForLoop(3))
	t.Logf("yields while marking that ran a mark worker: %d of %d with 3 Ps, %d of %d with %d",
		fractional[0], fractional[1], dedicated[0], dedicated[1], procsForLoop(3))
	require.Positive(t, fractional[1], "no yield while marking with 3 Ps: nothing was tested")
	require.Positive(t, dedicated[1], "no yield while marking with %d Ps: nothing was tested", procsForLoop(3))
	assert.GreaterOrEqual(t, fractional[0]*10, fractional[1], "with fractional workers, one yield in ten while marking runs one or more (else this test tells nothing)")
	assert.LessOrEqual(t, dedicated[0]*20, dedicated[1], "with dedicated workers only, at most one yield in twenty while marking runs a worker")
}

// workerYields runs the collector over and over for a second with procs
// Ps while a locked goroutine sleeps 1 ms at a time keeping its P and
// yields in place after each sleep. It returns how many of the yields made
// while marking took 200 µs or more of its thread's CPU, and how many
// there were.
func workerYields(t *testing.T, procs int) (n [2]int) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
	stop := make(chan struct{})
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	}()
	err := transport.RunLockedWith(transport.ThreadOptions{}, func(l *transport.Locked) {
		nap := unix.Timespec{Nsec: int64(time.Millisecond)}
		for end := time.Now().Add(time.Second); time.Now().Before(end); {
			unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&nap)), 0, 0)
			if !writeBarrier.enabled {
				l.YieldInPlace()
				continue
			}
			tid := unix.Gettid()
			var t0, t1 unix.Timespec
			require.NoError(t, unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &t0))
			l.YieldInPlace()
			if unix.Gettid() != tid {
				continue // came back on another thread: its clock is another
			}
			require.NoError(t, unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &t1))
			n[1]++
			if t1.Nano()-t0.Nano() >= int64(200*time.Microsecond) {
				n[0]++
			}
		}
	})
	close(stop)
	<-gcDone
	require.NoError(t, err)
	return n
}

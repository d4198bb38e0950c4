package agent

import (
	"io"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/transport"
)

// answeredOnLoopThread runs rounds of: a writer goroutine waits for its
// answer; a goroutine locked to its thread as the real-time loop is
// answers it (handleReady's part: queue, hand over), yields in place, as
// the loop does every 5 ms, and keeps its thread (spinning, as the loop
// keeps it in its raw wait) until the writer has run. It returns how many
// writers ran on the loop's thread, and in how many rounds the loop did
// not come back on its thread from the yield (another thread took its
// goroutine from the queue first; its thread then runs what it finds,
// the case the dispatcher does not change: not counted in on).
func answeredOnLoopThread(t *testing.T, a *agent, rounds int) (on, moved int) {
	t.Helper()
	for i := 0; i < rounds; i++ {
		ch := make(chan core.Result, 1)
		var ranOn atomic.Int64
		waiting := make(chan struct{})
		go func() {
			close(waiting)
			<-ch
			ranOn.Store(int64(unix.Gettid()))
		}()
		<-waiting
		time.Sleep(100 * time.Microsecond) // parked in its receive
		var loopTid, before int
		err := transport.RunLockedWith(transport.ThreadOptions{}, func(th *transport.Locked) {
			before = unix.Gettid()
			a.wakes.results = append(a.wakes.results, pendingResult{ch: ch, r: core.Result{ID: uint64(i)}})
			a.handWakes(&a.wakes)
			th.YieldInPlace()
			loopTid = unix.Gettid()
			for end := time.Now().Add(5 * time.Second); ranOn.Load() == 0 && time.Now().Before(end); {
			}
		})
		require.NoError(t, err)
		require.NotZero(t, ranOn.Load(), "round %d: the writer was never answered", i)
		switch {
		case loopTid != before:
			moved++
		case ranOn.Load() == int64(loopTid):
			on++
		}
	}
	return on, moved
}

// The goroutines the real-time loop answers are woken by the dispatcher,
// on its P: the loop's yield does not run them on the loop's thread. (The
// loop answering them itself, they ran there at its next yield: 13–74 ms
// yields in a registration storm.)
func TestLoopAnswersAreNotRunOnTheLoopThread(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Fatalf("GOMAXPROCS %d: the loop's thread holds a P of its own in the agent; this test needs two", runtime.GOMAXPROCS(0))
	}
	a := &agent{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a.startDispatcher()
	require.NotNil(t, a.disp)
	on, moved := answeredOnLoopThread(t, a, 200)
	a.stopDispatcher()
	assert.Zero(t, on, "writers run on the loop's thread at its yield")
	assert.Less(t, moved, 20, "rounds in which the loop's goroutine left its thread at the yield")
	assert.NotZero(t, a.disp.wakes.Load(), "the dispatcher woke")

	// Stopped, the caller delivers: nothing is lost.
	ch := make(chan core.Result, 1)
	a.wakes.results = append(a.wakes.results, pendingResult{ch: ch, r: core.Result{ID: 7}})
	sig := make(chan struct{})
	a.wakes.closes = append(a.wakes.closes, sig)
	a.handWakes(&a.wakes)
	select {
	case r := <-ch:
		assert.Equal(t, uint64(7), r.ID)
	default:
		t.Fatal("an answer handed over after stop was not delivered")
	}
	select {
	case <-sig:
	default:
		t.Fatal("a channel handed over after stop was not closed")
	}
	assert.True(t, a.wakes.empty())
}

// What the test above guards against: without the dispatcher the loop's
// yield runs the writers it answered on its own thread.
func TestWithoutDispatcherLoopAnswersRunOnTheLoopThread(t *testing.T) {
	a := &agent{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	on, _ := answeredOnLoopThread(t, a, 200)
	assert.NotZero(t, on, "without the dispatcher, some writers ran on the loop's thread (what the dispatcher prevents)")
}

// Handing a batch over allocates nothing once the arrays have grown: the
// loop does it at every answered write.
func TestHandWakesAllocs(t *testing.T) {
	a := &agent{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a.startDispatcher()
	defer a.stopDispatcher()
	ch := make(chan core.Result, 4096) // never full: the dispatcher's send must not block
	step := func() {
		for len(ch) > 0 {
			<-ch
		}
		a.wakes.results = append(a.wakes.results, pendingResult{ch: ch})
		a.handWakes(&a.wakes)
	}
	for i := 0; i < 100; i++ {
		step()
		time.Sleep(50 * time.Microsecond)
	}
	allocs := testing.AllocsPerRun(200, step)
	assert.Zero(t, allocs)
}

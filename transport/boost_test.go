package transport

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Boost puts the thread at SCHED_FIFO between Enter and Exit, keeps the
// goroutine on it meanwhile, and gives the thread back its attributes (its
// nice value too), allocating nothing.
func TestBoost(t *testing.T) {
	needFIFO(t)
	runtime.LockOSThread() // the thread under test, until the test's end
	defer runtime.UnlockOSThread()
	self := unix.Gettid()
	nice := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL, Nice: -7}
	require.Zero(t, schedSetAttr(0, &nice))
	defer func() {
		normal := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}
		schedSetAttr(0, &normal)
	}()
	before, err := unix.SchedGetAttr(0, 0)
	require.NoError(t, err)

	var b Boost
	require.True(t, b.Enter(9))
	inside, err := unix.SchedGetAttr(0, 0)
	require.NoError(t, err)
	assert.Equal(t, uint32(unix.SCHED_FIFO), inside.Policy)
	assert.Equal(t, uint32(9), inside.Priority)
	assert.Equal(t, uint64(unix.SCHED_FLAG_RESET_ON_FORK), inside.Flags&unix.SCHED_FLAG_RESET_ON_FORK)
	runtime.Gosched()
	assert.Equal(t, self, unix.Gettid(), "the goroutine stays on its thread")
	b.Exit()

	after, err := unix.SchedGetAttr(0, 0)
	require.NoError(t, err)
	assert.Equal(t, before.Policy, after.Policy)
	assert.Equal(t, before.Priority, after.Priority)
	assert.Equal(t, int32(-7), after.Nice, "the nice value restored")

	if n := testing.AllocsPerRun(200, func() { b.Enter(9); b.Exit() }); n != 0 {
		t.Errorf("Enter and Exit allocate %.1f times", n)
	}
	assertNoFIFOThreads(t)
}

// A thread already real-time is left as it is, prio 0 changes nothing, and
// either way Exit balances Enter's wiring (the goroutine is unlocked after
// it: here the test's own LockOSThread is the only one left).
func TestBoostLeavesWhatItNeedNotChange(t *testing.T) {
	needFIFO(t)
	var b Boost
	assert.False(t, b.Enter(0))
	attr, err := unix.SchedGetAttr(0, 0)
	require.NoError(t, err)
	assert.NotEqual(t, uint32(unix.SCHED_FIFO), attr.Policy)
	b.Exit()

	err = RunLocked(ThreadOptions{Realtime: true, Priority: 4}, func() {
		assert.False(t, b.Enter(9), "already at SCHED_FIFO")
		b.Exit()
		attr, err := unix.SchedGetAttr(0, 0)
		require.NoError(t, err)
		assert.Equal(t, uint32(unix.SCHED_FIFO), attr.Policy)
		assert.Equal(t, uint32(4), attr.Priority, "its own priority kept")
	})
	require.NoError(t, err)
	assertNoFIFOThreads(t)
}

package shmem

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// monoNow is CLOCK_MONOTONIC as a C reader reads it with clock_gettime,
// to within its base pair's error however loaded the machine: between a
// reading taken before it and one taken after, give or take that error.
func TestMonoNowIsClockMonotonic(t *testing.T) {
	tol := int64(monoBase.err)
	for i := range 10000 {
		var before, after unix.Timespec
		require.NoError(t, unix.ClockGettime(unix.CLOCK_MONOTONIC, &before))
		m := monoNow()
		require.NoError(t, unix.ClockGettime(unix.CLOCK_MONOTONIC, &after))
		require.GreaterOrEqual(t, m, before.Nano()-tol, "reading %d: monoNow before CLOCK_MONOTONIC (base error %v)", i, monoBase.err)
		require.LessOrEqual(t, m, after.Nano()+tol, "reading %d: monoNow after CLOCK_MONOTONIC (base error %v)", i, monoBase.err)
	}
}

// The writer's heartbeat, at every tick of the agent's real-time loop,
// allocates nothing.
func TestMonoNowAllocatesNothing(t *testing.T) {
	if n := testing.AllocsPerRun(1000, func() { _ = monoNow() }); n != 0 {
		t.Errorf("monoNow allocates %.1f times", n)
	}
}

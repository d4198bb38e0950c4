package procwatch

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

func openFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(es)
}

// 5,000 registrations of one process hold one pidfd, not 5,000; its exit
// reaches every one of them.
func TestOnePidfdPerProcess(t *testing.T) {
	w := newWatcher(t)
	cmd := start(t, "sleep", "60")
	before := openFDs(t)
	const n = 5000
	for k := uint64(1); k <= n; k++ {
		require.NoError(t, w.Watch(pid(cmd), k))
	}
	require.Equal(t, 1, w.Procs())
	require.Equal(t, n, w.Len())
	require.LessOrEqual(t, openFDs(t), before+1, "one pidfd for the process")
	w.Unwatch(7)
	require.Equal(t, n-1, w.Len())
	require.NoError(t, cmd.Process.Kill())
	seen := map[uint64]bool{}
	for range n - 1 {
		e := recv(t, w)
		require.Equal(t, pid(cmd), e.PID)
		seen[e.Key] = true
	}
	require.Len(t, seen, n-1)
	require.False(t, seen[7], "unwatched")
	require.Zero(t, w.Procs())
	require.LessOrEqual(t, openFDs(t), before, "pidfd closed")
}

// At MaxProcs or MaxKeys Watch fails with ErrLimit and watches nothing:
// the caller refuses the registration instead of holding an entity that
// would never go down.
func TestWatchLimits(t *testing.T) {
	w := newWatcher(t)
	w.MaxProcs, w.MaxKeys = 2, 3
	a, b, c := start(t, "sleep", "60"), start(t, "sleep", "60"), start(t, "sleep", "60")
	require.NoError(t, w.Watch(pid(a), 1))
	require.NoError(t, w.Watch(pid(b), 2))
	require.ErrorIs(t, w.Watch(pid(c), 3), ErrLimit, "a third process")
	require.NoError(t, w.Watch(pid(a), 3), "another key of a watched process")
	require.ErrorIs(t, w.Watch(pid(a), 4), ErrLimit, "a fourth key")
	require.NoError(t, w.Watch(pid(b), 3), "moving a key is not a new one")
	require.Equal(t, 2, w.Procs())
	require.Equal(t, 3, w.Len())
}

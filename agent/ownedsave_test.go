package agent

import (
	"errors"
	"io"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/persist"
	"github.com/fmagent/fmagent/transport"
	"github.com/fmagent/fmagent/wire"
)

// The owned file and the table are written on the background thread, never
// on the thread of the goroutine that waits for them, while the real-time
// loop is at SCHED_FIFO: that goroutine may be running on the loop's thread
// (the loop's yield runs what it readied), which a file's fsync would
// block. That holds when the agent could not renice its other threads
// (RLIMIT_RTPRIO without RLIMIT_NICE: otherNice 0), the case the table's
// rule once got wrong. With the loop at the normal policy an awaited
// write stays on the caller.
func TestFilesWrittenOnTheBackgroundThreadWhileTheLoopIsRealtime(t *testing.T) {
	for _, tc := range []struct {
		name         string
		rtPrio, nice int
		onBackground bool
	}{
		{"fifo, threads reniced", 50, -20, true},
		{"fifo, threads not reniced", 50, 0, true},
		{"normal policy", 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bg, err := transport.StartBackground(10)
			require.NoError(t, err)
			defer bg.Stop()
			a := &agent{log: slog.New(slog.NewTextHandler(io.Discard, nil)), stateDir: t.TempDir(), bg: bg,
				rtPrio: tc.rtPrio, otherNice: tc.nice}
			a.initOwned()

			var savedOn atomic.Int64
			testHookOwnedSaved = func() { savedOn.Store(int64(unix.Gettid())) }
			defer func() { testHookOwnedSaved = nil }()

			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			caller := unix.Gettid()
			want := int64(caller)
			if tc.onBackground {
				want = int64(bg.Tid())
			}

			a.ownedPut("svc/x", wire.KindService, 0, false)
			require.NotZero(t, savedOn.Load(), "saved")
			assert.Equal(t, want, savedOn.Load(), "the owned file's thread (caller %d, background %d)", caller, bg.Tid())
			got, err := persist.LoadOwned(a.stateDir)
			require.NoError(t, err)
			require.NotNil(t, got)
			require.Len(t, got.Entries, 1)
			assert.Equal(t, "svc/x", got.Entries[0].Name, "and written")

			var tableOn int64
			require.NoError(t, a.onBackground(true, func() error { tableOn = int64(unix.Gettid()); return nil }))
			assert.Equal(t, want, tableOn, "an awaited table write's thread")
			require.NoError(t, a.onBackground(false, func() error { tableOn = int64(unix.Gettid()); return nil }))
			assert.Equal(t, int64(bg.Tid()), tableOn, "a write nobody waits for: always the background thread")
			assert.Equal(t, errSentinelForTest, a.onBackground(true, func() error { return errSentinelForTest }), "the write's error comes back")
		})
	}
}

var errSentinelForTest = errors.New("disk full")

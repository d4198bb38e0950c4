package agent

import (
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

// The owned file is written on the background thread, never on the thread
// of the goroutine that registered: that goroutine may be running on the
// real-time loop's thread (the loop's yield runs what it readied), which a
// file's fsync would block.
func TestOwnedFileWrittenOnTheBackgroundThread(t *testing.T) {
	bg, err := transport.StartBackground(10)
	require.NoError(t, err)
	defer bg.Stop()
	a := &agent{log: slog.New(slog.NewTextHandler(io.Discard, nil)), stateDir: t.TempDir(), bg: bg}
	a.initOwned()

	var savedOn atomic.Int64
	testHookOwnedSaved = func() { savedOn.Store(int64(unix.Gettid())) }
	defer func() { testHookOwnedSaved = nil }()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	caller := unix.Gettid()
	a.ownedPut("svc/x", wire.KindService, 0, false)
	require.NotZero(t, savedOn.Load(), "saved")
	assert.NotEqual(t, int64(caller), savedOn.Load(), "not on the caller's thread")
	assert.Equal(t, int64(bg.Tid()), savedOn.Load(), "on the background thread")

	got, err := persist.LoadOwned(a.stateDir)
	require.NoError(t, err)
	require.NotNil(t, got)
	require.Len(t, got.Entries, 1)
	assert.Equal(t, "svc/x", got.Entries[0].Name, "and written")
}

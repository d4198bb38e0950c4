package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A late tick half the bound late or later is traced, at most once every
// TraceEvery; the file is Go's execution trace (its header), whole (no
// temporary file left), and the oldest beyond keep are removed, other
// files left alone.
func TestLateTracerWritesAndPrunes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "traces")
	tr, err := startLateTracer(dir, 10*time.Millisecond)
	require.NoError(t, err)
	defer tr.stop()
	tr.keep = 3
	info, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), info.Mode().Perm(), "created for the agent's user only")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "late-0.trace"), []byte("oldest"), 0o600))

	now := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	assert.False(t, tr.due(now, 9*time.Millisecond), "under the threshold")
	assert.True(t, tr.due(now, 10*time.Millisecond))
	// Something for the recorder to record.
	for i := 0; i < 100; i++ {
		runtime.Gosched()
	}
	var written []string
	for i := 0; i < 4; i++ {
		at := now.Add(time.Duration(i) * tr.every)
		require.True(t, tr.due(at, time.Second), "%d", i)
		name, err := tr.write(at)
		require.NoError(t, err)
		written = append(written, name)
		assert.False(t, tr.due(at.Add(tr.every-time.Millisecond), time.Second), "at most one every %v", tr.every)
	}
	b, err := os.ReadFile(written[3])
	require.NoError(t, err)
	require.Greater(t, len(b), 16)
	assert.True(t, bytes.HasPrefix(b, []byte("go 1.")) && bytes.Contains(b[:16], []byte(" trace")), "an execution trace's header: %q", b[:16])

	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := []string{"notes.txt"}
	for _, w := range written[1:] {
		want = append(want, filepath.Base(w))
	}
	assert.ElementsMatch(t, want, names, "the 3 newest traces and the file that is not one")
	for _, n := range names {
		assert.False(t, strings.HasSuffix(n, ".tmp"), n)
	}
}

// The trace's log line is not taken for a late tick by a reader of the
// log that looks for lateTickMsg (soak does).
func TestLateTraceMsgIsNotALateTick(t *testing.T) {
	assert.False(t, strings.HasPrefix(lateTraceMsg, strings.SplitN(lateTickMsg, ":", 2)[0]), lateTraceMsg)
}

// A directory that cannot be made is an error, not a running recorder.
func TestLateTracerBadDir(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(f, nil, 0o600))
	_, err := startLateTracer(filepath.Join(f, "traces"), time.Millisecond)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "realtime.trace_dir")
}

package hooks

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/internal/testutil"
)

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook.sh")
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755))
	return p
}

// A hook gets the event in its environment and as JSON on stdin; it runs
// only for the kinds it asked for, in order.
func TestHookGetsTheEvent(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	cmd := script(t, `echo "$FMAGENT_EVENT $FMAGENT_ACTION $FMAGENT_ENTITY $FMAGENT_CAUSE $FMAGENT_SEVERITY $FMAGENT_NODE $FMAGENT_SEQ" >> `+out+`
cat >> `+out+`
`)
	r := New([]Hook{{Command: cmd, On: []string{KindAlarm, KindNode}, Timeout: 5 * time.Second}}, slog.New(slog.DiscardHandler), nil)
	at := time.Unix(1_700_000_000, 0).UTC()
	r.Notify(&Event{Kind: KindAlarm, Action: "raise", Node: 2, Entity: "svc/db", Cause: "disk-full", Severity: "major", Seq: 7, Time: at})
	r.Notify(&Event{Kind: KindLink, Action: "down", Node: 2, Entity: "node/3/link/a", Seq: 8, Time: at}) // not asked for
	r.Notify(&Event{Kind: KindNode, Action: "down", Node: 2, Entity: "node/3", Seq: 9, Time: at})
	require.Eventually(t, func() bool { return r.Stats.Runs.Load() == 2 }, 10*time.Second, 10*time.Millisecond)
	r.Close()
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.Len(t, lines, 4)
	require.Equal(t, "alarm raise svc/db disk-full major 2 7", lines[0])
	var ev Event
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &ev))
	require.Equal(t, "disk-full", ev.Cause)
	require.Equal(t, at, ev.Time)
	require.Equal(t, "node down node/3   2 9", lines[2])
	require.Zero(t, r.Stats.Failures.Load())
}

// A hook that outlives its timeout is killed with what it started, and the
// failure is logged; a failing hook is logged with its output.
func TestHookTimeoutAndFailureLogged(t *testing.T) {
	logs := &testutil.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	slow := script(t, "sleep 30 & sleep 30\n")
	bad := script(t, "echo something went wrong >&2; exit 3\n")
	r := New([]Hook{{Command: slow, Timeout: 200 * time.Millisecond}, {Command: bad, Timeout: 5 * time.Second}}, log, nil)
	r.Notify(&Event{Kind: KindRole, Action: "master"})
	require.Eventually(t, func() bool { return r.Stats.Runs.Load() == 2 }, 10*time.Second, 10*time.Millisecond)
	r.Close()
	require.Equal(t, uint64(1), r.Stats.Timeouts.Load())
	require.Equal(t, uint64(2), r.Stats.Failures.Load())
	require.Contains(t, logs.String(), "hook killed after its timeout of 200ms")
	require.Contains(t, logs.String(), "something went wrong")
	require.Contains(t, logs.String(), "exit status 3")
}

// Notify never waits for a hook: a hook slower than the events has its
// queue fill and the excess dropped, counted and logged.
func TestNotifyNeverBlocks(t *testing.T) {
	old := QueueSize
	QueueSize = 4
	defer func() { QueueSize = old }()
	logs := &testutil.SyncBuffer{}
	r := New([]Hook{{Command: script(t, "sleep 5\n"), Timeout: 10 * time.Second}}, slog.New(slog.NewTextHandler(logs, nil)), nil)
	for i := 0; i < 100; i++ {
		r.Notify(&Event{Kind: KindState, Action: "down"})
	}
	require.GreaterOrEqual(t, r.Stats.Dropped.Load(), uint64(100-4-1))
	require.Contains(t, logs.String(), "hook queue full")
	r.Close() // kills the running one
}

// A runner with no hooks is nil, and a nil runner does nothing.
func TestNoHooks(t *testing.T) {
	r := New(nil, slog.New(slog.DiscardHandler), nil)
	require.Nil(t, r)
	require.False(t, r.Wants(KindNode))
	r.Notify(&Event{Kind: KindNode})
	r.Close()
}

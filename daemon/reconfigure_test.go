package daemon

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/internal/testutil"
)

// alive: pid names a process that has not exited (a zombie counts as
// gone: the supervisor reaps what it started).
func alive(pid int32) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' {
			return i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
		}
	}
	return false
}

// A reload: a new daemon is started, a removed one this agent started is
// stopped (SIGTERM) and announced Removed, a changed one keeps running (same
// PID) and its new restart policy applies at its next exit.
func TestReconfigure(t *testing.T) {
	var log testutil.SyncBuffer
	keep := spec("keep", `exec sleep 100`, nil)
	gone := spec("gone", `exec sleep 100`, nil)
	s := newSup(t, t.TempDir(), &log, keep, gone)
	defer s.Close()
	up1, up2 := next(t, s, Up), next(t, s, Up)
	kill(t, up1.PID)
	kill(t, up2.PID)
	pids := map[string]int32{up1.Name: up1.PID, up2.Name: up2.PID}

	never := keep
	never.Restart = config.RestartNever
	never.Args = []string{"-c", "exec sleep 200"}
	added := spec("added", `exec sleep 100`, nil)
	r, err := s.Reconfigure([]config.Daemon{never, added})
	require.NoError(t, err)
	assert.Equal(t, []string{"added"}, r.Added)
	assert.Equal(t, []string{"gone"}, r.Removed)
	assert.Equal(t, []string{"keep"}, r.Changed)
	assert.Equal(t, []string{"keep"}, r.NextStart, "its arguments changed: they apply at its next start")

	up3 := next(t, s, Up)
	kill(t, up3.PID)
	assert.Equal(t, "added", up3.Name)
	rm := next(t, s, Removed)
	assert.Equal(t, "gone", rm.Name)
	assert.Equal(t, "node/7/proc/gone", rm.Entity)
	assert.Equal(t, "signal terminated", rm.Exit)
	assert.False(t, alive(pids["gone"]), "a removed daemon this agent started is stopped")
	assert.True(t, alive(pids["keep"]), "a changed daemon is not restarted by a reload")

	var names []string
	for _, d := range s.Status() {
		names = append(names, d.Name)
		if d.Name == "keep" {
			assert.Equal(t, pids["keep"], d.PID)
		}
	}
	assert.Equal(t, []string{"keep", "added"}, names)

	// The new policy, never: killed, it stays down.
	require.NoError(t, syscall.Kill(int(pids["keep"]), syscall.SIGKILL))
	assert.Equal(t, "keep", next(t, s, Down).Name)
	select {
	case e := <-s.Events():
		t.Fatalf("restart = never since the reload, yet: %+v", e)
	case <-time.After(300 * time.Millisecond):
	}
	assert.Equal(t, StateStopped, s.Status()[0].State)

	// The state file no longer names the removed daemon.
	b, err := os.ReadFile(s.stateFile())
	require.NoError(t, err)
	assert.NotContains(t, string(b), `"gone"`)
	assert.NotContains(t, log.String(), "daemon exited\" daemon=gone", "a stop asked for is not an exit")
}

// A removed daemon that ignores SIGTERM gets SIGKILL after StopTimeout; an
// adopted one (not started here) is left running, and Removed comes at once.
func TestReconfigureStopTimeoutAndAdopted(t *testing.T) {
	defer func(d time.Duration) { StopTimeout = d }(StopTimeout)
	StopTimeout = 200 * time.Millisecond
	dir := t.TempDir()

	other := exec.Command("/bin/sleep", "100")
	require.NoError(t, other.Start())
	defer func() { other.Process.Kill(); other.Wait() }()
	pf := filepath.Join(dir, "db.pid")
	require.NoError(t, os.WriteFile(pf, []byte(strconv.Itoa(other.Process.Pid)+"\n"), 0o644))
	db := config.Daemon{Name: "db", PidFile: pf}
	db.ApplyDefaults()
	stubborn := spec("stubborn", `trap "" TERM; echo ready; while :; do sleep 0.05; done`, nil)

	var log testutil.SyncBuffer
	s := newSup(t, filepath.Join(dir, "state"), &log, db, stubborn)
	defer s.Close()
	a, b := next(t, s, Up), next(t, s, Up)
	kill(t, a.PID)
	kill(t, b.PID)
	require.Eventually(t, func() bool { return strings.Contains(log.String(), `msg=ready daemon=stubborn`) }, 5*time.Second, 10*time.Millisecond)

	asked := time.Now()
	r, err := s.Reconfigure(nil)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"db", "stubborn"}, r.Removed)
	first := next(t, s, Removed)
	assert.Equal(t, "db", first.Name, "the adopted one is let go at once")
	assert.True(t, alive(int32(other.Process.Pid)), "an adopted daemon is not ours to stop")

	second := next(t, s, Removed)
	assert.Equal(t, "stubborn", second.Name)
	assert.Equal(t, "signal killed", second.Exit)
	assert.GreaterOrEqual(t, time.Since(asked), StopTimeout)
	assert.Contains(t, log.String(), "did not stop within the timeout: SIGKILL")
	assert.Empty(t, s.Status())
}

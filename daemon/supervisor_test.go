package daemon

import (
	"encoding/json"
	"log/slog"
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

func spec(name string, script string, mod func(*config.Daemon)) config.Daemon {
	d := config.Daemon{Name: name, Command: "/bin/sh", Args: []string{"-c", script}, Backoff: 50 * time.Millisecond, BackoffMax: time.Second, Window: 10 * time.Second}
	if mod != nil {
		mod(&d)
	}
	d.ApplyDefaults()
	return d
}

func next(t *testing.T, s *Supervisor, want EventKind) Event {
	t.Helper()
	select {
	case e := <-s.Events():
		require.Equal(t, want.String(), e.Kind.String(), "event %+v", e)
		return e
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s event", want)
	}
	return Event{}
}

func newSup(t *testing.T, dir string, log *testutil.SyncBuffer, specs ...config.Daemon) *Supervisor {
	t.Helper()
	var h slog.Handler = slog.DiscardHandler
	if log != nil {
		h = slog.NewTextHandler(log, nil)
	}
	s, err := New(7, specs, dir, slog.New(h))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	return s
}

func kill(t *testing.T, pid int32) {
	t.Helper()
	t.Cleanup(func() { syscall.Kill(int(pid), syscall.SIGKILL) })
}

// Started, its output logged line by line with its name, killed with
// SIGKILL: Down at once with the signal, then Up again after the backoff.
func TestStartKillRestart(t *testing.T) {
	var log testutil.SyncBuffer
	s := newSup(t, t.TempDir(), &log, spec("loop", `echo "hello from $$"; echo second line; exec sleep 100`, nil))
	defer s.Close()
	up := next(t, s, Up)
	kill(t, up.PID)
	assert.Equal(t, "node/7/proc/loop", up.Entity)
	assert.False(t, up.Adopted)
	require.Eventually(t, func() bool { return strings.Contains(log.String(), "second line") }, 5*time.Second, 10*time.Millisecond)
	assert.Contains(t, log.String(), `msg="hello from `+strconv.Itoa(int(up.PID))+`" daemon=loop`)
	assert.Contains(t, log.String(), `msg="second line" daemon=loop`)

	killed := time.Now()
	require.NoError(t, syscall.Kill(int(up.PID), syscall.SIGKILL))
	down := next(t, s, Down)
	t.Logf("kill -> Down event: %v", down.At.Sub(killed))
	assert.Equal(t, "signal killed", down.Exit)
	assert.True(t, down.Failed)
	st := s.Status()[0]
	assert.Equal(t, StateBackoff, st.State)
	assert.Equal(t, "signal killed", st.LastExit)
	assert.Equal(t, int64(50), st.BackoffMS)

	up2 := next(t, s, Up)
	kill(t, up2.PID)
	assert.NotEqual(t, up.PID, up2.PID)
	assert.GreaterOrEqual(t, up2.At.Sub(down.At), 50*time.Millisecond, "restarted after the backoff")
	st = s.Status()[0]
	assert.Equal(t, StateRunning, st.State)
	assert.Equal(t, 1, st.Restarts)
	assert.Equal(t, up2.PID, st.PID)
}

// A daemon that keeps failing is restarted with doubling delays, up to the
// limit; then LimitHit and no more restarts.
func TestBackoffAndLimit(t *testing.T) {
	s := newSup(t, t.TempDir(), nil, spec("crash", "exit 3", func(d *config.Daemon) { d.Limit = 3; d.Critical = true; d.Escalate = config.EscalateFence }))
	defer s.Close()
	var ups, downs []time.Time
	for i := 0; i < 4; i++ {
		ups = append(ups, next(t, s, Up).At)
		d := next(t, s, Down)
		assert.Equal(t, "exit 3", d.Exit)
		downs = append(downs, d.At)
	}
	lh := next(t, s, LimitHit)
	assert.True(t, lh.Critical)
	assert.Equal(t, config.EscalateFence, lh.Escalate)
	for i := 1; i < 4; i++ {
		gap := ups[i].Sub(downs[i-1])
		want := 50 * time.Millisecond << (i - 1)
		t.Logf("restart %d after %v (backoff %v)", i, gap, want)
		assert.GreaterOrEqual(t, gap, want)
	}
	st := s.Status()[0]
	assert.Equal(t, StateFailed, st.State)
	assert.True(t, st.Escalated)
	assert.Equal(t, 3, st.Restarts)
	select {
	case e := <-s.Events():
		t.Fatalf("no restart after the limit, got %+v", e)
	case <-time.After(500 * time.Millisecond):
	}
}

// on-failure does not restart a clean exit; never does not restart at all.
func TestPolicies(t *testing.T) {
	s := newSup(t, t.TempDir(), nil,
		spec("clean", "exit 0", nil),
		spec("once", "exit 1", func(d *config.Daemon) { d.Restart = config.RestartNever }))
	defer s.Close()
	got := map[string][]string{}
	for i := 0; i < 4; i++ {
		select {
		case e := <-s.Events():
			got[e.Name] = append(got[e.Name], e.Kind.String()+" "+e.Exit)
		case <-time.After(5 * time.Second):
			t.Fatalf("events: %v", got)
		}
	}
	assert.Equal(t, []string{"up ", "down exit 0"}, got["clean"])
	assert.Equal(t, []string{"up ", "down exit 1"}, got["once"])
	time.Sleep(200 * time.Millisecond)
	for _, d := range s.Status() {
		assert.Equal(t, StateStopped, d.State, d.Name)
	}
	assert.Empty(t, s.Events())
}

// A new supervisor (an agent restart) adopts the daemon still running
// instead of starting a second copy, keeps logging its output, and sees its
// exit.
func TestAdoptAfterRestart(t *testing.T) {
	dir := t.TempDir()
	var log testutil.SyncBuffer
	sp := spec("keep", `while :; do read line < /dev/null; echo tick; sleep 0.05; done`, nil)
	s1 := newSup(t, dir, nil, sp)
	up := next(t, s1, Up)
	kill(t, up.PID)
	require.NoError(t, s1.Close())
	require.NoError(t, syscall.Kill(int(up.PID), 0), "the daemon outlives its supervisor")

	s2 := newSup(t, dir, &log, sp)
	defer s2.Close()
	a := next(t, s2, Up)
	assert.True(t, a.Adopted)
	assert.Equal(t, up.PID, a.PID, "the same process, not a second copy")
	require.Eventually(t, func() bool { return strings.Contains(log.String(), `msg=tick daemon=keep`) }, 5*time.Second, 10*time.Millisecond,
		"the adopted daemon's output reaches the new agent's log")
	require.NoError(t, syscall.Kill(int(up.PID), syscall.SIGKILL))
	d := next(t, s2, Down)
	assert.Equal(t, "unknown", d.Exit, "not our child: the status is not ours to read")
	restarted := next(t, s2, Up)
	kill(t, restarted.PID)
	assert.False(t, restarted.Adopted)
}

// A saved PID that now names another process (same number, other start
// time) is not adopted: a new copy is started.
func TestReusedPIDNotAdopted(t *testing.T) {
	dir := t.TempDir()
	other := exec.Command("/bin/sleep", "100")
	require.NoError(t, other.Start())
	defer func() { other.Process.Kill(); other.Wait() }()
	ticks, err := StartTicks(other.Process.Pid)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "daemons"), 0o700))
	b, _ := json.Marshal(map[string]saved{"svc": {PID: int32(other.Process.Pid), Ticks: ticks + 1, Command: "/bin/sh"}})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "daemons", "state.json"), b, 0o600))

	s := newSup(t, dir, nil, spec("svc", "exec sleep 100", nil))
	defer s.Close()
	up := next(t, s, Up)
	kill(t, up.PID)
	assert.False(t, up.Adopted)
	assert.NotEqual(t, int32(other.Process.Pid), up.PID)
}

// Adoption from a pidfile: the process that wrote it is adopted; a PID
// whose process started after the pidfile was written is not.
func TestPidFile(t *testing.T) {
	dir := t.TempDir()
	p := exec.Command("/bin/sleep", "100")
	require.NoError(t, p.Start())
	defer func() { p.Process.Kill(); p.Wait() }()
	pf := filepath.Join(dir, "db.pid")
	require.NoError(t, os.WriteFile(pf, []byte(strconv.Itoa(p.Process.Pid)+"\n"), 0o644))
	sp := config.Daemon{Name: "db", PidFile: pf, Restart: config.RestartNever}
	sp.ApplyDefaults()
	s := newSup(t, filepath.Join(dir, "a"), nil, sp)
	up := next(t, s, Up)
	assert.True(t, up.Adopted)
	assert.Equal(t, int32(p.Process.Pid), up.PID)
	require.NoError(t, s.Close())

	// The same file, dated an hour before the process started: reused.
	old := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(pf, old, old))
	s = newSup(t, filepath.Join(dir, "b"), nil, sp)
	defer s.Close()
	d := next(t, s, Down)
	assert.Equal(t, "not running", d.Exit)
	_, _, err := ReadPidFile(pf)
	assert.ErrorIs(t, err, ErrNoProcess)
	assert.Contains(t, err.Error(), "reused")
}

// Environment, working directory, user and group of a started daemon.
func TestUserEnvWorkdir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a daemon as another user")
	}
	var log testutil.SyncBuffer
	wd, err := os.MkdirTemp("", "fmagent-daemon-wd-") // t.TempDir's parent is 0700: nobody could not enter it
	require.NoError(t, err)
	defer os.RemoveAll(wd)
	require.NoError(t, os.Chmod(wd, 0o755))
	s := newSup(t, t.TempDir(), &log, spec("who", `echo "uid=$(id -u) gid=$(id -g) a=$A dir=$(pwd)"`, func(d *config.Daemon) {
		d.Env, d.WorkDir, d.User, d.Group, d.Restart = []string{"A=hello"}, wd, "nobody", "nogroup", config.RestartNever
	}))
	defer s.Close()
	next(t, s, Up)
	d := next(t, s, Down)
	require.Equal(t, "exit 0", d.Exit)
	require.Eventually(t, func() bool { return strings.Contains(log.String(), "uid=65534") }, 5*time.Second, 10*time.Millisecond, log.String())
	assert.Contains(t, log.String(), `msg="uid=65534 gid=65534 a=hello dir=`+wd+`" daemon=who`)
}

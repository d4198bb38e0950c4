package procwatch

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bound is how long an exit may take to be reported. It is generous for a
// loaded CI machine; on an idle one exits arrive in well under a millisecond.
const bound = 5 * time.Second

func newWatcher(t *testing.T) *Watcher {
	t.Helper()
	w, err := New()
	require.NoError(t, err)
	t.Cleanup(func() { w.Close() })
	return w
}

// start runs a real child process; the test cleanup kills and reaps it.
func start(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

func pid(cmd *exec.Cmd) int32 { return int32(cmd.Process.Pid) }

func recv(t *testing.T, w *Watcher) Exit {
	t.Helper()
	select {
	case e, ok := <-w.Events():
		require.True(t, ok, "Events closed")
		return e
	case <-time.After(bound):
		t.Fatalf("no exit within %v", bound)
		return Exit{}
	}
}

func noExit(t *testing.T, w *Watcher, d time.Duration) {
	t.Helper()
	select {
	case e := <-w.Events():
		t.Fatalf("unexpected exit %+v", e)
	case <-time.After(d):
	}
}

// waitZombie waits until pid is a zombie: exited, not yet reaped.
func waitZombie(t *testing.T, pid int32) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
		require.NoError(t, err)
		// pid (comm) S ...
		s := string(b)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 && f[0] == "Z" {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("pid %d did not become a zombie", pid)
}

func TestKilledProcess(t *testing.T) {
	w := newWatcher(t)
	cmd := start(t, "sleep", "60")
	require.NoError(t, w.Watch(pid(cmd), 42))
	noExit(t, w, 50*time.Millisecond) // alive: nothing yet

	killed := time.Now()
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	e := recv(t, w)
	assert.Equal(t, Exit{PID: pid(cmd), Key: 42}, e)
	t.Logf("exit reported %v after SIGKILL", time.Since(killed))
	assert.Equal(t, 0, w.Len())
}

func TestProcessExitsByItself(t *testing.T) {
	w := newWatcher(t)
	cmd := start(t, "sleep", "0.2")
	began := time.Now()
	require.NoError(t, w.Watch(pid(cmd), 7))
	e := recv(t, w)
	assert.Equal(t, Exit{PID: pid(cmd), Key: 7}, e)
	assert.GreaterOrEqual(t, time.Since(began), 150*time.Millisecond, "exit reported before the process exited")
}

func TestAlreadyReaped(t *testing.T) {
	w := newWatcher(t)
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run()) // exited and reaped: pidfd_open gets ESRCH
	require.NoError(t, w.Watch(pid(cmd), 9))
	assert.Equal(t, Exit{PID: pid(cmd), Key: 9}, recv(t, w))
}

func TestZombie(t *testing.T) {
	w := newWatcher(t)
	cmd := start(t, "true")
	waitZombie(t, pid(cmd)) // exited, not reaped: the pidfd is readable at once
	require.NoError(t, w.Watch(pid(cmd), 11))
	assert.Equal(t, Exit{PID: pid(cmd), Key: 11}, recv(t, w))
}

func TestManyProcesses(t *testing.T) {
	const n = 200
	w := newWatcher(t)
	cmds := make([]*exec.Cmd, n)
	want := make(map[Exit]bool, n)
	for i := range cmds {
		cmds[i] = start(t, "sleep", "60")
		key := uint64(1000 + i)
		require.NoError(t, w.Watch(pid(cmds[i]), key))
		want[Exit{PID: pid(cmds[i]), Key: key}] = true
	}
	assert.Equal(t, n, w.Len())
	// Kill them all before reading any exit: the queue must hold them.
	for _, c := range cmds {
		require.NoError(t, c.Process.Signal(syscall.SIGKILL))
	}
	for range n {
		e := recv(t, w)
		require.True(t, want[e], "unexpected or duplicate exit %+v", e)
		delete(want, e)
	}
	assert.Empty(t, want)
	noExit(t, w, 50*time.Millisecond)
	assert.Equal(t, 0, w.Len())
}

func TestSamePIDTwoKeys(t *testing.T) {
	w := newWatcher(t)
	cmd := start(t, "sleep", "60")
	require.NoError(t, w.Watch(pid(cmd), 1))
	require.NoError(t, w.Watch(pid(cmd), 2))
	require.NoError(t, cmd.Process.Kill())
	got := map[uint64]bool{recv(t, w).Key: true, recv(t, w).Key: true}
	assert.Equal(t, map[uint64]bool{1: true, 2: true}, got)
}

func TestUnwatch(t *testing.T) {
	w := newWatcher(t)
	quiet := start(t, "sleep", "60")
	control := start(t, "sleep", "60")
	require.NoError(t, w.Watch(pid(quiet), 1))
	require.NoError(t, w.Watch(pid(control), 2))
	w.Unwatch(1)
	w.Unwatch(12345) // not watched: no-op
	require.NoError(t, quiet.Process.Kill())
	waitZombie(t, pid(quiet)) // its pidfd would be readable now, had it stayed
	require.NoError(t, control.Process.Kill())
	assert.Equal(t, Exit{PID: pid(control), Key: 2}, recv(t, w))
	noExit(t, w, 100*time.Millisecond)
}

func TestWatchReplacesKey(t *testing.T) {
	w := newWatcher(t)
	old := start(t, "sleep", "60")
	cur := start(t, "sleep", "60")
	require.NoError(t, w.Watch(pid(old), 5))
	require.NoError(t, w.Watch(pid(cur), 5))
	assert.Equal(t, 1, w.Len())
	require.NoError(t, old.Process.Kill())
	waitZombie(t, pid(old))
	require.NoError(t, cur.Process.Kill())
	assert.Equal(t, Exit{PID: pid(cur), Key: 5}, recv(t, w))
	noExit(t, w, 100*time.Millisecond)
}

func TestInvalidPID(t *testing.T) {
	w := newWatcher(t)
	assert.Error(t, w.Watch(0, 1))
	assert.Error(t, w.Watch(-5, 1))
}

func TestClose(t *testing.T) {
	w, err := New()
	require.NoError(t, err)
	cmd := start(t, "sleep", "60")
	require.NoError(t, w.Watch(pid(cmd), 1))
	require.NoError(t, w.Close())
	_, ok := <-w.Events()
	assert.False(t, ok, "Events must be closed by Close")
	assert.ErrorIs(t, w.Watch(pid(cmd), 2), ErrClosed)
	assert.NoError(t, w.Close(), "second Close")
}

// TestReapedAfterWatch checks that a watch follows the process, not its PID
// number: the Exit is reported even when the process is reaped (its PID free
// for reuse) before the watcher reports it.
func TestReapedAfterWatch(t *testing.T) {
	w := newWatcher(t)
	cmd := exec.Command("sleep", "0.05")
	require.NoError(t, cmd.Start())
	require.NoError(t, w.Watch(pid(cmd), 3))
	require.NoError(t, cmd.Wait()) // reaped
	assert.Equal(t, Exit{PID: pid(cmd), Key: 3}, recv(t, w))
}

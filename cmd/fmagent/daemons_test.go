package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
)

// mainEnv makes the test binary fmagent itself (see TestMain), so that a
// test can run, SIGKILL and restart a real agent process.
const mainEnv = "FMAGENT_TEST_RUN_MAIN"

func startFmagent(t *testing.T, cfg, logPath string) *exec.Cmd {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	require.NoError(t, err)
	defer logf.Close()
	cmd := exec.Command(os.Args[0], "-config", cfg)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	return cmd
}

func daemons(socket string) ([]api.Daemon, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, socket)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Daemons(ctx)
}

// A real fmagent process starts its daemon; the agent is killed with
// SIGKILL (a crash: nothing saved at exit); the daemon keeps running; the
// restarted agent adopts it, by saved PID and start time, instead of
// starting a second copy, and still sees its exit and restarts it.
func TestAgentCrashAdoptsDaemon(t *testing.T) {
	dir := t.TempDir()
	marker := fmt.Sprintf("fmagent-crash-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	var pids []int32 // the daemons started: they outlive their agent by design
	t.Cleanup(func() {
		for _, p := range pids {
			syscall.Kill(int(p), syscall.SIGKILL)
		}
	})
	x, y := rand.IntN(200)+20, rand.IntN(250)+1
	port := 20000 + rand.IntN(20000)
	sock := filepath.Join(dir, "fmagent.sock")
	cfg := filepath.Join(dir, "fmagent.toml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`
node_id = 1
cluster_id = %d
allow_alone = true
[networks.a]
group = "239.254.%d.%d"
port = %d
[networks.b]
group = "239.254.%d.%d"
port = %d
[paths]
state_dir = %q
socket = %q
shm = "fmagent-crash-test-%d"
[metrics]
listen = ""
[[daemons]]
name = "loop"
command = "/bin/sh"
args = ["-c", "while :; do sleep 0.1; done # %s"]
backoff = "50ms"
`, rand.IntN(1<<30)+1000, x, y, port, x+1, y, port, dir, sock, os.Getpid(), marker)), 0o600))
	logPath := filepath.Join(dir, "agent.log")
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("agent log:\n%s", b)
		}
	}()

	running := func() api.Daemon {
		var d api.Daemon
		require.Eventually(t, func() bool {
			ds, err := daemons(sock)
			if err != nil || len(ds) != 1 {
				return false
			}
			d = ds[0]
			return d.State == "running" && d.PID != 0
		}, 15*time.Second, 50*time.Millisecond)
		pids = append(pids, d.PID)
		return d
	}

	agent1 := startFmagent(t, cfg, logPath)
	first := running()
	require.False(t, first.Adopted)

	require.NoError(t, agent1.Process.Signal(syscall.SIGKILL))
	agent1.Wait()
	require.NoError(t, syscall.Kill(int(first.PID), 0), "the daemon outlives its agent's crash")

	startFmagent(t, cfg, logPath)
	second := running()
	require.True(t, second.Adopted, "adopted: %+v", second)
	require.Equal(t, first.PID, second.PID, "the same process, not a second copy")
	out, _ := exec.Command("pgrep", "-f", marker).Output()
	require.Equal(t, []string{strconv.Itoa(int(first.PID))}, strings.Fields(string(out)), "one copy")

	require.NoError(t, syscall.Kill(int(first.PID), syscall.SIGKILL))
	var third api.Daemon
	require.Eventually(t, func() bool {
		ds, err := daemons(sock)
		if err != nil || len(ds) != 1 {
			return false
		}
		third = ds[0]
		return third.State == "running" && third.PID != 0 && third.PID != first.PID
	}, 15*time.Second, 50*time.Millisecond)
	pids = append(pids, third.PID)
	require.Equal(t, "unknown", third.LastExit, "an adopted process is not our child: its status is not ours to read")
	require.False(t, third.Adopted)
}

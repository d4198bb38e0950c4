package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/wire"
)

// childAgentEnv makes the test binary run one agent from the JSON
// configuration in the variable (see TestMain): a real process that a test
// can kill -9, which an agent run in the test's own process cannot be.
const childAgentEnv = "FMAGENT_TEST_AGENT"

func runChildAgent(js string) int {
	var cfg config.Config
	if err := json.Unmarshal([]byte(js), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child agent:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", cfg.NodeID)
	if err := Run(ctx, &cfg, log); err != nil {
		fmt.Fprintln(os.Stderr, "child agent:", err)
		return 1
	}
	return 0
}

// startChildAgent runs cfg in a child process; the returned func kills it
// with SIGKILL (no goodbye: a crash) and removes what it leaves behind.
func startChildAgent(t *testing.T, cfg *config.Config) (kill func()) {
	t.Helper()
	_, kill = startChildAgentProc(t, cfg)
	return kill
}

// startChildAgentProc is startChildAgent that also returns the child's
// process, for a test that times a kill from its signal: kill() returns
// only once the process is reaped, and a killed agent frees its memory
// last, at SCHED_IDLE (internal/connhold), which beside a CPU hog takes
// seconds after its peers have long judged it down.
func startChildAgentProc(t *testing.T, cfg *config.Config) (proc *os.Process, kill func()) {
	t.Helper()
	js, err := json.Marshal(cfg)
	require.NoError(t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childAgentEnv+"="+string(js))
	cmd.Stderr = t.Output()
	require.NoError(t, cmd.Start())
	done := false
	kill = func() {
		if done {
			return
		}
		done = true
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.Remove(filepath.Join("/dev/shm", cfg.ShmPath()))
		_ = os.Remove(cfg.ShmPath())
	}
	t.Cleanup(kill)
	return cmd.Process, kill
}

// A node killed with SIGKILL raises node-unreachable (critical) in every
// survivor's shared memory, until it is started again.
func TestNodeUnreachableRealAgents(t *testing.T) {
	tc := startCluster(t, 2)
	c1 := tc.nodes[0].cfg
	cfg := newTestConfig(t, 3, c1.ClusterID, c1.Networks[0].Group, c1.Networks[1].Group, c1.Networks[0].Port, filepath.Dir(c1.Paths.StateDir))
	proc, kill := startChildAgentProc(t, cfg)
	up3 := func(nd *testNode) func() bool {
		return func() bool {
			st, e := nd.state("node/3")
			if st != wire.StateUp {
				return false
			}
			_, alarmed := e.FindAlarm([]byte(core.UnreachableCause))
			return !alarmed
		}
	}
	for _, nd := range tc.nodes {
		waitShm(t, nd, 10*time.Second, "node 3 up", up3(nd))
	}
	killed := time.Now() // from the signal, not the reap (startChildAgentProc)
	require.NoError(t, proc.Signal(syscall.SIGKILL))
	for _, nd := range tc.nodes {
		waitShm(t, nd, 5*time.Second, "node-unreachable on node/3", func() bool {
			st, e := nd.state("node/3")
			if st != wire.StateDown {
				return false
			}
			a, ok := e.FindAlarm([]byte(core.UnreachableCause))
			return ok && a.Severity == wire.SevCritical
		})
	}
	t.Logf("kill -9 of node 3 to node-unreachable in both survivors' shared memory: %v (detection %v)",
		time.Since(killed), cfg.Timing.Detection())

	// Back: cleared.
	kill() // reaped (and its segment removed) before it starts again
	startChildAgent(t, cfg)
	for _, nd := range tc.nodes {
		waitShm(t, nd, 10*time.Second, "node 3 back, alarm cleared", up3(nd))
	}
	var e shmem.Entity
	require.NoError(t, tc.nodes[0].shm.ReadByName("node/3", &e))
	require.Zero(t, e.NAlarms)
}

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// threadPolicies returns each thread of pid as "FIFO n" or "OTHER".
func threadPolicies(t *testing.T, pid int) map[int]string {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	require.NoError(t, err)
	out := map[int]string{}
	for _, e := range tasks {
		tid, err := strconv.Atoi(e.Name())
		require.NoError(t, err)
		a, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			continue // the thread ended meanwhile
		}
		switch a.Policy {
		case unix.SCHED_FIFO:
			out[tid] = fmt.Sprintf("FIFO %d", a.Priority)
		case 0: // SCHED_OTHER (SCHED_NORMAL)
			out[tid] = "OTHER"
		default:
			out[tid] = fmt.Sprintf("policy %d", a.Policy)
		}
	}
	return out
}

// The heartbeat loop runs above every other thread of the agent
// (fmagent.toml(5), [realtime] priority): at realtime.priority = 2, the
// lowest allowed, exactly one thread is at SCHED_FIFO 2 and every other
// thread at SCHED_FIFO 1 or the normal policy. (At priority = 1, now
// refused, every SCHED_FIFO thread of the agent ran at 1: measured 8 at
// FIFO 1 and 3 at the normal policy, so the loop preempted none of them.)
func TestRealtimeLoopAboveOtherThreads(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_NICE) for SCHED_FIFO; CI runs as root")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "fmagent.toml")
	shm := fmt.Sprintf("fmagent-rttest-%d", os.Getpid())
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`node_id = 5
cluster_id = %d
allow_alone = true
[networks.a]
group = "239.192.91.1"
port = %d
[networks.b]
group = "239.192.91.2"
port = %d
[realtime]
priority = 2
lock_memory = false
[paths]
state_dir = %q
shm = %q
[metrics]
listen = ""
`, 60000+os.Getpid()%5000, 20000+os.Getpid()%20000, 20000+os.Getpid()%20000, filepath.Join(dir, "state"), shm)), 0o644))
	// At 1, SCHED_FIFO's lowest, the other threads would share the loop's
	// priority: refused, with the reason, before anything starts.
	one := filepath.Join(dir, "one.toml")
	require.NoError(t, os.WriteFile(one, []byte("[realtime]\npriority = 1\n"), 0o644))
	out, err := exec.Command(fmagentBin(t), "-check-config", one).CombinedOutput()
	require.Error(t, err, "priority = 1 must be refused: %s", out)
	assert.Contains(t, string(out), one+":2:12: realtime.priority = 1: must be in 2..98: the agent's other threads run at SCHED_FIFO one below the heartbeat loop")

	logPath := filepath.Join(dir, "agent.log")
	cmd := startFmagent(t, cfg, logPath)

	var log string
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(logPath)
		log = string(b)
		return strings.Contains(log, "real-time path")
	}, 20*time.Second, 50*time.Millisecond, "the agent reports its real-time path")
	require.Contains(t, log, "sched_fifo=true priority=2 other_threads_fifo=true", log)
	// The loop's thread raises itself to realtime.priority as it starts,
	// after the log line; on a loaded machine that can take a while.
	var counts map[string]int
	require.Eventually(t, func() bool {
		counts = map[string]int{}
		for _, p := range threadPolicies(t, cmd.Process.Pid) {
			counts[p]++
		}
		return counts["FIFO 2"] > 0
	}, 20*time.Second, 20*time.Millisecond, "the loop's thread at realtime.priority")
	assert.Equal(t, 1, counts["FIFO 2"], "one thread, the loop, at realtime.priority: %v", counts)
	for p, n := range counts {
		assert.Contains(t, []string{"FIFO 2", "FIFO 1", "OTHER"}, p, "%d threads at %s: every other thread below the loop (%v)", n, p, counts)
	}
	assert.Positive(t, counts["FIFO 1"], "the runtime's threads present at start run one below the loop: %v", counts)
	t.Logf("threads of the agent at realtime.priority = 2: %v", counts)
}

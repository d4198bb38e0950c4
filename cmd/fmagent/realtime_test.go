package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// eachThread returns describe(tid) for each thread of pid that it
// describes (false: the thread ended meanwhile).
func eachThread(t *testing.T, pid int, describe func(tid int) (string, bool)) map[int]string {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	require.NoError(t, err)
	out := map[int]string{}
	for _, e := range tasks {
		tid, err := strconv.Atoi(e.Name())
		require.NoError(t, err)
		if d, ok := describe(tid); ok {
			out[tid] = d
		}
	}
	return out
}

// threadPolicies returns each thread of pid as "FIFO prio" or "OTHER nice".
func threadPolicies(t *testing.T, pid int) map[int]string {
	t.Helper()
	return eachThread(t, pid, func(tid int) (string, bool) {
		a, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			return "", false
		}
		switch a.Policy {
		case unix.SCHED_FIFO:
			return fmt.Sprintf("FIFO %d", a.Priority), true
		case 0: // SCHED_OTHER (SCHED_NORMAL)
			return fmt.Sprintf("OTHER %d", a.Nice), true
		case unix.SCHED_BATCH:
			return fmt.Sprintf("BATCH %d", a.Nice), true
		case unix.SCHED_IDLE:
			return "IDLE", true
		default:
			return fmt.Sprintf("policy %d", a.Policy), true
		}
	})
}

// The heartbeat loop runs above every other thread of the agent
// (fmagent.toml(5), [realtime] priority): at realtime.priority = 1, the
// lowest, exactly two threads are at SCHED_FIFO 1 (the loop, and the exit
// watch's events thread, which hands a peer's end to the core), one at
// SCHED_FIFO 2 (the exit watch's connection holder, which does nothing
// but hold its connections and wake on their ends: one above, so that
// it is among the first to run its exit when the agent is killed,
// internal/connhold), one at SCHED_IDLE (connhold's IdleLast: asleep with
// every signal blocked, so that it frees the memory of a killed agent
// last), two (the files' writers, transport.Background: the table's and
// the membership's) at SCHED_BATCH nice -20 (never below the other
// threads: a stop-the-world would wait for them, agent's backgroundNice),
// and every other thread at
// the normal policy, nice -20 (transport.SetProcessNice), although the
// agent is started from a thread at SCHED_FIFO 5, as by `chrt -f 5`.
func TestRealtimeLoopAboveOtherThreads(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_NICE) for SCHED_FIFO; CI runs as root")
	}
	dir := t.TempDir()
	cfg := rtTestConfig(t, dir, "priority = 1")
	logPath := filepath.Join(dir, "agent.log")
	// Started from a thread at SCHED_FIFO 5 without reset on fork, as by
	// `chrt -f 5 fmagent`: the agent inherits it on its first thread.
	runtime.LockOSThread()
	before, err := unix.SchedGetAttr(0, 0)
	require.NoError(t, err)
	require.NoError(t, unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 5}, 0))
	cmd := startFmagent(t, cfg, logPath)
	before.Size = unix.SizeofSchedAttr
	require.NoError(t, unix.SchedSetAttr(0, before, 0), "the test's thread back to its policy")
	runtime.UnlockOSThread()

	log := waitRealtimeLine(t, logPath)
	require.Contains(t, log, "sched_fifo=true priority=1 other_threads_nice=-20", log)
	// The loop's thread raises itself to realtime.priority as it starts,
	// after the log line; on a loaded machine that can take a while.
	var counts map[string]int
	require.Eventually(t, func() bool {
		counts = map[string]int{}
		for _, p := range threadPolicies(t, cmd.Process.Pid) {
			counts[p]++
		}
		return counts["FIFO 1"] > 1 && counts["BATCH -20"] > 1
	}, 20*time.Second, 20*time.Millisecond, "the loop's thread at realtime.priority, the files' writers at the other threads' nice value")
	assert.Equal(t, 2, counts["FIFO 1"], "two threads, the loop and the exit watch's events, at realtime.priority: %v", counts)
	assert.Equal(t, 1, counts["FIFO 2"], "one thread, the exit watch's connection holder, one above: %v", counts)
	assert.Equal(t, 2, counts["BATCH -20"], "two threads, the files' writers, at SCHED_BATCH nice -20: %v", counts)
	assert.Equal(t, 1, counts["IDLE"], "one thread, the exit watch's last, at SCHED_IDLE: %v", counts)
	for p, n := range counts {
		assert.Contains(t, []string{"FIFO 1", "FIFO 2", "BATCH -20", "IDLE", "OTHER -20"}, p, "%d threads at %s: every other thread at the normal policy, nice -20 (%v)", n, p, counts)
	}
	assert.Positive(t, counts["OTHER -20"], "the other threads: %v", counts)
	var allowed unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &allowed))
	if allowed.Count() > 1 {
		assert.NotContains(t, log, "may run on one CPU only", "two CPUs or more: no warning")
	}
	t.Logf("threads of the agent at realtime.priority = 1: %v", counts)
}

// rtConfigs counts rtTestConfig's configurations: each is a cluster of
// its own (port, cluster ID, segment), as the agents may run together.
var rtConfigs int

// rtTestConfig writes the configuration of this file's tests, with extra
// lines appended to its [realtime] table.
func rtTestConfig(t *testing.T, dir, realtime string) string {
	t.Helper()
	rtConfigs++
	k := os.Getpid() + 7*rtConfigs
	cfg := filepath.Join(dir, "fmagent.toml")
	port := 20000 + k%20000
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`node_id = 6
cluster_id = %d
allow_alone = true
[networks.a]
group = "239.192.92.1"
port = %d
[networks.b]
group = "239.192.92.2"
port = %d
[realtime]
lock_memory = false
%s
[paths]
state_dir = %q
shm = %q
[metrics]
listen = ""
`, 60000+k%5000, port, port, realtime, filepath.Join(dir, "state"), fmt.Sprintf("fmagent-rttest-%d-%d", os.Getpid(), rtConfigs))), 0o644))
	return cfg
}

// cpusAllowed returns each thread of pid's Cpus_allowed_list.
func cpusAllowed(t *testing.T, pid int) map[int]string {
	t.Helper()
	return eachThread(t, pid, func(tid int) (string, bool) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
		if err != nil {
			return "", false
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
				return strings.TrimSpace(v), true
			}
		}
		return "", false
	})
}

// realtime.cpus pins every thread of the agent, those it creates after
// start included, to the CPUs listed (fmagent.toml(5)); a CPU the process
// may not run on is refused at start with the reason.
func TestRealtimeCPUsPinEveryThread(t *testing.T) {
	var allowed unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &allowed))
	cpu := -1
	for c := 0; c < 1024; c++ {
		if allowed.IsSet(c) {
			cpu = c // the last this test may use
		}
	}
	require.GreaterOrEqual(t, cpu, 0)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "agent.log")
	cmd := startFmagent(t, rtTestConfig(t, dir, fmt.Sprintf("cpus = [%d]", cpu)), logPath)
	log := waitRealtimeLine(t, logPath)
	require.Contains(t, log, fmt.Sprintf("cpus=[%d]", cpu), log)
	if os.Geteuid() == 0 { // SCHED_FIFO permitted: one CPU is warned about
		require.Contains(t, log, "the agent may run on one CPU only", "the warning for one CPU")
	}
	// Threads Go creates later (the loop's, the table writer's, those the
	// scheduler adds) inherit it: look again once the agent has run a while.
	want := strconv.Itoa(cpu)
	for _, wait := range []time.Duration{0, time.Second} {
		time.Sleep(wait)
		threads := cpusAllowed(t, cmd.Process.Pid)
		require.NotEmpty(t, threads)
		for tid, list := range threads {
			assert.Equal(t, want, list, "thread %d of %d", tid, len(threads))
		}
	}

	// Not pinned by the configuration but started on one CPU (a taskset, a
	// cpuset): the same warning.
	if os.Geteuid() == 0 {
		dir := t.TempDir()
		logPath := filepath.Join(dir, "agent.log")
		var one unix.CPUSet
		one.Set(cpu)
		runtime.LockOSThread()
		var before unix.CPUSet
		require.NoError(t, unix.SchedGetaffinity(0, &before))
		require.NoError(t, unix.SchedSetaffinity(0, &one))
		startFmagent(t, rtTestConfig(t, dir, ""), logPath)
		require.NoError(t, unix.SchedSetaffinity(0, &before), "the test's thread back to its CPUs")
		runtime.UnlockOSThread()
		require.Eventually(t, func() bool {
			b, _ := os.ReadFile(logPath)
			return strings.Contains(string(b), "real-time path")
		}, 20*time.Second, 50*time.Millisecond, "the agent reports its real-time path")
		b, _ := os.ReadFile(logPath)
		assert.Contains(t, string(b), "the agent may run on one CPU only", string(b))
		assert.Contains(t, string(b), "cpus=[]", "not pinned by its configuration")
	}

	if allowed.Count() < 1024 {
		dir := t.TempDir()
		logPath := filepath.Join(dir, "agent.log")
		bad := 1023
		for allowed.IsSet(bad) {
			bad--
		}
		cmd := startFmagent(t, rtTestConfig(t, dir, fmt.Sprintf("cpus = [%d]", bad)), logPath)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			require.Error(t, err, "the agent must refuse to start")
		case <-time.After(20 * time.Second):
			t.Fatal("the agent did not refuse a CPU it may not run on")
		}
		b, _ := os.ReadFile(logPath)
		assert.Contains(t, string(b), fmt.Sprintf("realtime.cpus = [%d]: CPU %d is not one this process may run on", bad, bad), string(b))
	}
}

// An agent runs its garbage collector at GOGC 400 (agent/rtloop.go:
// gcPercent says why), unless the environment sets GOGC, and says which at
// start.
func TestAgentGCPercent(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want string
	}{
		{"", "gc_percent=400"},
		{"150", "gc_percent=150"},
		{"off", "gc_percent=-1"},
	} {
		t.Run("GOGC="+tc.env, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("GOGC", tc.env)
			} else if v, ok := os.LookupEnv("GOGC"); ok {
				os.Unsetenv("GOGC")
				t.Cleanup(func() { os.Setenv("GOGC", v) })
			}
			dir := t.TempDir()
			logPath := filepath.Join(dir, "agent.log")
			startFmagent(t, rtTestConfig(t, dir, ""), logPath)
			log := waitRealtimeLine(t, logPath)
			assert.Contains(t, log, tc.want+" ", log)
		})
	}
}

// waitRealtimeLine waits for the agent logging to logPath to report its
// real-time path at start, and returns the log so far.
func waitRealtimeLine(t *testing.T, logPath string) string {
	t.Helper()
	var log string
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(logPath)
		log = string(b)
		return strings.Contains(log, "real-time path")
	}, 20*time.Second, 50*time.Millisecond, "the agent reports its real-time path")
	return log
}

// With [realtime] trace_dir set, a late tick of the real-time loop (the
// whole agent stopped for 300 ms, as a paused virtual machine would be)
// leaves an execution trace in the directory, and a log line naming it.
func TestLateTickTraced(t *testing.T) {
	dir := t.TempDir()
	traces := filepath.Join(dir, "traces")
	cfg := rtTestConfig(t, dir, fmt.Sprintf("trace_dir = %q", traces))
	logPath := filepath.Join(dir, "agent.log")
	cmd := startFmagent(t, cfg, logPath)
	waitRealtimeLine(t, logPath)
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "execution traces of late ticks")
	}, 10*time.Second, 20*time.Millisecond, "the recorder started")

	require.NoError(t, cmd.Process.Signal(syscall.SIGSTOP))
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGCONT))
	var file string
	require.Eventually(t, func() bool {
		m, _ := filepath.Glob(filepath.Join(traces, "late-*.trace"))
		if len(m) > 0 {
			file = m[0]
		}
		return file != ""
	}, 10*time.Second, 20*time.Millisecond, "a trace file after the late tick")
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Greater(t, len(b), 16)
	assert.True(t, bytes.HasPrefix(b, []byte("go 1.")) && bytes.Contains(b[:16], []byte(" trace")), "an execution trace's header: %q", b[:16])
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "file="+file)
	}, 5*time.Second, 20*time.Millisecond, "the log names the file")
}

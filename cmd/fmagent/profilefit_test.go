package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/client"
)

// fitMsg is the start of the agent's warning that the machine cannot hold
// its timing profile (agent/profilefit.go).
const fitMsg = "this machine cannot hold the timing profile"

// A real agent whose process is stopped for longer than its profile
// tolerates (the 20 ms profile: 4 ms × 5, (5 − 1) × 4 ms = 16 ms), as a
// paused VM or a descheduled vCPU would stop it, says so: the warning in
// its log with the figures and the profile that would hold, and the count
// and the worst wake-up in its status.
func TestStoppedAgentSaysTheMachineCannotHoldItsProfile(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "agent.log")
	cmd := startFmagent(t, rtTestConfig(t, dir, ""), logPath)
	socket := filepath.Join(dir, "state", "fmagent.sock")
	status := func() (overruns uint64, worst time.Duration, err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := client.Dial(ctx, socket)
		if err != nil {
			return 0, 0, err
		}
		defer c.Close()
		st, err := c.Status(ctx)
		if err != nil {
			return 0, 0, err
		}
		return st.Timing.Overruns, time.Duration(st.Timing.WorstWake), nil
	}
	require.Eventually(t, func() bool { _, _, err := status(); return err == nil }, 20*time.Second, 50*time.Millisecond, "the agent serves")
	time.Sleep(200 * time.Millisecond) // past the loop's first wake-up, whose lateness is the start's

	// A stop that falls in the loop's yield or lock wait (microseconds
	// every few milliseconds) is the loop's own lateness, not the
	// machine's: then the agent is stopped again, at most three times.
	const stop = 250 * time.Millisecond
	var log string
	warned := func() bool {
		b, _ := os.ReadFile(logPath)
		log = string(b)
		return strings.Contains(log, fitMsg)
	}
	for try := 0; try < 3 && !warned(); try++ {
		require.NoError(t, cmd.Process.Signal(syscall.SIGSTOP))
		time.Sleep(stop)
		require.NoError(t, cmd.Process.Signal(syscall.SIGCONT))
		deadline := time.Now().Add(3 * time.Second) // the agent logs once a second
		for time.Now().Before(deadline) && !warned() {
			time.Sleep(50 * time.Millisecond)
		}
	}
	require.True(t, warned(), "the agent warns that the machine cannot hold its profile:\n%s", log)
	line := log[strings.Index(log, fitMsg):]
	line = line[:strings.IndexByte(line, '\n')]
	assert.Contains(t, line, "profile=20ms")
	assert.Contains(t, line, "tolerance=16ms")
	assert.Contains(t, line, "no named profile tolerates stalls like the worst seen", "a 250 ms stop is past the 50 ms profile's 40 ms")

	overruns, worst, err := status()
	require.NoError(t, err)
	assert.Positive(t, overruns, "the stop counted as an overrun")
	assert.GreaterOrEqual(t, worst, stop-20*time.Millisecond, "the worst wake-up is the stop (less at most the time to the loop's next deadline)")
}

package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/wire"
)

// The fake agent supervises two daemons.
var fakeDaemons = []api.Daemon{
	{Name: "billing", Entity: "node/1/proc/billing", State: "running", PID: 4242, Restarts: 2, LastExit: "signal killed", BackoffMS: 400, Critical: true},
	{Name: "db", Entity: "node/1/proc/db", State: "failed", Restarts: 5, LastExit: "exit 3", BackoffMS: 30000, Critical: true, Escalated: true},
}

func (h *handler) Daemons(ctx context.Context) ([]api.Daemon, error) {
	return fakeDaemons, nil
}

func TestDaemons(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	out := a.ok("daemons")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	assert.Equal(t, []string{"NAME", "PID", "STATE", "ADOPTED", "RESTARTS", "LAST", "EXIT", "BACKOFF", "CRITICAL", "ENTITY"}, strings.Fields(lines[0]))
	assert.Equal(t, []string{"billing", "4242", "running", "no", "2", "signal", "killed", "400ms", "yes", "node/1/proc/billing"}, strings.Fields(lines[1]))
	assert.Equal(t, []string{"db", "-", "failed", "ESCALATED", "no", "5", "exit", "3", "30s", "yes", "node/1/proc/db"}, strings.Fields(lines[2]))

	var ds []api.Daemon
	a.json(&ds, "daemons")
	assert.Equal(t, fakeDaemons, ds)
}

func TestStatusWatchdog(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	st, err := a.c.Status(ctxT(t))
	require.NoError(t, err)
	now := time.Now()
	st.Watchdog = &api.WatchdogStatus{
		Watchdogs: []string{"/dev/watchdog0", "systemd"}, Identity: "iTCO_wdt", TimeoutMS: 10000, PeriodMS: 3333,
		Kicking: false, Reason: "stalled loop: timer", LastKick: now.Add(-5 * time.Second), Kicks: 99,
		BootStatus: "watchdog reset (0x20)", SelfFence: true,
		Loops: []api.LoopHealth{
			{Name: "receive-a", Healthy: true, LastProgress: now},
			{Name: "timer", Healthy: false, LastProgress: now.Add(-5 * time.Second), BusyMS: 5000},
		},
	}
	a.h.setStatus(st)
	out := a.ok("status")
	assert.Contains(t, out, "WARNING: the watchdog is NOT being kicked: stalled loop: timer")
	kv := keyValues(out[strings.Index(out, "watchdog:"):])
	assert.Equal(t, "/dev/watchdog0, systemd (iTCO_wdt)", kv["watchdog"])
	assert.Equal(t, "10s (kicked every 3.333s)", kv["timeout"])
	assert.Equal(t, "no", kv["kicking"])
	assert.Equal(t, "watchdog reset (0x20)", kv["boot status"])
	assert.Equal(t, "on", kv["self-fence"])
	assert.Equal(t, "receive-a", kv["loops healthy"])
	assert.Contains(t, kv["loops STALLED"], "timer (busy 5s")
	assert.Contains(t, kv["last kick"], "(99 kicks)")
}

// fmctl status says when the machine cannot hold the agent's profile, and
// says nothing of it when it can.
func TestStatusMachineCannotHoldProfile(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	st, err := a.c.Status(ctxT(t))
	require.NoError(t, err)
	st.Timing = api.Timing{Profile: "10ms", Interval: api.Duration(2 * time.Millisecond), Misses: 5, Detection: api.Duration(10 * time.Millisecond)}
	a.h.setStatus(st)
	assert.NotContains(t, a.ok("status"), "machine:", "no overrun: no line")

	st.Timing.Overruns, st.Timing.WorstWake = 7, api.Duration(13300*time.Microsecond)
	a.h.setStatus(st)
	kv := keyValues(a.ok("status"))
	assert.Equal(t, "CANNOT HOLD THE PROFILE: woken 7 times later than its 8ms tolerance (worst 13.3ms); see the agent's log", kv["machine"])
}

// status says whether a kill -9 is seen at once: this node's connection
// to its master, or the followers connected to it, or that the watch is
// off.
func TestStatusExitWatch(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	base, err := a.c.Status(ctxT(t))
	require.NoError(t, err)
	yes, no := true, false
	for _, c := range []struct {
		name         string
		node, master uint32
		x            api.ExitWatchStatus
		want         string
	}{
		{"a connected follower", 3, 1, api.ExitWatchStatus{Listening: true, OwnTable: &yes, Master: 1}, "connected to master 1"},
		{"a follower not connected", 3, 1, api.ExitWatchStatus{Listening: true, OwnTable: &yes, DialFailures: 4},
			"NOT connected to master 1: a kill -9 of this node is seen at the detection time (0 refused, 4 failed connections)"},
		{"the master", 1, 1, api.ExitWatchStatus{Listening: true, OwnTable: &yes, Followers: []wire.NodeID{2, 3}}, "2 connected: {2,3}"},
		{"an agent that does not say where it holds them", 3, 1, api.ExitWatchStatus{Listening: true, Master: 1}, "connected to master 1"},
		{"held in the process's table", 3, 1, api.ExitWatchStatus{Listening: true, OwnTable: &no, Master: 1},
			"connected to master 1; held in the process's file table: a kill -9 of this node is seen about 3 ms late (see the agent's log)"},
		{"off", 1, 1, api.ExitWatchStatus{}, "OFF (see the agent's log): a kill -9 is seen at the detection time"},
	} {
		st := *base
		st.Node, st.Master = wire.NodeID(c.node), wire.NodeID(c.master)
		x := c.x
		st.ExitWatch = &x
		a.h.setStatus(&st)
		out := a.ok("status")
		i := strings.Index(out, "exit watch:")
		require.GreaterOrEqual(t, i, 0, "%s:\n%s", c.name, out)
		assert.Equal(t, c.want, keyValues(out[i:])["exit watch"], c.name)
	}
}

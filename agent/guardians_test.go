package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/watchdog"
	"github.com/fmagent/fmagent/wire"
)

// loopScript is the daemon of these tests: a small shell loop. marker
// makes its command line unique, so the test can count its copies.
func loopScript(marker string) string {
	return `echo "started $$ ` + marker + `"; while :; do sleep 0.1; done`
}

// tolerant widens the failure detector of a test cluster (10 ms × 30):
// on a loaded machine running the race detector, 50 ms of scheduling
// stall is common and would make the membership flap, which these tests
// are not about.
func tolerant(c *config.Config) {
	c.Timing.Misses = 30
}

func daemonSpec(name, script string, mod func(*config.Daemon)) config.Daemon {
	d := config.Daemon{Name: name, Command: "/bin/sh", Args: []string{"-c", script},
		Backoff: 100 * time.Millisecond, BackoffMax: 200 * time.Millisecond, Limit: 20, Window: time.Minute}
	if mod != nil {
		mod(&d)
	}
	d.ApplyDefaults()
	return d
}

// copies counts the running processes whose command line contains marker.
func copies(t *testing.T, marker string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var pids []int
	ppid := map[int]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), marker) {
			continue
		}
		if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
			if len(f) < 2 || f[0] == "Z" {
				continue
			}
			ppid[pid], _ = strconv.Atoi(f[1])
		}
		pids = append(pids, pid)
	}
	// A shell's child between fork and exec has the shell's command line:
	// count only the processes whose parent is not one of them.
	var top []int
	for _, p := range pids {
		if !slices.Contains(pids, ppid[p]) {
			top = append(top, p)
		}
	}
	return top
}

// killAll kills the test's daemons when it ends: they outlive their agent
// by design.
func killAll(t *testing.T, marker string) {
	t.Cleanup(func() {
		for _, pid := range copies(t, marker) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

func daemonOf(t *testing.T, nd *testNode, name string) api.Daemon {
	t.Helper()
	ds, err := nd.client(t).Daemons(context.Background())
	require.NoError(t, err)
	for _, d := range ds {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("node %d: no daemon %q in %+v", nd.id, name, ds)
	return api.Daemon{}
}

// The acceptance test: on a three-node loopback cluster node 2's agent
// starts a daemon (a shell loop); the test kills it with SIGKILL; every
// node shows node/2/proc/loop down, then up again after the restart. The
// kill → down-everywhere time is measured (and printed, not asserted).
func TestDaemonKillDownEverywhere(t *testing.T) {
	marker := fmt.Sprintf("fmagent-test-loop-%d-%d", os.Getpid(), time.Now().UnixNano())
	killAll(t, marker)
	tc := startCluster(t, 3, tolerant, func(c *config.Config) {
		if c.NodeID == 2 {
			c.Daemons = []config.Daemon{daemonSpec("loop", loopScript(marker), func(d *config.Daemon) {
				d.Backoff, d.BackoffMax, d.Limit = 50*time.Millisecond, 50*time.Millisecond, 100
			})}
		}
	})
	const name = "node/2/proc/loop"
	waitAll := func(what string, want wire.State) time.Duration {
		start := time.Now()
		var last time.Duration
		for _, nd := range tc.nodes {
			waitShm(t, nd, 20*time.Second, name+" "+what, func() bool {
				st, _ := nd.state(name)
				return st == want
			})
			last = time.Since(start)
		}
		return last
	}
	waitAll("up", wire.StateUp)
	e, err := tc.nodes[0].client(t).Get(context.Background(), name)
	require.NoError(t, err)
	require.Equal(t, wire.NodeID(2), e.Owner, "owned by the node that runs it")
	require.Equal(t, api.KindProcess, e.Kind)

	// A watch on every node: every change arrives, in order, however
	// quickly the daemon comes back up (shared memory shows only the
	// latest state).
	watches := make([]*client.Watch, len(tc.nodes))
	for j, nd := range tc.nodes {
		w, err := nd.client(t).Watch(context.Background(), name)
		require.NoError(t, err)
		defer w.Close()
		watches[j] = w
	}
	await := func(j int, want api.State) {
		timeout := time.After(10 * time.Second)
		for {
			select {
			case ev, ok := <-watches[j].Events():
				require.True(t, ok, "node %d: watch ended: %v", j+1, watches[j].Err())
				if ev.Kind == api.EventState && ev.Entity.State == want {
					return
				}
			case <-timeout:
				t.Fatalf("node %d: %s never %s", j+1, name, want)
			}
		}
	}
	const kills = 20
	var times []time.Duration
	var lastPID int32
	for i := 0; i < kills; i++ {
		var d api.Daemon
		require.Eventually(t, func() bool {
			d = daemonOf(t, tc.nodes[1], "loop")
			return d.State == "running" && d.PID != 0 && d.PID != lastPID
		}, 10*time.Second, 10*time.Millisecond, "running again: %+v", d)
		lastPID = d.PID
		require.Equal(t, []int{int(d.PID)}, copies(t, marker), "one copy")
		waitAll("up", wire.StateUp)
		// What the watches hold from before (a loaded machine's master
		// changes re-assert states) is not this kill's.
		for _, w := range watches {
			for drained := false; !drained; {
				select {
				case _, ok := <-w.Events():
					require.True(t, ok, "watch ended: %v", w.Err())
				default:
					drained = true
				}
			}
		}
		killed := time.Now()
		require.NoError(t, syscall.Kill(int(d.PID), syscall.SIGKILL))
		var worst time.Duration
		for j := range tc.nodes {
			await(j, api.StateDown)
			worst = max(worst, time.Since(killed))
		}
		times = append(times, worst)
		for j := range tc.nodes {
			await(j, api.StateUp)
		}
		up := time.Since(killed)
		t.Logf("kill %d: pid %d SIGKILL -> %s down on all 3 nodes in %v; up again everywhere %v after the kill (backoff %v)",
			i+1, d.PID, name, worst, up, time.Duration(d.BackoffMS)*time.Millisecond)
	}
	var d api.Daemon
	require.Eventually(t, func() bool {
		d = daemonOf(t, tc.nodes[1], "loop")
		return d.State == "running"
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, kills, d.Restarts)
	require.Equal(t, "signal killed", d.LastExit)
	slices.Sort(times)
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("kill -> down everywhere over %d kills: median %v, p90 %v, min %v, max %v (loadavg %s)",
		kills, times[kills/2], times[kills*9/10], times[0], times[kills-1], strings.TrimSpace(string(load)))
}

// A critical daemon that keeps failing: restarted with backoff up to its
// limit, then a critical alarm on its entity, seen everywhere, and the
// escalation "node-down": the node says goodbye, everyone marks it (and
// what it owns) down, and Run returns ErrEscalated.
func TestDaemonLimitEscalatesNodeDown(t *testing.T) {
	tc := startCluster(t, 3, tolerant, func(c *config.Config) {
		if c.NodeID == 3 {
			c.Daemons = []config.Daemon{daemonSpec("crash", "sleep 0.2; exit 7", func(d *config.Daemon) {
				d.Backoff, d.Limit, d.Critical, d.Escalate = 50*time.Millisecond, 2, true, config.EscalateNodeDown
			})}
		}
	})
	n3 := tc.nodes[2]
	var err error
	select {
	case err = <-n3.done:
		n3.done <- nil // the cleanup expects a clean return
	case <-time.After(20 * time.Second):
		t.Fatal("node 3 did not go down")
	}
	require.ErrorIs(t, err, ErrEscalated)
	for _, nd := range tc.nodes[:2] {
		waitShm(t, nd, 5*time.Second, "node/3 down", func() bool {
			st, _ := nd.state("node/3")
			return st == wire.StateDown
		})
		waitShm(t, nd, 5*time.Second, "the daemon down with an alarm", func() bool {
			st, e := nd.state("node/3/proc/crash")
			if e == nil || st != wire.StateDown {
				return false
			}
			a, ok := e.FindAlarm([]byte(CauseRestartLimit))
			return ok && a.Severity == wire.SevCritical
		})
	}
}

// escalate = "fence": the watchdog is no longer kicked, fmctl status says
// why; the other daemon of the node keeps running.
func TestDaemonLimitEscalatesFence(t *testing.T) {
	fake := &watchdog.Fake{T: 3 * time.Second, Label: "fake-device"} // a 1 s kick period
	testKickers = func(uint32) []watchdog.Kicker { return []watchdog.Kicker{fake} }
	defer func() { testKickers = nil }()
	tc := startCluster(t, 1, func(c *config.Config) {
		c.AllowAlone = true
		c.Daemons = []config.Daemon{daemonSpec("crash", "sleep 1; exit 1", func(d *config.Daemon) { // up long enough for kicks first
			d.Backoff, d.Limit, d.Critical, d.Escalate = 50*time.Millisecond, 3, true, config.EscalateFence
		})}
	})
	nd := tc.nodes[0]
	require.Eventually(t, func() bool { return fake.Kicks() > 0 }, 5*time.Second, 20*time.Millisecond, "kicked while healthy")
	var st *api.Status
	require.Eventually(t, func() bool {
		var err error
		st, err = nd.client(t).Status(context.Background())
		return err == nil && st.Watchdog != nil && !st.Watchdog.Kicking &&
			strings.Contains(st.Watchdog.Reason, "critical daemon crash hit its restart limit")
	}, 15*time.Second, 50*time.Millisecond)
	require.Equal(t, []string{"fake-device"}, st.Watchdog.Watchdogs)
	n := fake.Kicks()
	time.Sleep(2500 * time.Millisecond)
	require.LessOrEqual(t, fake.Kicks(), n+1, "no more kicks (one may have been in flight)")
	d := daemonOf(t, nd, "crash")
	require.Equal(t, "failed", d.State)
	require.True(t, d.Escalated)
	require.Equal(t, 3, d.Restarts)
	waitShm(t, nd, 5*time.Second, "critical alarm", func() bool {
		_, e := nd.state("node/1/proc/crash")
		if e == nil {
			return false
		}
		a, ok := e.FindAlarm([]byte(CauseRestartLimit))
		return ok && a.Severity == wire.SevCritical
	})
}

// An agent restart adopts the daemon still running instead of starting a
// second copy.
func TestDaemonAdoptedAcrossAgentRestart(t *testing.T) {
	marker := fmt.Sprintf("fmagent-test-adopt-%d-%d", os.Getpid(), time.Now().UnixNano())
	killAll(t, marker)
	tc := startCluster(t, 1, func(c *config.Config) {
		c.AllowAlone = true
		c.Daemons = []config.Daemon{daemonSpec("keep", loopScript(marker), nil)}
	})
	nd := tc.nodes[0]
	waitShm(t, nd, 10*time.Second, "daemon up", func() bool {
		st, _ := nd.state("node/1/proc/keep")
		return st == wire.StateUp
	})
	before := daemonOf(t, nd, "keep")
	require.False(t, before.Adopted)

	// Stop the agent: the daemon keeps running.
	nd.cancel()
	require.NoError(t, <-nd.done)
	nd.shm.Close()
	nd.shm = nil
	require.Equal(t, []int{int(before.PID)}, copies(t, marker))

	// Start it again on the same state directory.
	ctx, cancel := context.WithCancel(context.Background())
	nd.cancel = cancel
	go func() { nd.done <- Run(ctx, nd.cfg, nil) }()
	var after api.Daemon
	require.Eventually(t, func() bool {
		c, err := dialQuiet(nd.cfg.Paths.Socket)
		if err != nil {
			return false
		}
		defer c.Close()
		ds, err := c.Daemons(context.Background())
		if err != nil || len(ds) != 1 {
			return false
		}
		after = ds[0]
		return after.State == "running"
	}, 10*time.Second, 50*time.Millisecond)
	require.True(t, after.Adopted, "adopted, not started again")
	require.Equal(t, before.PID, after.PID)
	require.Equal(t, []int{int(before.PID)}, copies(t, marker), "still one copy")
	require.Eventually(t, func() bool {
		c, err := dialQuiet(nd.cfg.Paths.Socket)
		if err != nil {
			return false
		}
		defer c.Close()
		e, err := c.Get(context.Background(), "node/1/proc/keep")
		return err == nil && e.State == api.StateUp
	}, 10*time.Second, 50*time.Millisecond)

	// The adopted daemon's death is seen, and it is restarted.
	require.NoError(t, syscall.Kill(int(before.PID), syscall.SIGKILL))
	require.Eventually(t, func() bool {
		p := copies(t, marker)
		return len(p) == 1 && p[0] != int(before.PID)
	}, 10*time.Second, 50*time.Millisecond)
}

// A stalled loop stops the kicks and says which loop, in the log and in
// fmctl status; progress resumes them. The lone node (cold-booted, never
// joined a cluster, self-fencing on) keeps kicking all the while it waits.
func TestWatchdogStalledLoop(t *testing.T) {
	fake := &watchdog.Fake{T: 1500 * time.Millisecond, Label: "fake-device"}
	testKickers = func(uint32) []watchdog.Kicker { return []watchdog.Kicker{fake} }
	started := make(chan *agent, 1)
	testHookStarted = func(a *agent) { started <- a }
	defer func() { testKickers, testHookStarted = nil, nil }()
	tc := startCluster(t, 1, func(c *config.Config) {
		c.Watchdog.SelfFence = config.FenceOn
		c.Watchdog.FenceTimeout = 200 * time.Millisecond
	})
	a := <-started
	nd := tc.nodes[0]
	// Alone, never joined (no allow_alone: no quorum, no master), for
	// several fence timeouts: kicked all along.
	time.Sleep(2 * time.Second)
	require.GreaterOrEqual(t, fake.Kicks(), 2)
	st, err := nd.client(t).Status(context.Background())
	require.NoError(t, err)
	require.Zero(t, st.Master)
	require.True(t, st.Watchdog.SelfFence)
	require.False(t, st.Watchdog.Fenced, "a lone cold-booted node does not fence")
	require.NotContains(t, st.Watchdog.Reason, "self-fence")
	var names []string
	for _, l := range st.Watchdog.Loops {
		names = append(names, l.Name)
	}
	require.Subset(t, names, []string{"realtime", "publish", "api", "process"})

	// The core's lock held (a deadlock, say): the real-time loop stalls, the
	// kicks stop.
	a.mu.Lock()
	time.Sleep(1500 * time.Millisecond)
	n := fake.Kicks()
	g := a.guard.Status()
	time.Sleep(1500 * time.Millisecond)
	stalled := a.guard.Status()
	a.mu.Unlock()
	require.False(t, g.Kicking)
	require.Contains(t, g.Stalled, "realtime")
	require.Contains(t, g.Reason, "stalled loop: ")
	require.Equal(t, n, fake.Kicks(), "no kick while stalled")
	require.False(t, stalled.Kicking)

	// Back: kicking again.
	require.Eventually(t, func() bool { return fake.Kicks() > n }, 5*time.Second, 20*time.Millisecond)

	// A loop stalled without the lock (the process-exit loop stuck in its
	// work): fmctl status names it.
	a.hProc.Busy()
	require.Eventually(t, func() bool {
		st, err = nd.client(t).Status(context.Background())
		return err == nil && !st.Watchdog.Kicking && strings.Contains(st.Watchdog.Reason, "process")
	}, 5*time.Second, 20*time.Millisecond)
	require.Contains(t, st.Watchdog.Reason, "stalled loop: ")
	for _, l := range st.Watchdog.Loops {
		if l.Name == "process" {
			require.False(t, l.Healthy)
			require.Positive(t, l.BusyMS)
		}
	}
	a.hProc.Idle()
	require.Eventually(t, func() bool {
		st, err = nd.client(t).Status(context.Background())
		return err == nil && st.Watchdog.Kicking
	}, 10*time.Second, 20*time.Millisecond)
}

func dialQuiet(socket string) (*client.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return client.Dial(ctx, socket)
}

// A member of a formed three-node cluster that loses both networks (its
// sockets closed under it) stops kicking once it has had no master for the
// fence timeout, and says why; the two others keep kicking.
func TestWatchdogIsolationFences(t *testing.T) {
	fakes := map[uint32]*watchdog.Fake{}
	for i := uint32(1); i <= 3; i++ {
		// A 1 s kick period: a loaded machine's scheduling stalls (tens to
		// hundreds of ms) do not read as stalled loops.
		fakes[i] = &watchdog.Fake{T: 3 * time.Second, Label: fmt.Sprintf("fake-%d", i)}
	}
	testKickers = func(n uint32) []watchdog.Kicker { return []watchdog.Kicker{fakes[n]} }
	defer func() { testKickers = nil }()
	const fenceAfter = 500 * time.Millisecond
	tc, byID, _ := startClusterAgents(t, 3, tolerant, func(c *config.Config) {
		c.Watchdog.SelfFence = config.FenceOn
		c.Watchdog.FenceTimeout = fenceAfter
	})
	a3 := byID[3]
	n3 := tc.nodes[2]
	waitShm(t, n3, 10*time.Second, "formed", func() bool {
		for i := 1; i <= 3; i++ {
			if st, _ := n3.state(fmt.Sprintf("node/%d", i)); st != wire.StateUp {
				return false
			}
		}
		return n3.shm.Header().Master != 0
	})
	st, err := n3.client(t).Status(context.Background())
	require.NoError(t, err)
	require.True(t, st.Watchdog.Kicking)
	require.True(t, st.Watchdog.SelfFence)

	cut := time.Now()
	a3.tr.Close() // both networks gone, for node 3 alone
	require.Eventually(t, func() bool {
		st, err = n3.client(t).Status(context.Background())
		return err == nil && st.Watchdog.Fenced && !st.Watchdog.Kicking
	}, 10*time.Second, 20*time.Millisecond)
	took := time.Since(cut)
	require.Contains(t, st.Watchdog.Reason, "self-fence: a member of a formed cluster")
	require.GreaterOrEqual(t, took, fenceAfter, "not before the fence timeout")
	t.Logf("isolated -> kicks stopped after %v (fence timeout %v, detection %v)", took, fenceAfter, n3.cfg.Timing.Detection())
	k3, k1, k2 := fakes[3].Kicks(), fakes[1].Kicks(), fakes[2].Kicks()
	time.Sleep(2500 * time.Millisecond)
	require.LessOrEqual(t, fakes[3].Kicks(), k3+1, "node 3 no longer kicks")
	require.Greater(t, fakes[1].Kicks(), k1, "node 1 keeps kicking")
	require.Greater(t, fakes[2].Kicks(), k2, "node 2 keeps kicking")
}

// The agent with a watchdog device (a fake driver on a regular file): the
// timeout asked is set and read back, the device is kicked, the boot
// status says the watchdog reset the machine, so the alarm watchdog-reset
// is raised on node/1; a clean stop writes the magic 'V'.
func TestWatchdogDeviceBootAlarm(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "watchdog")
	require.NoError(t, os.WriteFile(dev, nil, 0o600))
	var mu sync.Mutex
	var calls []string
	testDeviceIoctl = func(fd uintptr, req uint, p unsafe.Pointer) error {
		mu.Lock()
		defer mu.Unlock()
		switch req {
		case unix.WDIOC_GETSUPPORT:
			copy((*unix.WatchdogInfo)(p).Identity[:], "fake driver")
		case unix.WDIOC_GETBOOTSTATUS:
			*(*int32)(p) = unix.WDIOF_CARDRESET
		case unix.WDIOC_SETTIMEOUT:
			calls = append(calls, "SETTIMEOUT "+strconv.Itoa(int(*(*int32)(p))))
		case unix.WDIOC_GETTIMEOUT:
			*(*int32)(p) = 3 // the driver rounds to what it can do
		case unix.WDIOC_KEEPALIVE:
			calls = append(calls, "KEEPALIVE")
		default:
			return unix.ENOTTY
		}
		return nil
	}
	defer func() { testDeviceIoctl = nil }()
	tc := startCluster(t, 1, func(c *config.Config) {
		c.AllowAlone = true
		c.Watchdog.Device = dev
		c.Watchdog.Timeout = 2 * time.Second
	})
	nd := tc.nodes[0]
	waitShm(t, nd, 10*time.Second, "watchdog-reset alarm", func() bool {
		_, e := nd.state("node/1")
		if e == nil {
			return false
		}
		_, ok := e.FindAlarm([]byte("watchdog-reset"))
		return ok
	})
	st, err := nd.client(t).Status(context.Background())
	require.NoError(t, err)
	require.Equal(t, []string{dev}, st.Watchdog.Watchdogs)
	require.Equal(t, "fake driver", st.Watchdog.Identity)
	require.Equal(t, int64(3000), st.Watchdog.TimeoutMS, "the timeout the driver chose")
	require.Equal(t, int64(1000), st.Watchdog.PeriodMS)
	require.Contains(t, st.Watchdog.BootStatus, "watchdog reset")
	require.True(t, st.Watchdog.SelfFence, "auto: on with a device")
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(calls, "SETTIMEOUT 2") && len(calls) >= 3
	}, 5*time.Second, 20*time.Millisecond)

	nd.cancel()
	require.NoError(t, <-nd.done)
	nd.done <- nil
	b, err := os.ReadFile(dev)
	require.NoError(t, err)
	require.Equal(t, "V", string(b), "a clean stop disarms the device")
}

func TestAPIProbeEvery(t *testing.T) {
	require.Equal(t, time.Second, apiProbeEvery(time.Second), "no watchdog: once a second, not three times")
	require.Equal(t, 10*time.Second/3, apiProbeEvery(10*time.Second), "a watchdog of 30 s: three times a period")
	require.Equal(t, time.Second, apiProbeEvery(2*time.Second), "a watchdog of 6 s: still at most once a second")
}

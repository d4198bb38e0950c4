package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/internal/testutil"
	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/wire"
)

// childEnv makes the test binary a client that registers a process entity
// tied to itself and exits (see TestMain).
const childEnv = "FMAGENT_TEST_PROCESS_CLIENT"

func TestMain(m *testing.M) {
	// Agents in this test binary share it with the tests and with each
	// other: only their real-time loops go to SCHED_FIFO, not the whole
	// binary (which would put the race detector's work above the machine's).
	wholeProcess = false
	if js := os.Getenv(childAgentEnv); js != "" {
		os.Exit(runChildAgent(js))
	}
	if spec := os.Getenv(childEnv); spec != "" {
		socket, name, _ := strings.Cut(spec, "|")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := client.Dial(ctx, socket)
		if err == nil {
			_, err = c.Register(ctx, name, client.KindProcess, client.AsProcess())
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0) // the agent sees the exit and reports the entity down
	}
	testutil.RemoveDeadShm("fmagent-test-")
	os.Exit(testutil.CheckShmLeftovers("fmagent-test-", m.Run()))
}

// testNet picks two multicast groups and a port for one test, so that test
// binaries running at the same time never hear each other.
func testNet(t testing.TB) (a, b netip.Addr, port int) {
	t.Helper()
	return testutil.MulticastNet(t)
}

type testNode struct {
	id     int
	cfg    *config.Config
	cancel context.CancelFunc
	done   chan error
	shm    *shmem.Reader
}

// testCluster is n agents on lo, started with Run in goroutines.
type testCluster struct {
	t     *testing.T
	nodes []*testNode
}

// newTestConfig is node id's configuration on lo (testutil.Net.Config) at
// the 50 ms custom timing these tests were written for, never forming a
// cluster alone, validated.
func newTestConfig(t testing.TB, id int, cluster uint32, ga, gb netip.Addr, port int, dir string) *config.Config {
	t.Helper()
	cfg := testutil.Net{A: ga, B: gb, Port: port, Cluster: cluster}.Config(id, dir)
	cfg.Timing.Profile = config.ProfileCustom
	cfg.Timing.Interval, cfg.Timing.Misses = 10*time.Millisecond, 5
	cfg.AllowAlone = false
	require.NoError(t, cfg.Validate())
	return cfg
}

// startClusterWith starts n agents, each with its config changed by tune
// (if not nil) and validated before it starts.
func startClusterWith(t *testing.T, n int, tune func(*config.Config)) *testCluster {
	t.Helper()
	if tune == nil {
		return startCluster(t, n)
	}
	return startCluster(t, n, func(c *config.Config) {
		tune(c)
		require.NoError(t, c.Validate())
	})
}

// startClusterAgents is startCluster with the agents themselves, by node
// ID (testHookStarted), and the channel on which each later start of a
// node (startNode) delivers its agent.
func startClusterAgents(t *testing.T, n int, mods ...func(*config.Config)) (*testCluster, map[wire.NodeID]*agent, <-chan *agent) {
	t.Helper()
	agents := make(chan *agent, n)
	testHookStarted = func(a *agent) { agents <- a }
	t.Cleanup(func() { testHookStarted = nil })
	tc := startCluster(t, n, mods...)
	byID := make(map[wire.NodeID]*agent, n)
	for range n {
		a := <-agents
		byID[a.self] = a
	}
	return tc, byID, agents
}

func startCluster(t *testing.T, n int, mods ...func(*config.Config)) *testCluster {
	t.Helper()
	tn := testutil.NewNet(t)
	dir := t.TempDir()
	tc := &testCluster{t: t}
	for i := 1; i <= n; i++ {
		cfg := newTestConfig(t, i, tn.Cluster, tn.A, tn.B, tn.Port, dir)
		for _, mod := range mods {
			mod(cfg)
		}
		ctx, cancel := context.WithCancel(context.Background())
		nd := &testNode{id: i, cfg: cfg, cancel: cancel, done: make(chan error, 1)}
		log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", i)
		go func() { nd.done <- Run(ctx, cfg, log) }()
		tc.nodes = append(tc.nodes, nd)
	}
	t.Cleanup(func() {
		for _, nd := range tc.nodes {
			nd.cancel()
		}
		for _, nd := range tc.nodes {
			select {
			case err := <-nd.done:
				if err != nil {
					t.Errorf("node %d: Run: %v", nd.id, err)
				}
				nd.done <- err
			case <-time.After(5 * time.Second):
				t.Errorf("node %d: Run did not return", nd.id)
			}
			if nd.shm != nil {
				nd.shm.Close()
			}
		}
	})
	// Open every node's segment once it exists.
	for _, nd := range tc.nodes {
		openSegment(t, nd, "its start")
	}
	return tc
}

// openSegment waits up to 5 s for nd's agent (started at when) to have
// created its shared-memory segment, and opens it. An agent whose Run
// returns meanwhile fails the test with Run's error. Called from the test's
// goroutine (t.Fatalf), not from a require.Eventually's.
func openSegment(t *testing.T, nd *testNode, when string) {
	t.Helper()
	var seg *shmem.Reader
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-nd.done:
			nd.done <- err // for the cluster's cleanup
			if seg != nil {
				seg.Close()
			}
			t.Fatalf("node %d: Run returned after %s: %v", nd.id, when, err)
		default:
		}
		if seg == nil {
			if r, err := shmem.Open(nd.cfg.ShmPath()); err == nil {
				if r.Header().WriterPID != 0 {
					seg = r
				} else {
					r.Close()
				}
			}
		}
		// The metrics endpoint opens last in the agent's start, after the
		// segment and the API's sockets: a test that scrapes it at once
		// would otherwise race the start (connection refused).
		if seg != nil && metricsListening(nd.cfg.Metrics.Listen) {
			nd.shm = seg
			return
		}
		if time.Now().After(deadline) {
			if seg == nil {
				t.Fatalf("node %d: no shared memory 5 s after %s", nd.id, when)
			}
			t.Fatalf("node %d: metrics endpoint %s not listening 5 s after %s", nd.id, nd.cfg.Metrics.Listen, when)
		}
	}
}

// metricsListening reports whether addr ("" when the node has no metrics
// endpoint) accepts a connection.
func metricsListening(addr string) bool {
	if addr == "" {
		return true
	}
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// state reads entity name from nd's shared memory ("" if absent).
func (nd *testNode) state(name string) (wire.State, *shmem.Entity) {
	var e shmem.Entity
	if err := nd.shm.ReadByName(name, &e); err != nil {
		return 0, nil
	}
	return e.State, &e
}

func (nd *testNode) client(t *testing.T) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, nd.cfg.Paths.Socket)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// waitShm waits until cond holds for nd's shared memory, waking on every
// commit.
func waitShm(t *testing.T, nd *testNode, d time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	seq := nd.shm.Seq()
	for !cond() {
		var err error
		if seq, err = nd.shm.Wait(ctx, seq); err != nil {
			if cond() {
				return
			}
			t.Fatalf("node %d: %s: %v", nd.id, what, err)
		}
	}
}

// TestThreeAgents walks three real agents on lo through the life of a
// cluster, one step after another (each step needs the ones before it, so
// the first that fails ends the test).
func TestThreeAgents(t *testing.T) {
	tc := startCluster(t, 3)
	nodes := tc.nodes
	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, f) {
			t.FailNow()
		}
	}
	var master wire.NodeID
	var c2, c3 *client.Client

	step("one master and every node up everywhere", func(t *testing.T) {
		for _, nd := range nodes {
			waitShm(t, nd, 10*time.Second, "cluster formed", func() bool {
				h := nd.shm.Header()
				if h.Master == 0 {
					return false
				}
				for i := 1; i <= 3; i++ {
					if st, _ := nd.state(fmt.Sprintf("node/%d", i)); st != wire.StateUp {
						return false
					}
				}
				return true
			})
		}
		master = nodes[0].shm.Header().Master
		masters := 0
		for _, nd := range nodes {
			require.Equal(t, master, nd.shm.Header().Master, "node %d follows another master", nd.id)
			st, err := nd.client(t).Status(context.Background())
			require.NoError(t, err)
			require.Equal(t, master, st.Master)
			require.Len(t, st.Members, 3)
			for _, m := range st.Members {
				require.Equal(t, api.StateUp, m.State, "node %d sees member %d", nd.id, m.Node)
			}
			if st.Role == api.RoleMaster {
				masters++
				require.Equal(t, wire.NodeID(nd.id), master)
			}
		}
		require.Equal(t, 1, masters, "exactly one master")
		t.Logf("master: node %d", master)
	})
	c2, c3 = nodes[1].client(t), nodes[2].client(t)

	step("a watcher on node 3 sees what a client raises on node 2", func(t *testing.T) {
		wctx, wcancel := context.WithCancel(context.Background())
		defer wcancel()
		w, err := c3.Watch(wctx, "svc/")
		require.NoError(t, err)
		defer w.Close()

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e, err := c2.Register(ctx, "svc/billing", client.KindService)
		require.NoError(t, err)
		require.Equal(t, wire.NodeID(2), e.Owner)
		require.Equal(t, api.StateUp, e.State)
		res, err := c2.Raise(ctx, "svc/billing", "rpc-timeout", client.SevMajor)
		require.NoError(t, err)
		require.Equal(t, "raise", res.Verdict)
		require.NotZero(t, res.Seq)
		// Read-your-writes on node 2.
		got, err := c2.Get(ctx, "svc/billing")
		require.NoError(t, err)
		require.Len(t, got.Alarms, 1)

		waitShm(t, nodes[2], 2*time.Second, "alarm on node 3", func() bool {
			_, e := nodes[2].state("svc/billing")
			if e == nil {
				return false
			}
			a, ok := e.FindAlarm([]byte("rpc-timeout"))
			return ok && a.Severity == wire.SevMajor && a.RaisedBy == 2
		})
		var kinds []api.EventKind
		timeout := time.After(2 * time.Second)
		for len(kinds) < 2 {
			select {
			case ev, ok := <-w.Events():
				require.True(t, ok, "watch ended: %v", w.Err())
				require.Equal(t, "svc/billing", ev.Entity.Name)
				kinds = append(kinds, ev.Kind)
			case <-timeout:
				t.Fatalf("watch on node 3: events %v, want register and raise", kinds)
			}
		}
		require.Equal(t, []api.EventKind{api.EventRegister, api.EventRaise}, kinds)
	})

	step("errors the handler decides", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c2.Raise(ctx, "svc/nope", "x", client.SevMinor)
		require.ErrorIs(t, err, api.ErrNotFound)
		_, err = c3.SetState(ctx, "svc/billing", client.StateDown)
		require.ErrorIs(t, err, api.ErrPermission)
		_, err = c3.Register(ctx, "svc/billing", client.KindCustom)
		require.ErrorIs(t, err, api.ErrCollision)
	})

	step("a process entity goes down when its process exits and up with a new one", func(t *testing.T) {
		wctx, wcancel := context.WithCancel(context.Background())
		defer wcancel()
		pw, err := c3.Watch(wctx, "node/2/proc/")
		require.NoError(t, err)
		defer pw.Close()
		for run := 1; run <= 2; run++ {
			child := exec.Command(os.Args[0], "-test.run=^$")
			child.Env = append(os.Environ(), childEnv+"="+nodes[1].cfg.Paths.Socket+"|node/2/proc/child")
			out, err := child.CombinedOutput()
			require.NoError(t, err, "child: %s", out)
			waitShm(t, nodes[2], 3*time.Second, "process entity down on node 3", func() bool {
				st, _ := nodes[2].state("node/2/proc/child")
				return st == wire.StateDown
			})
		}
		var states []string
		timeout := time.After(2 * time.Second)
		for len(states) < 4 {
			select {
			case ev, ok := <-pw.Events():
				require.True(t, ok, "watch ended: %v", pw.Err())
				states = append(states, string(ev.Kind)+":"+string(ev.Entity.State))
			case <-timeout:
				t.Fatalf("watch on node 3: events %v", states)
			}
		}
		require.Equal(t, []string{"register:up", "state:down", "state:up", "state:down"}, states)
	})

	step("a switchover asked on a member: the vice takes over, nothing goes down", func(t *testing.T) {
		var member *testNode
		for _, nd := range nodes {
			if wire.NodeID(nd.id) != master {
				member = nd
			}
		}
		before, err := member.client(t).Status(context.Background())
		require.NoError(t, err)
		require.NotZero(t, before.Vice)
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		require.NoError(t, member.client(t).Switchover(sctx))
		scancel()
		for _, nd := range nodes {
			st, _ := nd.client(t).Status(context.Background())
			t.Logf("node %d after switchover: role %s master %d vice %d epoch %d (shm master %d)", nd.id, st.Role, st.Master, st.Vice, st.Epoch, nd.shm.Header().Master)
		}
		for _, nd := range nodes {
			waitShm(t, nd, 5*time.Second, "new master after switchover", func() bool {
				return nd.shm.Header().Master == before.Vice
			})
			for i := 1; i <= 3; i++ {
				st, _ := nd.state(fmt.Sprintf("node/%d", i))
				require.Equal(t, wire.StateUp, st, "node %d: node/%d after switchover", nd.id, i)
			}
		}
		after, err := member.client(t).Status(context.Background())
		require.NoError(t, err)
		require.Greater(t, after.Epoch, before.Epoch)
		t.Logf("switchover: master %d -> %d, epoch %d -> %d", before.Master, after.Master, before.Epoch, after.Epoch)
		master = after.Master
	})

	step("a node that stops says goodbye and is down at once", func(t *testing.T) {
		var leaver *testNode
		for _, nd := range nodes {
			if wire.NodeID(nd.id) != master {
				leaver = nd
			}
		}
		name := fmt.Sprintf("node/%d", leaver.id)
		start := time.Now()
		leaver.cancel()
		require.NoError(t, <-leaver.done)
		leaver.done <- nil
		for _, nd := range nodes {
			if nd == leaver {
				continue
			}
			waitShm(t, nd, 2*time.Second, name+" down", func() bool {
				st, _ := nd.state(name)
				return st == wire.StateDown
			})
		}
		t.Logf("%s down everywhere %v after its agent was stopped (detection bound %v)", name, time.Since(start), nodes[0].cfg.Timing.Detection())
		_, err := os.Stat(leaver.cfg.ShmPath())
		require.ErrorIs(t, err, os.ErrNotExist, "the stopped agent removes its segment")
	})
}

func TestRunRefusesBadConfig(t *testing.T) {
	cfg := config.Default()
	cfg.Timing.Misses = 1
	err := Run(context.Background(), cfg, nil)
	require.Error(t, err)
	require.Contains(t, err.Error(), "timing.misses")
}

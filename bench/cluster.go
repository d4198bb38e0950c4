package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/internal/freeport"
	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/transport"
	"github.com/fmagent/fmagent/wire"
)

// BuildAgent builds cmd/fmagent from this module into dir and returns the
// binary's path. It needs the go tool and must run inside the module (the
// package's directory when under go test, the module root for go run).
// It builds without cgo (BuildEnv), as the Debian package does.
func BuildAgent(dir string) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("bench: building fmagent needs the go tool on PATH: %w", err)
	}
	out := filepath.Join(dir, "fmagent")
	cmd := exec.Command(goTool, "build", "-o", out, "github.com/fmagent/fmagent/cmd/fmagent")
	cmd.Env = BuildEnv()
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bench: building fmagent: %v\n%s", err, b)
	}
	return out, nil
}

// BuildEnv is the environment the agent is built in for measurements:
// this process's, with CGO_ENABLED=0, as `make bins` and `make deb` build
// it, so that what is measured is what ships. With cgo (the go tool's
// default where a C compiler is installed) every thread of the agent
// comes from pthread_create, whose 8 MiB stack is an mmap and an mprotect:
// two more writers of the agent's memory-map lock each time Go starts a
// thread, which a real-time thread's page fault can wait behind
// (agent/hostcheck.go; docs/bench.md, "4 December 2026, afternoon").
func BuildEnv() []string { return append(os.Environ(), "CGO_ENABLED=0") }

// cluster is N fmagent processes on lo, each with its own state directory,
// socket and shared-memory segment, all under one temporary directory.
type cluster struct {
	bin       string
	dir       string
	n         int
	clusterID int
	groupA    string
	groupB    string
	port      int
	interval  time.Duration
	misses    int
	profile   string // a named timing profile ("": custom, interval and misses)
	shmPrefix string
	logLevel  string  // the agents' -log-level ("": theirs)
	nodes     []*node // nodes[1..n]; nodes[0] is nil
}

type node struct {
	id   int
	conf string
	sock string
	shm  string // path under /dev/shm
	log  string
	// metrics is the agent's metrics endpoint, host:port on 127.0.0.1.
	metrics string
	// cpu is the CPU the agent is pinned to (realtime.cpus); -1: none.
	cpu  int
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been reaped
	r    *shmem.Reader
	// started is when the process was last started (CLOCK_MONOTONIC ns).
	started int64
}

// newCluster writes the configurations of n agents, in a new directory
// under base ("": the default temporary directory); start runs them.
func newCluster(bin string, n int, interval time.Duration, misses int, base string) (*cluster, error) {
	dir, err := os.MkdirTemp(base, "fmbench")
	if err != nil {
		return nil, err
	}
	x := 20 + rand.IntN(200)
	y := 1 + rand.IntN(250)
	c := &cluster{
		bin:       bin,
		dir:       dir,
		n:         n,
		clusterID: 1000 + rand.IntN(1<<30),
		groupA:    fmt.Sprintf("239.255.%d.%d", x, y),
		groupB:    fmt.Sprintf("239.255.%d.%d", x+1, y),
		port:      20000 + rand.IntN(20000),
		interval:  interval,
		misses:    misses,
		shmPrefix: fmt.Sprintf("fmagent-bench-%d-%d", os.Getpid(), rand.IntN(1<<20)),
		nodes:     make([]*node, n+1),
	}
	for i := 1; i <= n; i++ {
		nd := &node{
			id:   i,
			conf: filepath.Join(dir, fmt.Sprintf("n%d.toml", i)),
			sock: filepath.Join(dir, fmt.Sprintf("n%d", i), "fmagent.sock"),
			shm:  fmt.Sprintf("/dev/shm/%s-%d", c.shmPrefix, i),
			log:  filepath.Join(dir, fmt.Sprintf("n%d.log", i)),
			cpu:  -1,
		}
		port, err := freePort()
		if err != nil {
			c.cleanup()
			return nil, err
		}
		nd.metrics = fmt.Sprintf("127.0.0.1:%d", port)
		c.nodes[i] = nd
		if err := os.MkdirAll(filepath.Join(dir, fmt.Sprintf("n%d", i)), 0o755); err != nil {
			c.cleanup()
			return nil, err
		}
	}
	return c, nil
}

// writeConfigs writes every node's configuration (c.config), once the
// cluster's options are set.
func (c *cluster) writeConfigs() error {
	for i := 1; i <= c.n; i++ {
		if err := os.WriteFile(c.nodes[i].conf, []byte(c.config(c.nodes[i])), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// pinSpread pins node i's agent to the ith CPU this process may use, round
// robin (realtime.cpus): one agent per CPU as far as they go, as an
// operator of several agents on one host would place them.
func (c *cluster) pinSpread() error {
	cpus, err := transport.ProcessCPUs()
	if err != nil {
		return err
	}
	if len(cpus) == 0 {
		return errors.New("bench: no CPU to pin the agents to")
	}
	for i := 1; i <= c.n; i++ {
		c.nodes[i].cpu = cpus[(i-1)%len(cpus)]
	}
	return nil
}

// config is the node's configuration: scripts/demo.sh's, with this run's
// timing, and a plugin chain whose only say on client reports is
// passthrough's (a fault report raises its alarm), so that report to
// everywhere measures a fault report, not the threshold and blame plugins'
// judgement of 200 reports from one client.
func (c *cluster) config(nd *node) string {
	return fmt.Sprintf(`node_id = %d
cluster_id = %d
priority = 100
allow_alone = false

[networks.a]
interface = "lo"
group = %q
port = %d
loopback = true

[networks.b]
interface = "lo"
group = %q
port = %d
loopback = true

[timing]
%s
stale_timeout = "10s"
%s

[paths]
state_dir = %q
socket = %q
shm = %q

[metrics]
listen = %q

[[plugins]]
name = "heartbeat"

[[plugins]]
name = "process"

[[plugins]]
name = "passthrough"
`, nd.id, c.clusterID, c.groupA, c.port, c.groupB, c.port, c.timing(), nd.realtime(),
		filepath.Dir(nd.sock), nd.sock, filepath.Base(nd.shm), nd.metrics)
}

// realtime is the node's [realtime] table: its pinning, if any.
func (nd *node) realtime() string {
	if nd.cpu < 0 {
		return ""
	}
	return fmt.Sprintf("\n[realtime]\ncpus = [%d]\n", nd.cpu)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago,
// below the ephemeral range (for an agent's metrics endpoint; freeport.TCP
// says why).
func freePort() (int, error) { return freeport.TCP("127.0.0.1") }

// timing is the [timing] section's profile lines.
func (c *cluster) timing() string {
	if c.profile != "" {
		return fmt.Sprintf("profile = %q", c.profile)
	}
	return fmt.Sprintf("profile = \"custom\"\ninterval = %q\nmisses = %d", c.interval.String(), c.misses)
}

// start runs node i's agent (again, after a kill).
func (c *cluster) start(i int) error {
	nd := c.nodes[i]
	logf, err := os.OpenFile(nd.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== bench: starting node %d at %s\n", i, time.Now().Format(time.RFC3339Nano))
	args := []string{"-config", nd.conf}
	if c.logLevel != "" {
		args = append(args, "-log-level", c.logLevel)
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	// If this process dies, the agents go too (and remove their segments).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("bench: starting node %d: %w", i, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	nd.cmd, nd.done, nd.started = cmd, done, monoNow()
	return nil
}

// alive reports whether node i's process is running.
func (c *cluster) alive(i int) bool {
	nd := c.nodes[i]
	if nd.done == nil {
		return false
	}
	select {
	case <-nd.done:
		return false
	default:
		return true
	}
}

// open maps node i's segment once its (current) agent has published it:
// after a restart the path may still hold the killed agent's segment until
// the new one replaces it.
func (c *cluster) open(ctx context.Context, i int) error {
	nd := c.nodes[i]
	if nd.r != nil {
		nd.r.Close()
		nd.r = nil
	}
	pid := nd.cmd.Process.Pid
	for {
		if !c.alive(i) {
			return fmt.Errorf("bench: node %d exited: %s", i, c.tail(i, 5))
		}
		r, err := shmem.Open(nd.shm)
		if err == nil {
			h := r.Header()
			if h.Status == shmem.StatusReady && h.WriterPID == pid {
				nd.r = r
				return nil
			}
			r.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: node %d's segment %s: %w (last error: %v)", i, nd.shm, ctx.Err(), err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// formed reports whether every segment of the running nodes shows the same
// master, every node up and both its links up. It returns the master, or a
// description of what is missing.
func (c *cluster) formed(up []int) (int, string) {
	master := -1
	var e shmem.Entity
	for _, i := range up {
		r := c.nodes[i].r
		if r == nil {
			return 0, fmt.Sprintf("node %d: segment not open", i)
		}
		h := r.Header()
		if h.Master == 0 {
			return 0, fmt.Sprintf("node %d: no master", i)
		}
		if master >= 0 && int(h.Master) != master {
			return 0, fmt.Sprintf("node %d: master %d, another node says %d", i, h.Master, master)
		}
		master = int(h.Master)
		for _, j := range up {
			for _, name := range []string{
				fmt.Sprintf("node/%d", j), fmt.Sprintf("node/%d/link/a", j), fmt.Sprintf("node/%d/link/b", j),
			} {
				if err := r.ReadByName(name, &e); err != nil {
					return 0, fmt.Sprintf("node %d: %s: %v", i, name, err)
				}
				if e.State != wire.StateUp {
					return 0, fmt.Sprintf("node %d: %s is down", i, name)
				}
			}
		}
	}
	return master, ""
}

// waitFormed waits until formed holds for every node.
func (c *cluster) waitFormed(ctx context.Context, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	all := c.all()
	for {
		for _, i := range all {
			if !c.alive(i) {
				return 0, fmt.Errorf("bench: node %d exited: %s", i, c.tail(i, 5))
			}
		}
		m, why := c.formed(all)
		if why == "" {
			return m, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("bench: the cluster did not form within %v: %s (is multicast on lo working? try 'sudo ip link set lo multicast on')", timeout, why)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (c *cluster) all() []int {
	out := make([]int, c.n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

func (c *cluster) paths(ids []int) []string {
	out := make([]string, len(ids))
	for k, i := range ids {
		out[k] = c.nodes[i].shm
	}
	return out
}

func (c *cluster) pids(ids []int) []int {
	out := make([]int, len(ids))
	for k, i := range ids {
		out[k] = c.nodes[i].cmd.Process.Pid
	}
	return out
}

// masterSeenBy is the master node i's segment shows (0: none or unknown).
func (c *cluster) masterSeenBy(i int) int {
	if r := c.nodes[i].r; r != nil {
		return int(r.Header().Master)
	}
	return 0
}

// boundOf asks each of the nodes ids (through its API) for its detection
// bound of node victim and returns the widest: the bound a kill of victim
// now is judged at, whichever of them decides.
func (c *cluster) boundOf(ctx context.Context, ids []int, victim int) (time.Duration, error) {
	var widest time.Duration
	for _, i := range ids {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := func() (*api.Status, error) {
			cl, err := client.Dial(sctx, c.nodes[i].sock)
			if err != nil {
				return nil, err
			}
			defer cl.Close()
			return cl.Status(sctx)
		}()
		cancel()
		if err != nil {
			return 0, fmt.Errorf("bench: status of node %d: %w", i, err)
		}
		found := false
		for _, m := range st.Members {
			if int(m.Node) == victim {
				widest, found = max(widest, m.Bound), true
			}
		}
		if !found {
			return 0, fmt.Errorf("bench: node %d does not list node %d as a member", i, victim)
		}
	}
	return widest, nil
}

// describe says what every node's segment shows of the entity name: for a
// failure report.
func (c *cluster) describe(name string) string {
	var b strings.Builder
	var e shmem.Entity
	for i := 1; i <= c.n; i++ {
		r := c.nodes[i].r
		if r == nil || !c.alive(i) {
			fmt.Fprintf(&b, "\n      node %d: not running", i)
			continue
		}
		h := r.Header()
		fmt.Fprintf(&b, "\n      node %d: table seq %d, master %d epoch %d stale %v: ", i, h.Seq, h.Master, h.Epoch, h.Stale)
		if err := r.ReadByName(name, &e); err != nil {
			fmt.Fprintf(&b, "%s: %v", name, err)
			continue
		}
		fmt.Fprintf(&b, "%s state %v changed seq %d by %d, alarms [", name, e.State, e.ChangedSeq, e.ChangedBy)
		for k, a := range e.AlarmList() {
			if k > 0 {
				b.WriteString(" ")
			}
			b.Write(a.CauseBytes())
		}
		b.WriteString("]")
	}
	return b.String()
}

// tail returns the last lines of node i's log.
func (c *cluster) tail(i, lines int) string {
	b, err := os.ReadFile(c.nodes[i].log)
	if err != nil {
		return err.Error()
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// stop ends every agent (SIGTERM, then SIGKILL after a grace period) and
// closes the readers; cleanup then removes the segments and the directory.
func (c *cluster) stop() {
	for i := 1; i <= c.n; i++ {
		nd := c.nodes[i]
		if nd.r != nil {
			nd.r.Close()
			nd.r = nil
		}
		if c.alive(i) {
			nd.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(5 * time.Second)
	for i := 1; i <= c.n; i++ {
		nd := c.nodes[i]
		if nd.done == nil {
			continue
		}
		select {
		case <-nd.done:
		case <-deadline:
			nd.cmd.Process.Kill()
			<-nd.done
		}
	}
}

// saveLogs copies the agents' logs into dir.
func (c *cluster) saveLogs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := 1; i <= c.n; i++ {
		b, err := os.ReadFile(c.nodes[i].log)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(c.nodes[i].log)), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (c *cluster) cleanup() {
	for i := 1; i <= c.n; i++ {
		if nd := c.nodes[i]; nd != nil {
			os.Remove(nd.shm) // gone already after a clean stop
		}
	}
	os.RemoveAll(c.dir)
}

// logs returns the tail of every node's log, for a failure report.
func (c *cluster) logs(lines int) string {
	var b strings.Builder
	for i := 1; i <= c.n; i++ {
		fmt.Fprintf(&b, "--- node %d log (last %d lines)\n%s\n", i, lines, c.tail(i, lines))
	}
	return b.String()
}

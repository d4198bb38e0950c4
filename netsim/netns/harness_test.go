package netns

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/wire"
)

// Timing of the agents under test: 20 ms × 10, a 200 ms bound. What these
// tests check is behaviour (one network cut downs nothing, a partition heals
// to the master elected last, an isolated node comes back new), not speed,
// and that needs a bound the machine can hold. This VM stops a vCPU for
// ~100 ms at times (soak/vcpustall's SCHED_FIFO control sees the same), and
// the agents on it stop with it. At 10 ms × 5 (50 ms), under two CPU
// burners, four agents froze for 94-111 ms at one instant and the fifth,
// still running, lost every peer at once; in CI a master froze just after a
// partition healed and its vice took over, so the heal's winner was not the
// master the test waited for. Detection at small bounds is measured under
// load by make bench-e2e and make soak, not asserted here.
const (
	interval = 20 * time.Millisecond
	misses   = 10
	// pollEvery paces the polling of fmctl (and shared memory with it);
	// pollShm the polling of shared memory alone, where a time is measured.
	pollEvery = 20 * time.Millisecond
	pollShm   = 2 * time.Millisecond
)

// Set by TestMain.
var (
	binDir   string // holds fmagent and fmctl
	skipWhy  string // non-empty: the test skips, for this reason
	setupErr error  // non-nil: the test fails with it
)

// prefix starts the name of everything a run creates; prefix+"<pid>-" is
// this run's (see reapLeftovers).
const prefix = "fmtest-"

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	switch {
	case os.Geteuid() != 0:
		skipWhy = "needs root to create network namespaces (and veths and bridges in them); CI runs as root"
	default:
		if _, err := exec.LookPath("ip"); err != nil {
			skipWhy = "needs iproute2's `ip` to create network namespaces, and it is not on PATH: " + err.Error()
		}
	}
	if skipWhy != "" {
		return m.Run()
	}
	reapLeftovers()
	tmp, err := os.MkdirTemp("", fmt.Sprintf("%s%d-bin-", prefix, os.Getpid()))
	if err != nil {
		setupErr = err
		return m.Run()
	}
	// Whatever happens from here on, remove what we made.
	defer os.RemoveAll(tmp)
	defer cleanupAll()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "netns: %v: removing the namespaces and agents of this run\n", s)
		cleanupAll()
		os.RemoveAll(tmp)
		os.Exit(1)
	}()

	binDir = tmp
	setupErr = buildBinaries(tmp)
	return m.Run()
}

// buildBinaries builds fmagent and fmctl from the module this test is in.
func buildBinaries(dir string) error {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return fmt.Errorf("go env GOMOD: not in a module (%q)", gomod)
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/fmagent", "./cmd/fmctl")
	cmd.Dir = filepath.Dir(gomod)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // as the package builds them
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/fmagent ./cmd/fmctl: %w\n%s", err, b)
	}
	return nil
}

// ---- the registry of what this run created, for cleanupAll ----

var registry struct {
	sync.Mutex
	namespaces []string // in creation order
	agents     map[*agentProc]struct{}
	shm        []string // paths under /dev/shm
	dirs       []string
}

func registerNS(ns string) {
	registry.Lock()
	registry.namespaces = append(registry.namespaces, ns)
	registry.Unlock()
}

// cleanupAll stops every agent of this run, deletes its namespaces (which
// deletes the veths and bridges in them), its shared-memory files and
// directories. It is idempotent and returns what it could not remove.
func cleanupAll() []string {
	registry.Lock()
	defer registry.Unlock()
	var failed []string
	var wg sync.WaitGroup
	for a := range registry.agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.stop(3 * time.Second)
		}()
	}
	wg.Wait()
	registry.agents = nil
	for _, ns := range slices.Backward(registry.namespaces) {
		killNamespacePIDs(ns)
		if err := ipCmd("netns", "del", ns); err != nil && nsExists(ns) {
			failed = append(failed, fmt.Sprintf("namespace %s: %v", ns, err))
		}
	}
	registry.namespaces = nil
	for _, p := range registry.shm {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			failed = append(failed, fmt.Sprintf("%s: %v", p, err))
		}
	}
	registry.shm = nil
	for _, d := range registry.dirs {
		if err := os.RemoveAll(d); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", d, err))
		}
	}
	registry.dirs = nil
	return failed
}

// killNamespacePIDs kills what still runs in a namespace of ours (nothing,
// normally: the agents were stopped by their pids).
func killNamespacePIDs(ns string) {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func nsExists(ns string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", ns))
	return err == nil
}

// ourNamespaces lists the namespaces of `ip netns list` that start with p.
func namespacesWithPrefix(p string) []string {
	out, _ := exec.Command("ip", "netns", "list").Output()
	var l []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], p) {
			l = append(l, f[0])
		}
	}
	return l
}

var leftoverRE = regexp.MustCompile(`^` + prefix + `(\d+)-`)

// reapLeftovers removes what earlier runs of this test left behind when
// they were killed before their cleanup ran: namespaces, /dev/shm files
// and temporary directories named fmtest-<pid>-… whose <pid> is no longer
// a live process (so never those of a run still going), created before
// this run started.
func reapLeftovers() {
	start := time.Now()
	dead := func(name string, mod time.Time) bool {
		m := leftoverRE.FindStringSubmatch(name)
		if m == nil || !mod.Before(start) {
			return false
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() {
			return false
		}
		return !processAlive(pid)
	}
	for _, ns := range namespacesWithPrefix(prefix) {
		st, err := os.Stat(filepath.Join("/run/netns", ns))
		if err != nil || !dead(ns, st.ModTime()) {
			continue
		}
		killNamespacePIDs(ns)
		if err := ipCmd("netns", "del", ns); err == nil {
			fmt.Fprintf(os.Stderr, "netns: removed namespace %s left by an earlier run\n", ns)
		}
	}
	for _, dir := range []string{"/dev/shm", os.TempDir()} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			info, err := e.Info()
			if err != nil || !dead(e.Name(), info.ModTime()) {
				continue
			}
			if os.RemoveAll(filepath.Join(dir, e.Name())) == nil {
				fmt.Fprintf(os.Stderr, "netns: removed %s left by an earlier run\n", filepath.Join(dir, e.Name()))
			}
		}
	}
}

// processAlive reports whether pid is a live process (a zombie is not).
func processAlive(pid int) bool {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

// ipCmd runs ip with args; the error carries ip's output.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// ---- the cluster ----

type cluster struct {
	t     *testing.T // the test or subtest running now
	top   *testing.T // the test that made the cluster, for cleanup
	run   string     // "<pid>-<rand>": in every name this run makes
	dir   string     // state dirs, configs, logs
	hub   string     // namespace of the bridges
	key   string     // cluster key file
	id    int        // cluster ID
	netA  int        // third octet of network A's subnet (10.201.netA.0/24)
	netB  int
	nodes []*node // nodes[i-1] is node i
}

type node struct {
	id       int
	ns       string
	cfgPath  string
	stateDir string
	sock     string
	shm      string // path under /dev/shm
	lives    int    // how many times started
	proc     *agentProc
}

// agentProc is one life of one agent.
type agentProc struct {
	cmd     *exec.Cmd
	log     string
	done    chan struct{}
	waitErr error
}

// exited reports whether the process has ended.
func (a *agentProc) exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, and SIGKILL after grace.
func (a *agentProc) stop(grace time.Duration) {
	if a.exited() {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(grace):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func randByte() int {
	b := make([]byte, 1)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return int(b[0])
}

// newCluster builds the topology for n nodes and writes their
// configurations; it starts no agent. Everything is removed when the test
// ends.
func newCluster(t *testing.T, n int) *cluster {
	t.Helper()
	c := &cluster{t: t, top: t, run: fmt.Sprintf("%d-%s", os.Getpid(), randHex(3))}
	c.id = 1000 + randByte()
	c.netA = randByte()
	c.netB = randByte()
	t.Cleanup(c.cleanup)

	dir, err := os.MkdirTemp("", prefix+c.run+"-")
	if err != nil {
		t.Fatal(err)
	}
	registry.Lock()
	registry.dirs = append(registry.dirs, dir)
	registry.Unlock()
	c.dir = dir
	c.key = filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(c.key, []byte(randHex(32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	c.hub = prefix + c.run + "-hub"
	c.mustAddNS(c.hub)
	c.must("-n", c.hub, "link", "set", "lo", "up")
	for _, br := range []string{"bra", "brb", "bra2", "brb2"} {
		c.must("-n", c.hub, "link", "add", br, "type", "bridge", "stp_state", "0", "mcast_snooping", "0")
		c.must("-n", c.hub, "link", "set", br, "up")
	}
	for i := 1; i <= n; i++ {
		nd := &node{
			id:       i,
			ns:       fmt.Sprintf("%s%s-n%d", prefix, c.run, i),
			stateDir: filepath.Join(dir, fmt.Sprintf("n%d", i)),
			shm:      fmt.Sprintf("/dev/shm/%s%s-n%d", prefix, c.run, i),
		}
		nd.sock = filepath.Join(nd.stateDir, "fmagent.sock")
		nd.cfgPath = filepath.Join(dir, fmt.Sprintf("n%d.toml", i))
		registry.Lock()
		registry.shm = append(registry.shm, nd.shm)
		registry.Unlock()
		c.nodes = append(c.nodes, nd)

		c.mustAddNS(nd.ns)
		c.must("-n", nd.ns, "link", "set", "lo", "up")
		for _, net := range []string{"a", "b"} {
			port := c.port(i, net)
			c.must("-n", c.hub, "link", "add", port, "type", "veth", "peer", "name", "eth-"+net, "netns", nd.ns)
			c.must("-n", c.hub, "link", "set", port, "master", "br"+net)
			c.must("-n", c.hub, "link", "set", port, "up")
			c.must("-n", nd.ns, "addr", "add", c.addr(i, net)+"/24", "dev", "eth-"+net)
			c.must("-n", nd.ns, "link", "set", "eth-"+net, "up")
		}
		if err := os.MkdirAll(nd.stateDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(nd.cfgPath, []byte(c.config(nd)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *cluster) mustAddNS(ns string) {
	c.t.Helper()
	registerNS(ns) // first: a half-made namespace is removed too
	c.must("netns", "add", ns)
}

func (c *cluster) must(args ...string) {
	c.t.Helper()
	if err := ipCmd(args...); err != nil {
		c.t.Fatal(err)
	}
}

// port is the bridge-side end of node i's veth on network net ("a", "b").
func (c *cluster) port(i int, net string) string { return fmt.Sprintf("n%d%s", i, net) }

func (c *cluster) addr(i int, net string) string {
	if net == "a" {
		return fmt.Sprintf("10.201.%d.%d", c.netA, i)
	}
	return fmt.Sprintf("10.202.%d.%d", c.netB, i)
}

func (c *cluster) config(nd *node) string {
	return fmt.Sprintf(`# node %[1]d of netns test run %[2]s
node_id = %[1]d
cluster_id = %[3]d
priority = 100
eligible = true
key_file = %[4]q
allow_alone = false

[networks.a]
interface = "eth-a"
group = "239.192.77.1"
port = 7410
ttl = 1
loopback = false

[networks.b]
interface = "eth-b"
group = "239.192.77.2"
port = 7410
ttl = 1
loopback = false

[timing]
profile = "custom"
interval = %[5]q
misses = %[6]d
stale_timeout = "10s"

[paths]
state_dir = %[7]q
socket = %[8]q
shm = %[9]q

[metrics]
listen = ""

[watchdog]
device = ""
`, nd.id, c.run, c.id, c.key, interval.String(), misses, nd.stateDir, nd.sock, filepath.Base(nd.shm))
}

// cleanup stops the agents and removes everything; on failure it prints the
// end of every agent's logs first.
func (c *cluster) cleanup() {
	t := c.top
	if t.Failed() {
		c.dumpLogs(t, 150)
	}
	if failed := cleanupAll(); len(failed) > 0 {
		t.Errorf("cleanup could not remove: %s", strings.Join(failed, "; "))
	}
	if left := namespacesWithPrefix(prefix + c.run); len(left) > 0 {
		t.Errorf("namespaces left after cleanup: %v", left)
	}
	for _, nd := range c.nodes {
		if _, err := os.Stat(nd.shm); err == nil {
			t.Errorf("shared memory left after cleanup: %s", nd.shm)
		}
	}
}

func (c *cluster) dumpLogs(t *testing.T, lines int) {
	for _, nd := range c.nodes {
		for life := 1; life <= nd.lives; life++ {
			p := c.logPath(nd, life)
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
			if len(l) > lines {
				l = l[len(l)-lines:]
			}
			t.Logf("--- node %d, life %d: last %d lines of %s\n%s", nd.id, life, len(l), p, strings.Join(l, "\n"))
		}
	}
}

func (c *cluster) logPath(nd *node, life int) string {
	return filepath.Join(c.dir, fmt.Sprintf("n%d.%d.log", nd.id, life))
}

// start starts (or restarts) node i's agent in its namespace.
func (c *cluster) start(i int) {
	t := c.t
	t.Helper()
	nd := c.nodes[i-1]
	if nd.proc != nil && !nd.proc.exited() {
		t.Fatalf("node %d is already running", i)
	}
	nd.lives++
	logPath := c.logPath(nd, nd.lives)
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// `ip netns exec` execs the command in place: the process we start is
	// the agent itself, so its pid is the one to kill.
	cmd := exec.Command("ip", "netns", "exec", nd.ns, filepath.Join(binDir, "fmagent"), "-config", nd.cfgPath)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting node %d: %v", i, err)
	}
	a := &agentProc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		a.waitErr = cmd.Wait()
		close(a.done)
	}()
	registry.Lock()
	if registry.agents == nil {
		registry.agents = make(map[*agentProc]struct{})
	}
	registry.agents[a] = struct{}{}
	registry.Unlock()
	nd.proc = a
	// Make sure the pid is fmagent's (ip has exec'd it) before anyone
	// signals it. Generous: at load 28 on two cores `ip netns exec`
	// (unshare, remount /sys) once took over 5 s to exec the agent.
	c.eventually(30*time.Second, fmt.Sprintf("node %d's process to be fmagent", i), func() (bool, string) {
		if a.exited() {
			t.Fatalf("node %d's agent exited at start: %v", i, a.waitErr)
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid))
		return err == nil && strings.TrimSpace(string(b)) == "fmagent", fmt.Sprintf("comm %q", b)
	})
}

// kill9 sends SIGKILL to node i's agent and waits for it to end; it
// returns when the signal was sent.
func (c *cluster) kill9(i int) time.Time {
	c.t.Helper()
	a := c.nodes[i-1].proc
	if a == nil || a.exited() {
		c.t.Fatalf("node %d is not running", i)
	}
	at := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.t.Fatalf("kill -9 node %d: %v", i, err)
	}
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
		c.t.Fatalf("node %d did not die within 5s of SIGKILL", i)
	}
	return at
}

// checkAlive fails the test if an agent that should run has exited.
func (c *cluster) checkAlive(ids ...int) {
	c.t.Helper()
	for _, i := range ids {
		if a := c.nodes[i-1].proc; a == nil || a.exited() {
			var err error
			if a != nil {
				err = a.waitErr
			}
			c.t.Fatalf("node %d's agent is not running (exit: %v)", i, err)
		}
	}
}

// ---- links ----

// setLink sets node i's link on network net ("a" or "b") up or down, by
// its bridge-side end.
func (c *cluster) setLink(i int, net string, up bool) {
	c.t.Helper()
	c.must("-n", c.hub, "link", "set", c.port(i, net), updown(up))
}

// setBridge sets a whole network's bridge up or down.
func (c *cluster) setBridge(br string, up bool) {
	c.t.Helper()
	c.must("-n", c.hub, "link", "set", br, updown(up))
}

// moveTo attaches the bridge-side ends of the given nodes, on both
// networks, to bridges bra<suffix> and brb<suffix> ("" the main ones, "2"
// the partition's). Every move goes to one `ip -batch`, so a partition
// or a heal of several nodes takes effect at once: done one `ip` process
// per port, the moves were tens of milliseconds apart under load, and a
// heal passed through a partition nobody asked for (one node of the
// healed side already with the others, its partner not yet), which is a
// different fault with a different rightful outcome.
func (c *cluster) moveTo(suffix string, nodes ...int) {
	c.t.Helper()
	var batch strings.Builder
	for _, i := range nodes {
		for _, net := range []string{"a", "b"} {
			fmt.Fprintf(&batch, "link set %s master br%s%s\n", c.port(i, net), net, suffix)
		}
	}
	cmd := exec.Command("ip", "-n", c.hub, "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("ip -n %s -batch: %v: %s\n%s", c.hub, err, bytes.TrimSpace(out), batch.String())
	}
}

func updown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

// ---- fmctl ----

// ctl runs fmctl on node i (in its namespace) with -o json; it returns
// stdout, and an error with the exit status and stderr.
func (c *cluster) ctl(i int, args ...string) ([]byte, error) {
	cmd := c.fmctl(i, append([]string{"-o", "json"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("node %d: fmctl %s: %w: %s", i, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// ctlText runs fmctl on node i with its text output (for people: failure
// reports).
func (c *cluster) ctlText(i int, args ...string) (string, error) {
	out, err := c.fmctl(i, args...).CombinedOutput()
	return string(out), err
}

// fmctl is the command that runs fmctl with args in node i's namespace,
// against its agent.
func (c *cluster) fmctl(i int, args ...string) *exec.Cmd {
	nd := c.nodes[i-1]
	full := append([]string{"netns", "exec", nd.ns, filepath.Join(binDir, "fmctl"), "-socket", nd.sock, "-timeout", "5s"}, args...)
	return exec.Command("ip", full...)
}

// mustCtl is ctl that fails the test on error.
func (c *cluster) mustCtl(i int, args ...string) []byte {
	c.t.Helper()
	out, err := c.ctl(i, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// status is `fmctl -o json status` on node i.
func (c *cluster) status(i int) (api.Status, error) {
	var s api.Status
	out, err := c.ctl(i, "status")
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(out, &s); err != nil {
		return s, fmt.Errorf("node %d: fmctl status: %w: %s", i, err, out)
	}
	return s, nil
}

// statuses is status of every node in ids; the error is the first.
func (c *cluster) statuses(ids []int) (map[int]api.Status, error) {
	m := make(map[int]api.Status, len(ids))
	var mu sync.Mutex
	var wg sync.WaitGroup
	var first error
	for _, i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := c.status(i)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = err
			}
			m[i] = s
		}()
	}
	wg.Wait()
	return m, first
}

func fmtStatuses(m map[int]api.Status) string {
	ids := make([]int, 0, len(m))
	for i := range m {
		ids = append(ids, i)
	}
	sort.Ints(ids)
	var b strings.Builder
	for _, i := range ids {
		s := m[i]
		fmt.Fprintf(&b, "  node %d: role %s epoch %d master %d vice %d inc %d seq %d digest %016x stale %v members",
			i, s.Role, s.Epoch, s.Master, s.Vice, s.Incarnation, s.TableSeq, uint64(s.Digest), s.Stale)
		for _, mb := range s.Members {
			fmt.Fprintf(&b, " %d:%s/%s", mb.Node, mb.Role, mb.State)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// ---- shared memory ----

// table is one node's table as published in its shared memory.
type table struct {
	node   int
	hdr    shmem.HeaderInfo
	byName map[string]shmem.Entity
	err    error
}

// read reads node i's shared memory: the header and a consistent snapshot.
func (c *cluster) read(i int) table {
	tb := table{node: i}
	r, err := shmem.Open(c.nodes[i-1].shm)
	if err != nil {
		tb.err = err
		return tb
	}
	defer r.Close()
	tb.hdr = r.Header()
	ents, _, err := r.Snapshot(nil)
	if err != nil {
		tb.err = err
		return tb
	}
	tb.byName = make(map[string]shmem.Entity, len(ents))
	for _, e := range ents {
		tb.byName[e.NameString()] = e
	}
	return tb
}

// tables reads the tables of ids.
func (c *cluster) tables(ids []int) []table {
	l := make([]table, 0, len(ids))
	for _, i := range ids {
		l = append(l, c.read(i))
	}
	return l
}

// get returns entity name, and whether it is in the table.
func (tb table) get(name string) (shmem.Entity, bool) {
	e, ok := tb.byName[name]
	return e, ok
}

// is reports whether entity name is present with state st.
func (tb table) is(name string, st wire.State) bool {
	e, ok := tb.byName[name]
	return ok && e.State == st
}

// hasAlarm reports whether entity name carries an alarm with cause.
func (tb table) hasAlarm(name, cause string) bool {
	e, ok := tb.byName[name]
	if !ok {
		return false
	}
	_, ok = e.FindAlarm([]byte(cause))
	return ok
}

func stateName(s wire.State) string {
	switch s {
	case wire.StateUp:
		return "up"
	case wire.StateDown:
		return "down"
	}
	return fmt.Sprintf("state(%d)", s)
}

// String summarizes the table for failure messages: the header, then every
// entity with its state, incarnation and alarms.
func (tb table) String() string {
	if tb.err != nil {
		return fmt.Sprintf("  node %d: %v\n", tb.node, tb.err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  node %d: master %d epoch %d seq %d stale %v writer-alive %v:", tb.node, tb.hdr.Master, tb.hdr.Epoch,
		tb.hdr.Seq, tb.hdr.Stale, tb.hdr.WriterAlive)
	names := make([]string, 0, len(tb.byName))
	for n := range tb.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		e := tb.byName[n]
		fmt.Fprintf(&b, " %s=%s", n, stateName(e.State))
		if e.Kind == wire.KindNode {
			fmt.Fprintf(&b, "(inc %d)", e.Incarnation)
		}
		for _, a := range e.AlarmList() {
			fmt.Fprintf(&b, "[%s]", a.CauseBytes())
		}
	}
	b.WriteByte('\n')
	return b.String()
}

func fmtTables(l []table) string {
	var b strings.Builder
	for _, tb := range l {
		b.WriteString(tb.String())
	}
	return b.String()
}

// ---- polling ----

// eventually polls cond until it holds, and returns how long that took. On
// timeout it fails the test with what cond last observed. It fails early,
// so that cleanup still runs, when go test's own -timeout is near.
func (c *cluster) eventually(timeout time.Duration, what string, cond func() (ok bool, observed string)) time.Duration {
	c.t.Helper()
	return c.eventuallyEvery(pollEvery, timeout, what, cond)
}

// eventuallyEvery is eventually polling every d.
func (c *cluster) eventuallyEvery(d, timeout time.Duration, what string, cond func() (ok bool, observed string)) time.Duration {
	c.t.Helper()
	start := time.Now()
	end := start.Add(timeout)
	if dl, ok := c.t.Deadline(); ok && dl.Add(-15*time.Second).Before(end) {
		end = dl.Add(-15 * time.Second)
	}
	var last string
	for {
		ok, obs := cond()
		if ok {
			return time.Since(start)
		}
		last = obs
		if time.Now().After(end) {
			c.t.Fatalf("%s: not within %v; last observed:\n%s", what, time.Since(start).Round(time.Millisecond), last)
		}
		time.Sleep(d)
	}
}

// ---- event traces ----

// tracer records the changes a node publishes in its shared memory's event
// ring, for failure messages: the order of changes is what explains a
// wrong final state.
type tracer struct {
	node  int
	stop  chan struct{}
	done  chan struct{}
	lines []string
}

// trace follows node i's event ring until stop is called. Changes of link
// entities are left out (there are many, and they are checked elsewhere).
func (c *cluster) trace(i int) *tracer {
	tr := &tracer{node: i, stop: make(chan struct{}), done: make(chan struct{})}
	r, err := shmem.Open(c.nodes[i-1].shm)
	if err != nil {
		tr.lines = append(tr.lines, err.Error())
		close(tr.done)
		return tr
	}
	f, err := r.Follow()
	if err != nil {
		r.Close()
		tr.lines = append(tr.lines, err.Error())
		close(tr.done)
		return tr
	}
	start := time.Now()
	names := make(map[uint64]string)
	name := func(id uint64) string {
		if n, ok := names[id]; ok {
			return n
		}
		var e shmem.Entity
		if r.Read(id, &e) != nil {
			return fmt.Sprintf("%#016x", id)
		}
		names[id] = e.NameString()
		return names[id]
	}
	go func() {
		defer close(tr.done)
		defer r.Close()
		var ev shmem.Event
		for {
			lost, ok := f.Next(&ev)
			if lost > 0 {
				tr.lines = append(tr.lines, fmt.Sprintf("(%d events lost)", lost))
			}
			if !ok {
				select {
				case <-tr.stop:
					return
				case <-time.After(time.Millisecond):
				}
				continue
			}
			n := name(ev.EntityID)
			if strings.Contains(n, "/link/") {
				continue
			}
			line := fmt.Sprintf("%8v seq %4d %-7s %s", time.Since(start).Round(time.Millisecond), ev.TableSeq, ev.Kind, n)
			if ev.Kind == shmem.EventStateChanged {
				line += " " + stateName(ev.State)
			}
			tr.lines = append(tr.lines, line)
		}
	}()
	return tr
}

// String stops the tracer and returns what it saw.
func (tr *tracer) String() string {
	select {
	case <-tr.stop:
	default:
		close(tr.stop)
	}
	<-tr.done
	return fmt.Sprintf("changes published by node %d (links left out):\n    %s", tr.node, strings.Join(tr.lines, "\n    "))
}

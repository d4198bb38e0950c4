// Command vrrp measures keepalived's VRRP failover, the peer fmagent's
// detection is compared with (issue 13): N keepalived routers, each in a
// network namespace of its own, on a bridge in another namespace, all
// created by this program and removed when it ends (nothing else is ever
// touched), adverts every 10 ms (VRRPv3), so the backups' master-down
// interval is 3 × 10 ms plus the skew time. An observer in a namespace of
// its own on the same bridge reads every VRRP advertisement (a raw socket,
// IP protocol 112) and stamps CLOCK_MONOTONIC.
//
// Per variant (without and with `vrrp_rt_priority 99`): an idle soak that
// counts takeovers while nothing was killed (false ones), then kill -9 of
// the master's keepalived processes (the VRRP child first) → the new
// master's first advertisement seen on the bridge; the killed router is
// restarted, takes the master role back (preemption), and the next kill
// follows.
//
//	go run ./bench/cmd/vrrp [-routers 3] [-kills 10] [-soak 20s] [-out bench/results]
//
// It needs root (namespaces), iproute2 and keepalived (Debian's package;
// `make bench-peers` installs it). Without keepalived it says so and exits
// 3, so that make can skip the row.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/bench"
)

// quit is closed on SIGINT or SIGTERM: the measurement stops, and the
// namespaces and processes are still removed.
var quit = make(chan struct{})

const observerEnv = "FMAGENT_BENCH_VRRP_OBSERVER"

func main() {
	if os.Getenv(observerEnv) != "" {
		os.Exit(observe())
	}
	os.Exit(run())
}

func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// observe prints "advert SRC PRIORITY MONO" for every VRRP packet (run
// inside the observer's namespace).
func observe() int {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, 112)
	if err != nil {
		fmt.Printf("fail raw socket: %v\n", err)
		return 1
	}
	ifi, err := net.InterfaceByName("eth0")
	if err != nil {
		fmt.Printf("fail %v\n", err)
		return 1
	}
	mreq := &unix.IPMreqn{Multiaddr: [4]byte{224, 0, 0, 18}, Ifindex: int32(ifi.Index)}
	if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq); err != nil {
		fmt.Printf("fail join 224.0.0.18: %v\n", err)
		return 1
	}
	fmt.Println("ready")
	w := bufio.NewWriter(os.Stdout)
	buf := make([]byte, 2048)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		t := monoNow()
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			fmt.Printf("fail %v\n", err)
			return 1
		}
		if n < 20 {
			continue
		}
		ihl := int(buf[0]&0x0f) * 4
		if n < ihl+4 {
			continue
		}
		src := net.IP(buf[12:16]).String()
		fmt.Fprintf(w, "advert %s %d %d\n", src, buf[ihl+2], t)
		w.Flush()
	}
}

type advert struct {
	src  string
	prio int
	mono int64
}

// lab is the namespaces, the bridge and the routers.
type lab struct {
	id       string // unique part of every name
	routers  int
	net      string // 10.X.Y
	dir      string
	rtPrio   bool
	ns       []string // ns[0]: bridge, ns[1..routers]: routers, ns[routers+1]: observer
	procs    []*exec.Cmd
	obs      *exec.Cmd
	adverts  chan advert
	logf     func(string, ...any)
	cleanups []func()
}

func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (l *lab) ip(i int) string { return fmt.Sprintf("%s.%d", l.net, i) }

// setup creates the namespaces, the bridge and the veths.
func (l *lab) setup() error {
	br := "fmkb" + l.id + "br"
	l.ns = append(l.ns, br)
	if err := sh("ip", "netns", "add", br); err != nil {
		return err
	}
	l.cleanups = append(l.cleanups, func() { sh("ip", "netns", "del", br) })
	if err := sh("ip", "-n", br, "link", "add", "br0", "type", "bridge"); err != nil {
		return err
	}
	if err := sh("ip", "-n", br, "link", "set", "br0", "up"); err != nil {
		return err
	}
	for i := 1; i <= l.routers+1; i++ {
		ns := fmt.Sprintf("fmkb%s%d", l.id, i)
		l.ns = append(l.ns, ns)
		if err := sh("ip", "netns", "add", ns); err != nil {
			return err
		}
		l.cleanups = append(l.cleanups, func() { sh("ip", "netns", "del", ns) })
		port := fmt.Sprintf("p%d", i)
		// The veth is made in the bridge's namespace and one end moved.
		if err := sh("ip", "-n", br, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns); err != nil {
			return err
		}
		for _, c := range [][]string{
			{"ip", "-n", br, "link", "set", port, "master", "br0"},
			{"ip", "-n", br, "link", "set", port, "up"},
			{"ip", "-n", ns, "link", "set", "lo", "up"},
			{"ip", "-n", ns, "addr", "add", l.ip(i) + "/24", "dev", "eth0"},
			{"ip", "-n", ns, "link", "set", "eth0", "up"},
		} {
			if err := sh(c...); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *lab) config(i int) string {
	rt := ""
	if l.rtPrio {
		rt = "    vrrp_rt_priority 99\n"
	}
	return fmt.Sprintf(`global_defs {
    router_id r%d
    vrrp_version 3
%s    script_user root
    enable_script_security
}
vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority %d
    advert_int 0.01
    virtual_ipaddress {
        %s/24
    }
}
`, i, rt, 100+10*(l.routers-i+1), l.ip(200))
}

// start runs router i's keepalived (VRRP only, in the foreground).
func (l *lab) start(i int) error {
	conf := filepath.Join(l.dir, fmt.Sprintf("r%d.conf", i))
	if err := os.WriteFile(conf, []byte(l.config(i)), 0o644); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(l.dir, fmt.Sprintf("r%d.log", i)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command("ip", "netns", "exec", l.ns[i], "keepalived", "-n", "-l", "-D", "-G", "-P", "-f", conf,
		"-p", filepath.Join(l.dir, fmt.Sprintf("r%d.pid", i)), "-r", filepath.Join(l.dir, fmt.Sprintf("r%d.vrrp.pid", i)),
		"-c", filepath.Join(l.dir, fmt.Sprintf("r%d.chk.pid", i)))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	for len(l.procs) <= i {
		l.procs = append(l.procs, nil)
	}
	l.procs[i] = cmd
	go func() { cmd.Wait(); logf.Close() }()
	return nil
}

// vrrpPID is router i's VRRP child, from its pid file (0: not yet).
func (l *lab) vrrpPID(i int) int {
	b, err := os.ReadFile(filepath.Join(l.dir, fmt.Sprintf("r%d.vrrp.pid", i)))
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return p
}

// kill kill -9s router i's VRRP child (the one that sends adverts), then
// its parent; it returns CLOCK_MONOTONIC just before the first kill.
func (l *lab) kill(i int) (int64, error) {
	child := l.vrrpPID(i)
	if child == 0 {
		return 0, fmt.Errorf("router %d: no VRRP child pid", i)
	}
	t0 := monoNow()
	err := syscall.Kill(child, syscall.SIGKILL)
	if p := l.procs[i]; p != nil && p.Process != nil {
		p.Process.Signal(syscall.SIGKILL)
	}
	os.Remove(filepath.Join(l.dir, fmt.Sprintf("r%d.vrrp.pid", i)))
	return t0, err
}

func (l *lab) startObserver(self string) error {
	cmd := exec.Command("ip", "netns", "exec", l.ns[l.routers+1], self)
	cmd.Env = append(os.Environ(), observerEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	l.obs = cmd
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "ready" {
		return fmt.Errorf("observer: %s", sc.Text())
	}
	go func() {
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 4 && f[0] == "advert" {
				p, _ := strconv.Atoi(f[2])
				t, _ := strconv.ParseInt(f[3], 10, 64)
				l.adverts <- advert{src: f[1], prio: p, mono: t}
			}
		}
	}()
	return nil
}

func (l *lab) stop() {
	for i, p := range l.procs {
		if p == nil || p.Process == nil {
			continue
		}
		if c := l.vrrpPID(i); c != 0 {
			syscall.Kill(c, syscall.SIGKILL)
		}
		p.Process.Signal(syscall.SIGKILL)
	}
	if l.obs != nil && l.obs.Process != nil {
		l.obs.Process.Kill()
		l.obs.Wait()
	}
	time.Sleep(100 * time.Millisecond)
	for k := len(l.cleanups) - 1; k >= 0; k-- {
		l.cleanups[k]()
	}
	os.RemoveAll(l.dir)
}

// waitMaster waits until src has sent adverts for a while (it is the
// stable master) and returns what else arrived meanwhile: any other source.
func (l *lab) waitMaster(src string, settle, timeout time.Duration) error {
	deadline := time.After(timeout)
	var since time.Time
	for {
		select {
		case a := <-l.adverts:
			if a.src != src {
				since = time.Time{}
				continue
			}
			if since.IsZero() {
				since = time.Now()
			}
			if time.Since(since) >= settle {
				return nil
			}
		case <-deadline:
			return fmt.Errorf("%s did not become the stable master within %v", src, timeout)
		}
	}
}

// Result is one variant's figures.
type Result struct {
	Variant        string          `json:"variant"`
	Routers        int             `json:"routers"`
	AdvertInterval time.Duration   `json:"advert_interval_ns"`
	RTPriority     bool            `json:"vrrp_rt_priority_99"`
	Soak           time.Duration   `json:"soak_ns"`
	FalseTakeovers int             `json:"false_takeovers"` // during the soak
	Takeover       []time.Duration `json:"takeover_ns"`     // kill -9 → the new master's first advert
	P50            time.Duration   `json:"p50_ns"`
	P99            time.Duration   `json:"p99_ns"`
	Max            time.Duration   `json:"max_ns"`
	LoadBefore     float64         `json:"load_average_before"`
	LoadAfter      float64         `json:"load_average_after"`
	Error          string          `json:"error,omitempty"`
}

func measure(self string, routers, kills int, soak time.Duration, rt bool, logf func(string, ...any)) (res Result) {
	res = Result{Variant: "10ms x 3", Routers: routers, AdvertInterval: 10 * time.Millisecond, RTPriority: rt, Soak: soak, LoadBefore: bench.LoadAverage()}
	if rt {
		res.Variant += ", vrrp_rt_priority 99"
	}
	defer func() { res.LoadAfter = bench.LoadAverage() }()
	dir, err := os.MkdirTemp("", "fmkb")
	if err != nil {
		res.Error = err.Error()
		return res
	}
	l := &lab{id: fmt.Sprintf("%d%d", os.Getpid()%10000, rand.IntN(100)), routers: routers, rtPrio: rt, dir: dir,
		net: fmt.Sprintf("10.%d.%d", 200+rand.IntN(50), rand.IntN(250)), adverts: make(chan advert, 4096), logf: logf}
	defer l.stop()
	if err := l.setup(); err != nil {
		res.Error = err.Error()
		return res
	}
	if err := l.startObserver(self); err != nil {
		res.Error = err.Error()
		return res
	}
	for i := 1; i <= routers; i++ {
		if err := l.start(i); err != nil {
			res.Error = err.Error()
			return res
		}
	}
	// Router 1 has the highest priority: it is the master once stable.
	if err := l.waitMaster(l.ip(1), time.Second, 20*time.Second); err != nil {
		res.Error = "forming: " + err.Error()
		return res
	}
	logf("[keepalived rt=%v] %d routers, master %s; soak %v", rt, routers, l.ip(1), soak)
	end := time.After(soak)
	last := l.ip(1)
soaking:
	for {
		select {
		case a := <-l.adverts:
			if a.src != last {
				res.FalseTakeovers++
				last = a.src
			}
		case <-end:
			break soaking
		case <-quit:
			res.Error = "interrupted"
			return res
		}
	}
	if last != l.ip(1) {
		if err := l.waitMaster(l.ip(1), time.Second, 20*time.Second); err != nil {
			res.Error = "after the soak: " + err.Error()
			return res
		}
	}
	for k := 0; k < kills; k++ {
		select {
		case <-quit:
			res.Error = "interrupted"
			return res
		default:
		}
		t0, err := l.kill(1)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		var took time.Duration
		timeout := time.After(5 * time.Second)
	wait:
		for {
			select {
			case a := <-l.adverts:
				if a.src != l.ip(1) && a.mono > t0 {
					took = time.Duration(a.mono - t0)
					break wait
				}
			case <-timeout:
				res.Error = fmt.Sprintf("kill %d: no takeover within 5s", k)
				return res
			}
		}
		res.Takeover = append(res.Takeover, took)
		logf("[keepalived rt=%v] kill %d: takeover after %v", rt, k+1, took.Round(time.Microsecond))
		time.Sleep(200 * time.Millisecond)
		if err := l.start(1); err != nil {
			res.Error = err.Error()
			return res
		}
		if err := l.waitMaster(l.ip(1), 500*time.Millisecond, 20*time.Second); err != nil {
			res.Error = fmt.Sprintf("kill %d, restart: %v", k, err)
			return res
		}
	}
	res.P50, res.P99, res.Max = bench.Dist(res.Takeover).P50(), bench.Dist(res.Takeover).P99(), bench.Dist(res.Takeover).Max()
	return res
}

func run() int {
	routers := flag.Int("routers", 3, "keepalived routers")
	kills := flag.Int("kills", 10, "kill -9 repetitions per variant")
	soak := flag.Duration("soak", 20*time.Second, "idle window per variant in which takeovers (false) are counted")
	out := flag.String("out", "", "write the JSON results under DIR as keepalived-<time>.json and keepalived-latest.json")
	verbose := flag.Bool("v", false, "progress on stderr")
	flag.Parse()
	if _, err := exec.LookPath("keepalived"); err != nil {
		fmt.Println("keepalived: not installed (Debian package keepalived; make bench-peers installs it): row skipped")
		return 3
	}
	if os.Geteuid() != 0 {
		fmt.Println("keepalived: needs root for network namespaces: row skipped")
		return 3
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// On ^C, stop measuring but still remove the namespaces (the deferred
	// stops of measure run as it returns).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() { <-sigs; close(quit) }()
	logf := func(f string, a ...any) {
		if *verbose {
			fmt.Fprintf(os.Stderr, f+"\n", a...)
		}
	}
	ver, _ := exec.Command("keepalived", "--version").CombinedOutput()
	version, _, _ := strings.Cut(string(ver), "\n")
	started := time.Now().UTC()
	var results []Result
	failed := false
	for _, rt := range []bool{false, true} {
		r := measure(self, *routers, *kills, *soak, rt, logf)
		results = append(results, r)
		failed = failed || r.Error != ""
	}
	fmt.Printf("%s, %d routers in network namespaces on a bridge, VRRPv3 adverts every 10 ms (master down after 3 × 10 ms + skew); kill -9 of the master → the new master's first advert on the bridge (%d kills, %v idle soak before)\n\n",
		strings.TrimSpace(version), *routers, *kills, *soak)
	fmt.Println("| variant | takeover p50 | p99 | max | false takeovers in soak | load avg |")
	fmt.Println("|---|---:|---:|---:|---:|---|")
	for _, r := range results {
		if r.Error != "" {
			fmt.Printf("| %s | error: %s | | | %d | %.1f–%.1f |\n", r.Variant, r.Error, r.FalseTakeovers, r.LoadBefore, r.LoadAfter)
			continue
		}
		fmt.Printf("| %s | %.1fms | %.1fms | %.1fms | %d | %.1f–%.1f |\n", r.Variant, ms(r.P50), ms(r.P99), ms(r.Max), r.FalseTakeovers, r.LoadBefore, r.LoadAfter)
	}
	if *out != "" {
		doc := map[string]any{
			"benchmark": "keepalived", "keepalived": strings.TrimSpace(version), "started": started, "finished": time.Now().UTC(),
			"cpus": runtime.NumCPU(), "go": runtime.Version(), "args": os.Args[1:], "results": results,
			"note": "measured on a shared machine, under the load of other jobs (load_average_*)",
		}
		p, err := bench.WriteResults(*out, "keepalived", doc)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("results: %s\n", p)
	}
	if failed {
		return 1
	}
	return 0
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// Command memberlist measures hashicorp/memberlist's failure detection on
// loopback, the peer fmagent is compared with (issue 13): N real processes
// (this program run again, one memberlist each, on 127.0.0.1), kill -9 of
// one, and the time until every other member's NotifyLeave has fired for
// it. Before the kills, each settings profile soaks idle for a while and
// counts false deaths (a member declared dead while no process died).
//
// With -hog-soak DURATION, each profile then soaks a second time, for that
// long, with every core kept busy as fmagent's own soak (soak/) does:
// runtime.NumCPU() CPU burners, soak's own (-burner "SOAK -burn", which
// `make bench-peers` builds): each at the normal scheduling policy on every
// thread, GOMAXPROCS(1), spinning until killed.
// The false deaths of that window (and of the wait, once the burners are
// gone, until every member sees every other alive again: memberlist refutes
// a false death, so the members declared dead rejoin) are counted apart from
// the idle ones, and the kills start only once the cluster is whole again.
// A profile whose idle soak already saw a false death skips the hog window.
// Both verdicts are printed: the fastest setting without false deaths (idle
// soak and kills, as without the flag) and the fastest without false deaths
// under the CPU hog as well (the rule fmagent's own profiles are judged by).
//
// It is a separate Go module so that memberlist stays out of fmagent's
// dependencies.
//
//	go run . [-nodes 5] [-kills 5] [-soak 20s] [-hog-soak 0 -burner "SOAK -burn"] [-profiles lan,p200ms,p100ms,p50ms,p20ms,p10ms,p5ms] [-out ../../results]
//
// Profiles: "lan" is memberlist.DefaultLANConfig() as it is (probe every
// 1 s, probe timeout 500 ms, suspicion multiplier 4, gossip every 200 ms);
// "pDUR" is the LAN configuration scaled down: probe interval DUR, probe
// timeout DUR/2, gossip interval DUR/5, everything else LAN's. The fastest
// setting without false deaths is the shortest pDUR whose soak saw none.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
	"golang.org/x/sys/unix"
)

const (
	helperEnv = "FMAGENT_BENCH_MEMBERLIST_NODE"
)

func main() {
	if os.Getenv(helperEnv) != "" {
		os.Exit(nodeMain())
	}
	os.Exit(run())
}

// startBurners starts n CPU burners, each the command burner (soak's
// burner: `soak -burn`); each dies with the harness (Pdeathsig).
func startBurners(burner []string, n int) ([]*exec.Cmd, error) {
	var cmds []*exec.Cmd
	for i := 0; i < n; i++ {
		cmd := exec.Command(burner[0], burner[1:]...)
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			stopBurners(cmds)
			return nil, fmt.Errorf("starting a CPU burner: %w", err)
		}
		cmds = append(cmds, cmd)
	}
	return cmds, nil
}

// stopBurners kills the burners and waits for them.
func stopBurners(cmds []*exec.Cmd) {
	for _, c := range cmds {
		c.Process.Kill()
	}
	for _, c := range cmds {
		c.Wait()
	}
}

func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// config returns the memberlist configuration of a profile.
func config(profile string) (*memberlist.Config, error) {
	c := memberlist.DefaultLANConfig()
	if profile == "lan" {
		return c, nil
	}
	if d, ok := strings.CutPrefix(profile, "p"); ok {
		p, err := time.ParseDuration(d)
		if err == nil && p > 0 {
			c.ProbeInterval = p
			c.ProbeTimeout = p / 2
			c.GossipInterval = p / 5
			return c, nil
		}
	}
	return nil, fmt.Errorf("profile %q: want lan or pDURATION (e.g. p100ms)", profile)
}

// events prints what the member sees: "join NAME MONO", "leave NAME MONO".
type events struct {
	mu  chan struct{}
	out io.Writer
}

func (e *events) say(kind string, n *memberlist.Node) {
	t := monoNow()
	e.mu <- struct{}{}
	fmt.Fprintf(e.out, "%s %s %d\n", kind, n.Name, t)
	<-e.mu
}

func (e *events) NotifyJoin(n *memberlist.Node)   { e.say("join", n) }
func (e *events) NotifyLeave(n *memberlist.Node)  { e.say("leave", n) }
func (e *events) NotifyUpdate(n *memberlist.Node) {}

// nodeMain is one member: NAME PORT PROFILE [JOIN-ADDR].
func nodeMain() int {
	args := strings.Fields(os.Getenv(helperEnv))
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, "memberlist node: bad arguments")
		return 2
	}
	port, _ := strconv.Atoi(args[1])
	c, err := config(args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ev := &events{mu: make(chan struct{}, 1), out: os.Stdout}
	c.Name = args[0]
	c.BindAddr, c.BindPort = "127.0.0.1", port
	c.AdvertiseAddr, c.AdvertisePort = "127.0.0.1", port
	c.LogOutput = io.Discard
	c.Events = ev
	m, err := memberlist.Create(c)
	if err != nil {
		fmt.Fprintf(os.Stdout, "fail %v\n", err)
		return 1
	}
	if len(args) > 3 {
		if _, err := m.Join(args[3:]); err != nil {
			fmt.Fprintf(os.Stdout, "fail join: %v\n", err)
			return 1
		}
	}
	ev.mu <- struct{}{}
	fmt.Fprintln(os.Stdout, "ready")
	<-ev.mu
	io.Copy(io.Discard, os.Stdin) // until the harness closes stdin
	return 0
}

// line is one event of one member.
type line struct {
	member string // who saw it
	kind   string
	name   string
	mono   int64
}

// parseEvent parses "join NAME MONO" or "leave NAME MONO" from member.
func parseEvent(member, s string) (line, bool) {
	f := strings.Fields(s)
	if len(f) != 3 || (f[0] != "join" && f[0] != "leave") {
		return line{}, false
	}
	t, err := strconv.ParseInt(f[2], 10, 64)
	return line{member: member, kind: f[0], name: f[1], mono: t}, err == nil
}

type member struct {
	name  string
	port  int
	cmd   *exec.Cmd
	stdin io.Closer
	done  chan struct{}
}

type cluster struct {
	self    string
	profile string
	members map[string]*member
	events  chan line
	seen    map[key]int64 // when each member first saw each event
	down    map[pair]bool // a member's last word on another: leave
	gen     int
}

// pair is a member (who) and another it has an opinion on (of).
type pair struct{ who, of string }

func (c *cluster) start(join string) (*member, error) {
	c.gen++
	name := fmt.Sprintf("m%d", c.gen)
	for try := 0; ; try++ {
		port := 30000 + rand.IntN(20000)
		args := fmt.Sprintf("%s %d %s", name, port, c.profile)
		if join != "" {
			args += " " + join
		}
		cmd := exec.Command(c.self)
		cmd.Env = append(os.Environ(), helperEnv+"="+args)
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		in, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(out)
		status := ""
		for sc.Scan() {
			if l, ok := parseEvent(name, sc.Text()); ok {
				c.events <- l // its own join comes before "ready"
				continue
			}
			status = sc.Text()
			break
		}
		if status != "ready" {
			in.Close()
			cmd.Wait()
			if try < 5 && strings.Contains(status, "address already in use") {
				continue
			}
			return nil, fmt.Errorf("member %s did not start: %s", name, status)
		}
		m := &member{name: name, port: port, cmd: cmd, stdin: in, done: make(chan struct{})}
		c.members[name] = m
		go func() {
			for sc.Scan() {
				if l, ok := parseEvent(name, sc.Text()); ok {
					c.events <- l
				}
			}
			cmd.Wait()
			close(m.done)
		}()
		return m, nil
	}
}

// names returns the live members' names.
func (c *cluster) names() []string {
	var out []string
	for n := range c.members {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

type key struct{ member, kind, name string }

// take records one event; a leave of a member that is alive is a false
// death.
func (c *cluster) take(l line, falseDeaths *int) {
	// A join is kept at its first sighting, a leave at its last: a member
	// falsely declared dead, seen alive again and then killed is timed
	// from the kill's leave (waitAllSee's since), not the false one.
	k := key{l.member, l.kind, l.name}
	if _, ok := c.seen[k]; !ok || l.kind == "leave" {
		c.seen[k] = l.mono
	}
	c.down[pair{l.member, l.name}] = l.kind == "leave"
	if l.kind == "leave" && c.members[l.name] != nil && falseDeaths != nil {
		*falseDeaths++
	}
}

// waitAllSee waits until every member in who has seen kind of name at or
// after since (CLOCK_MONOTONIC ns; 0: ever), and returns when each saw it.
func (c *cluster) waitAllSee(who []string, kind, name string, since int64, timeout time.Duration, falseDeaths *int) (map[string]int64, error) {
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for {
		seen := map[string]int64{}
		for _, w := range who {
			if t, ok := c.seen[key{w, kind, name}]; ok && t >= since {
				seen[w] = t
			}
		}
		if len(seen) == len(who) {
			return seen, nil
		}
		select {
		case l := <-c.events:
			c.take(l, falseDeaths)
		case <-tm.C:
			return seen, fmt.Errorf("%d of %d members saw %s %s within %v", len(seen), len(who), kind, name, timeout)
		}
	}
}

// waitAllAlive waits until every live member has seen every other join and,
// since, no leave of it: the cluster whole again after false deaths (a
// member declared dead refutes it and is seen to join again).
func (c *cluster) waitAllAlive(timeout time.Duration, falseDeaths *int) error {
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for {
		names := c.names()
		missing := 0
		for _, w := range names {
			for _, o := range names {
				if _, joined := c.seen[key{w, "join", o}]; w != o && (!joined || c.down[pair{w, o}]) {
					missing++
				}
			}
		}
		if missing == 0 {
			return nil
		}
		select {
		case l := <-c.events:
			c.take(l, falseDeaths)
		case <-tm.C:
			return fmt.Errorf("%d of %d members' views of another not alive within %v", missing, len(names)*(len(names)-1), timeout)
		}
	}
}

// hogWindow soaks for d with burners CPU burners running, counting false
// deaths; the burners are killed and waited for when it ends, whatever the
// outcome.
func (c *cluster) hogWindow(d time.Duration, burner []string, burners int, falseDeaths *int) error {
	cmds, err := startBurners(burner, burners)
	if err != nil {
		return err
	}
	defer stopBurners(cmds)
	end := time.NewTimer(d)
	defer end.Stop()
	for {
		select {
		case l := <-c.events:
			c.take(l, falseDeaths)
		case <-end.C:
			return nil
		}
	}
}

func (c *cluster) stop() {
	for _, m := range c.members {
		m.stdin.Close()
	}
	for _, m := range c.members {
		select {
		case <-m.done:
		case <-time.After(3 * time.Second):
			m.cmd.Process.Kill()
			<-m.done
		}
	}
}

// Result is one profile's figures.
type Result struct {
	Profile        string          `json:"profile"`
	Nodes          int             `json:"nodes"`
	ProbeInterval  time.Duration   `json:"probe_interval_ns"`
	ProbeTimeout   time.Duration   `json:"probe_timeout_ns"`
	GossipInterval time.Duration   `json:"gossip_interval_ns"`
	SuspicionMult  int             `json:"suspicion_mult"`
	Soak           time.Duration   `json:"soak_ns"`
	FalseDeaths    int             `json:"false_deaths"` // during the soak and the kills
	Detect         []time.Duration `json:"detect_ns"`    // kill -9 → every other member's NotifyLeave
	P50            time.Duration   `json:"p50_ns"`
	P99            time.Duration   `json:"p99_ns"`
	Max            time.Duration   `json:"max_ns"`
	LoadBefore     float64         `json:"load_average_before"`
	LoadAfter      float64         `json:"load_average_after"`
	Error          string          `json:"error,omitempty"`

	// The hog window (-hog-soak): how long it ran (0 if it did not), its
	// false deaths (and those of the wait for every member to be seen alive
	// again after it), and whether it was skipped for the idle soak's.
	HogSoak        time.Duration `json:"hog_soak_ns"`
	FalseDeathsHog int           `json:"false_deaths_hog"`
	HogSkipped     bool          `json:"hog_skipped,omitempty"`
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	k := int(float64(len(s))*q+0.999999) - 1
	return s[max(0, min(k, len(s)-1))]
}

func loadavg() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func measure(self, profile string, n, kills int, soak, hog time.Duration, burner []string, logf func(string, ...any)) (res Result) {
	cfg, err := config(profile)
	res = Result{Profile: profile, Nodes: n, ProbeInterval: cfg.ProbeInterval, ProbeTimeout: cfg.ProbeTimeout,
		GossipInterval: cfg.GossipInterval, SuspicionMult: cfg.SuspicionMult, Soak: soak, LoadBefore: loadavg()}
	defer func() {
		res.LoadAfter = loadavg()
		// The kills measured before an error are figures too (the table
		// says how many there were and why the rest are missing).
		res.P50, res.P99, res.Max = quantile(res.Detect, 0.5), quantile(res.Detect, 0.99), quantile(res.Detect, 1)
	}()
	if err != nil {
		res.Error = err.Error()
		return res
	}
	c := &cluster{self: self, profile: profile, members: map[string]*member{}, events: make(chan line, 1024), seen: map[key]int64{}, down: map[pair]bool{}}
	defer c.stop()
	// Detection and joining scale with the probe interval.
	timeout := 40*cfg.ProbeInterval + 10*time.Second
	first, err := c.start("")
	if err != nil {
		res.Error = err.Error()
		return res
	}
	join := fmt.Sprintf("127.0.0.1:%d", first.port)
	for i := 1; i < n; i++ {
		if _, err := c.start(join); err != nil {
			res.Error = err.Error()
			return res
		}
	}
	// Formed: every member has seen every other join.
	for _, name := range c.names() {
		if _, err := c.waitAllSee(c.names(), "join", name, 0, timeout, &res.FalseDeaths); err != nil {
			res.Error = "forming: " + err.Error()
			return res
		}
	}
	logf("[memberlist %s] %d members formed; soak %v", profile, n, soak)
	end := time.After(soak)
soaking:
	for {
		select {
		case l := <-c.events:
			c.take(l, &res.FalseDeaths)
		case <-end:
			break soaking
		}
	}
	switch {
	case hog > 0 && res.FalseDeaths > 0:
		res.HogSkipped = true
		logf("[memberlist %s] %d false deaths in the idle soak: hog soak skipped", profile, res.FalseDeaths)
	case hog > 0:
		burners := runtime.NumCPU()
		logf("[memberlist %s] hog soak %v, %d CPU burners", profile, hog, burners)
		if err := c.hogWindow(hog, burner, burners, &res.FalseDeathsHog); err != nil {
			res.Error = "hog soak: " + err.Error()
			return res
		}
		res.HogSoak = hog
		// A member declared dead under the hog refutes it and is seen to
		// join again: the kills start from a cluster in which every member
		// sees every other alive (a suspicion of the hog's that ends in a
		// death only now is the hog's too). A rejoin may wait for a
		// push/pull, as after a kill.
		if err := c.waitAllAlive(timeout+2*cfg.PushPullInterval, &res.FalseDeathsHog); err != nil {
			res.Error = "rejoin after the hog soak: " + err.Error()
			return res
		}
		logf("[memberlist %s] hog soak: %d false deaths; every member sees every other alive", profile, res.FalseDeathsHog)
	}
	for k := 0; k < kills; k++ {
		names := c.names()
		victim := names[(k+1)%len(names)] // never the first (the join address)
		if victim == first.name {
			victim = names[(k+2)%len(names)]
		}
		var others []string
		for _, nm := range names {
			if nm != victim {
				others = append(others, nm)
			}
		}
		m := c.members[victim]
		t0 := monoNow()
		m.cmd.Process.Signal(syscall.SIGKILL)
		delete(c.members, victim)
		seen, err := c.waitAllSee(others, "leave", victim, t0, timeout, &res.FalseDeaths)
		<-m.done
		if err != nil {
			res.Error = fmt.Sprintf("kill %d: %v", k+1, err)
			return res
		}
		var last int64
		for _, t := range seen {
			last = max(last, t)
		}
		res.Detect = append(res.Detect, time.Duration(last-t0))
		logf("[memberlist %s] kill %d: %s dead everywhere after %v", profile, k+1, victim, time.Duration(last-t0).Round(time.Millisecond))
		nm, err := c.start(join)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		// A member that missed the join's gossip learns of it at its next
		// push/pull (30 s on every profile: it is not scaled): a rejoin is
		// not what is measured, so wait for that too.
		if _, err := c.waitAllSee(c.names(), "join", nm.name, 0, timeout+2*cfg.PushPullInterval, &res.FalseDeaths); err != nil {
			res.Error = fmt.Sprintf("rejoin after kill %d: %v", k+1, err)
			return res
		}
		time.Sleep(2 * cfg.ProbeInterval)
	}
	return res
}

func run() int {
	n := flag.Int("nodes", 5, "members")
	kills := flag.Int("kills", 5, "kill -9 repetitions per profile")
	soak := flag.Duration("soak", 20*time.Second, "idle window per profile in which false deaths are counted")
	hog := flag.Duration("hog-soak", 0, "after the idle soak, a second window per profile with every core kept busy by CPU burners (fmagent's soak's, -burner), its false deaths counted apart (0: none)")
	burnerCmd := flag.String("burner", "", "with -hog-soak: the CPU burner's command line, soak's own (\"/path/to/soak -burn\"; make bench-peers builds it)")
	profiles := flag.String("profiles", "lan,p200ms,p100ms,p50ms,p20ms,p10ms,p5ms", "settings profiles: lan or pDURATION (LAN scaled to that probe interval)")
	out := flag.String("out", "", "write the JSON results under DIR as memberlist-<time>.json and memberlist-latest.json")
	verbose := flag.Bool("v", false, "progress on stderr")
	flag.Parse()
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	burner := strings.Fields(*burnerCmd)
	if *hog > 0 && len(burner) == 0 {
		fmt.Fprintln(os.Stderr, "memberlist: -hog-soak needs -burner (soak's burner: \"/path/to/soak -burn\")")
		return 2
	}
	signal.Ignore(syscall.SIGPIPE)
	logf := func(f string, a ...any) {
		if *verbose {
			fmt.Fprintf(os.Stderr, f+"\n", a...)
		}
	}
	started := time.Now().UTC()
	var results []Result
	failed := false
	for _, p := range strings.Split(*profiles, ",") {
		r := measure(self, strings.TrimSpace(p), *n, *kills, *soak, *hog, burner, logf)
		results = append(results, r)
		failed = failed || r.Error != ""
	}
	hogNote := ""
	if *hog > 0 {
		hogNote = fmt.Sprintf(", then %v under %d CPU burners", *hog, runtime.NumCPU())
	}
	fmt.Printf("hashicorp/memberlist v0.7.0, %d members on 127.0.0.1, kill -9 → every other member's NotifyLeave (%d kills per profile, %v idle soak before%s)\n\n", *n, *kills, *soak, hogNote)
	fmt.Println("| profile | probe interval | probe timeout | gossip | detect p50 | p99 | max | false deaths | false deaths under hog | load avg |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	fastest, fastestHog := "", ""
	var fastestP50, fastestHogP50 time.Duration
	var fastestN, fastestHogN int
	for _, r := range results {
		underHog := "—"
		switch {
		case r.HogSoak > 0:
			underHog = strconv.Itoa(r.FalseDeathsHog)
		case r.HogSkipped:
			underHog = "skipped (idle false deaths)"
		}
		if len(r.Detect) == 0 {
			fmt.Printf("| %s | %v | %v | %v | error: %s | | | %d | %s | %.1f–%.1f |\n", r.Profile, r.ProbeInterval, r.ProbeTimeout, r.GossipInterval, r.Error, r.FalseDeaths, underHog, r.LoadBefore, r.LoadAfter)
			continue
		}
		p50 := r.P50.Round(time.Millisecond).String()
		if r.Error != "" {
			p50 += fmt.Sprintf(" (%d of %d kills; then %s)", len(r.Detect), *kills, r.Error)
		}
		fmt.Printf("| %s | %v | %v | %v | %s | %v | %v | %d | %s | %.1f–%.1f |\n", r.Profile, r.ProbeInterval, r.ProbeTimeout, r.GossipInterval,
			p50, r.P99.Round(time.Millisecond), r.Max.Round(time.Millisecond), r.FalseDeaths, underHog, r.LoadBefore, r.LoadAfter)
		if r.FalseDeaths == 0 && (fastest == "" || r.P50 < fastestP50) {
			fastest, fastestP50, fastestN = r.Profile, r.P50, len(r.Detect)
		}
		if r.FalseDeaths == 0 && r.HogSoak > 0 && r.FalseDeathsHog == 0 && (fastestHog == "" || r.P50 < fastestHogP50) {
			fastestHog, fastestHogP50, fastestHogN = r.Profile, r.P50, len(r.Detect)
		}
	}
	if fastest != "" {
		fmt.Printf("\nfastest without false deaths in this run: %s (detection p50 %v over %d kills)\n", fastest, fastestP50.Round(time.Millisecond), fastestN)
	}
	if *hog > 0 {
		if fastestHog != "" {
			fmt.Printf("fastest without false deaths under the CPU hog: %s (detection p50 %v over %d kills)\n", fastestHog, fastestHogP50.Round(time.Millisecond), fastestHogN)
		} else {
			fmt.Println("fastest without false deaths under the CPU hog: none in this run")
		}
	}
	if *out != "" {
		doc := map[string]any{
			"benchmark": "memberlist", "memberlist": "v0.7.0", "started": started, "finished": time.Now().UTC(),
			"cpus": runtime.NumCPU(), "go": runtime.Version(), "args": os.Args[1:], "results": results,
			"fastest_without_false_deaths": fastest,
			"note":                         "measured on a shared machine, under the load of other jobs (load_average_*)",
		}
		if *hog > 0 {
			doc["fastest_without_false_deaths_under_hog"] = fastestHog
		}
		if err := write(*out, "memberlist", doc); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if failed {
		return 1
	}
	return 0
}

func write(dir, name string, v any) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	p := filepath.Join(dir, fmt.Sprintf("%s-%s.json", name, time.Now().UTC().Format("20060102T150405Z")))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return err
	}
	fmt.Printf("results: %s\n", p)
	return os.WriteFile(filepath.Join(dir, name+"-latest.json"), b, 0o644)
}

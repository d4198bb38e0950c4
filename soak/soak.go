// Package soak is the false-down soak of issue 13: N real agents on
// loopback, every core kept busy by a CPU burner the harness starts and
// stops itself, for a while per timing profile; it counts the false downs
// (every peer-down is one: nobody dies) and elections, measures the
// heartbeat gaps on the wire from an observer at SCHED_FIFO, and, before the
// hog, each idle agent's CPU and CPU per packet. `make soak` runs
// soak/cmd/soak; bench (docs/bench.md) may call Run for its tables.
//
// Timing figures are measurements, never pass/fail: a test of this package
// checks only that the harness counts what happens.
package soak

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/transport"
)

// Options of one soak run.
type Options struct {
	Agent    string        // the fmagent binary
	Nodes    int           // agents (default 5)
	Profile  string        // timing profile name ("20ms", "10ms", ...)
	Hog      time.Duration // how long under the CPU hog (default 60 s)
	Idle     time.Duration // idle measurement before the hog (default 10 s; <0 skips)
	Burners  int           // CPU burners (default runtime.NumCPU())
	BurnCmd  []string      // the burner's command line (one process per burner)
	Realtime bool          // the agents may use SCHED_FIFO ([realtime] enabled)
	Pin      bool          // pin agent i to the ith CPU this process may use, round robin ([realtime] cpus)
	Flood    int           // clients raising and clearing alarms on every agent during the hog (0: none)
	FloodCmd []string      // the flood client's command line; socket and entity name are appended
	// Listers are clients on every agent that register ListEntities
	// entities each before the hog, then list the whole table over and
	// over during it, as an operator's `fmctl list` or a monitoring
	// system's poll does (0: none). ListCmd is the list client's command
	// line; socket, name prefix and entity count are appended.
	Listers      int
	ListEntities int
	ListCmd      []string
	Dir          string // parent of the run's directory ("": the temp dir)
	Keep         bool   // keep the run's directory (agents' logs, configs) and say where
	Trace        bool   // each agent's [realtime] trace_dir: traces/ in its directory (keep them with Keep)
	LogLevel     string // the agents' -log-level ("": their default)
	// StallProbe is soak/vcpustall's binary ("": none): run for the hog's
	// duration beside the agents, it measures the machine's own stalls (a
	// pinned C thread at SCHED_FIFO 50 per CPU), the floor under every
	// agent's figures.
	StallProbe string
	Logf       func(format string, args ...any)
}

// Result of one soak run.
type Result struct {
	Profile     string        `json:"profile"`
	Bound       time.Duration `json:"bound_ns"`
	Nodes       int           `json:"nodes"`
	Realtime    bool          `json:"realtime"`
	Pinned      bool          `json:"pinned"` // Options.Pin
	Hog         time.Duration `json:"hog_ns"`
	Burners     int           `json:"burners"`
	LoadBefore  string        `json:"load_before"` // /proc/loadavg when the hog started
	LoadAfter   string        `json:"load_after"`
	FalseDowns  int64         `json:"false_downs"` // peer-down events summed over observers
	LinkDowns   int64         `json:"link_downs"`
	Elections   int64         `json:"elections"` // after the cluster formed
	Stalls      int64         `json:"stalls"`    // an agent found its own ticks late
	GapP50      time.Duration `json:"gap_p50_ns"`
	GapP99      time.Duration `json:"gap_p99_ns"`
	GapMax      time.Duration `json:"gap_max_ns"`
	Gaps        int           `json:"gaps"`
	IdleCPU     float64       `json:"idle_cpu_per_agent"` // fraction of a core, mean over agents
	IdlePackets float64       `json:"idle_packets_per_s_per_agent"`
	CPUPerPkt   time.Duration `json:"cpu_per_packet_ns"` // idle CPU / (sent + received)
	HogCPU      float64       `json:"hog_cpu_per_agent"`
	// Under the hog (and the flood, if any) and nothing before it: the
	// real-time loops' latest wake-up for a deadline and the garbage
	// collector's pauses (the upper bounds of their buckets), the maxima
	// over the agents; and the writes the flood had acknowledged.
	TickLateMax   time.Duration `json:"tick_late_max_ns"`
	YieldMax      time.Duration `json:"yield_max_ns"`     // the loops' longest yield to Go's scheduler
	YieldsOver    int64         `json:"yields_over_10ms"` // the loops' yields longer than 10 ms, summed
	LockWaitMax   time.Duration `json:"lock_wait_max_ns"` // the loops' longest wait for their agent's lock
	LockWaitsOver int64         `json:"lock_waits_over_10ms"`
	GCPauseP99    time.Duration `json:"gc_pause_p99_ns"`
	GCPauseMax    time.Duration `json:"gc_pause_max_ns"`
	// GCStoppingMax: of the longest pause, the longest time spent stopping
	// the world (a thread off the CPU holding one of Go's processors),
	// the upper bound of its bucket; 0 from an agent without the metric.
	GCStoppingMax time.Duration `json:"gc_stopping_max_ns"`
	FloodWrites   int64         `json:"flood_writes"`
	// Lists: whole-table lists the listers were answered during the hog;
	// TableSize: the entities in the table when the hog started.
	Lists     int64 `json:"lists,omitempty"`
	TableSize int   `json:"table_size,omitempty"`
	// The listers' registrations, before the hog and without it (a
	// registration storm: every lister at once, as applications starting
	// or owners re-asserting after a failover): how long they took, the
	// registrations that failed and were tried again, and the false downs
	// and elections meanwhile (summed over the agents, as under the hog).
	RegisterTime       time.Duration `json:"register_ns,omitempty"`
	RegisterRetries    int64         `json:"register_retries,omitempty"`
	RegisterFalseDowns int64         `json:"register_false_downs,omitempty"`
	RegisterElections  int64         `json:"register_elections,omitempty"`
	// RegisterStallMax is the machine's latest wake-up of the stall probe
	// meanwhile (Options.StallProbe; -1: not measured), and
	// RegisterOverruns the agents' wake-ups the machine made later than
	// the profile tolerates (fmagent_rt_profile_overruns_total), summed.
	// On this VM, CPUs busy and the disk written stall every vCPU for
	// 8–15 ms every 100 ms (docs/bench.md): a registration storm is both.
	RegisterStallMax time.Duration `json:"register_machine_stall_max_ns,omitempty"`
	RegisterOverruns int64         `json:"register_overruns,omitempty"`
	// Overruns: the same over the hog.
	Overruns int64 `json:"overruns"`
	// The machine's own stalls under the hog (Options.StallProbe): the
	// latest wake-up of a SCHED_FIFO 50 C thread pinned to each CPU, and
	// how many times one was more than 20 ms late. -1: not measured.
	MachineStallMax      time.Duration `json:"machine_stall_max_ns"`
	MachineStallEpisodes int           `json:"machine_stall_episodes"`
	// Silences are the times the observer heard nothing from some agent
	// on a network for longer than the bound (what a false down needs),
	// overlapping ones merged; SilencesInStall how many of them overlap
	// one of the machine's own stall episodes (more than 20 ms: -1 when
	// the probe did not run). The others are the agents' own.
	Silences        int `json:"silences"`
	SilencesInStall int `json:"silences_in_machine_stall"`
	// SilencesOwnLate: of the silences not in a machine stall, those in
	// a late tick that the silent agent logged itself (agent/rtlate.go),
	// by the cause it gave: yield, lock_wait, wake or work. What is in neither
	// is unexplained.
	SilencesOwnLate map[string]int `json:"silences_in_own_late_tick"`
}

type agentProc struct {
	id      int
	dir     string
	conf    string
	log     string
	metrics string
	cmd     *exec.Cmd
	done    chan struct{}
}

// Run runs one soak.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Nodes == 0 {
		o.Nodes = 5
	}
	if o.Hog == 0 {
		o.Hog = 60 * time.Second
	}
	if o.Idle == 0 {
		o.Idle = 10 * time.Second
	}
	if o.Burners == 0 {
		o.Burners = runtime.NumCPU()
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	dir, err := os.MkdirTemp(o.Dir, "fmsoak")
	if err != nil {
		return nil, err
	}
	if o.Keep {
		defer o.Logf("soak: agents' logs and configs kept under %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	x, y := 20+rand.IntN(200), 1+rand.IntN(250)
	groupA, groupB := fmt.Sprintf("239.255.%d.%d", x, y), fmt.Sprintf("239.255.%d.%d", x+1, y)
	port := 20000 + rand.IntN(20000)
	cluster := 1000 + rand.IntN(1<<30)
	shmPrefix := fmt.Sprintf("fmagent-soak-%d-%d", os.Getpid(), rand.IntN(1<<20))

	// The harness stays at the normal policy but for its observer's
	// thread (observer.run): at SCHED_FIFO (as it ran until 2 December
	// 2026) its Go runtime's threads, its collector's among them, took the
	// CPU from the agents' threads at the normal policy, which a real
	// node does not run beside them.
	obs, err := newObserver(groupA, groupB, port+1, uint32(cluster)) // the heartbeat port
	if err != nil {
		return nil, err
	}
	defer obs.close()

	agents := make([]*agentProc, o.Nodes)
	defer func() {
		for _, a := range agents {
			if a != nil && a.cmd != nil {
				a.cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-a.done:
				case <-time.After(3 * time.Second):
					a.cmd.Process.Kill()
					<-a.done
				}
			}
		}
		for i := range agents {
			os.Remove(fmt.Sprintf("/dev/shm/%s-%d", shmPrefix, i+1))
		}
	}()
	var cpus []int
	if o.Pin {
		if cpus, err = transport.ProcessCPUs(); err != nil {
			return nil, err
		}
	}
	for i := range agents {
		a := &agentProc{id: i + 1, dir: filepath.Join(dir, fmt.Sprintf("n%d", i+1))}
		pin := ""
		if len(cpus) > 0 {
			pin = fmt.Sprintf("cpus = [%d]", cpus[i%len(cpus)])
		}
		a.conf = a.dir + ".toml"
		a.log = a.dir + ".log"
		a.metrics = fmt.Sprintf("127.0.0.1:%d", 40000+rand.IntN(20000))
		if err := os.MkdirAll(a.dir, 0o755); err != nil {
			return nil, err
		}
		traceDir := ""
		if o.Trace {
			traceDir = fmt.Sprintf("trace_dir = %q", filepath.Join(a.dir, "traces"))
		}
		conf := fmt.Sprintf(`node_id = %d
cluster_id = %d
priority = %d
log_format = "json"
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
profile = %q
[realtime]
enabled = %v
%s
%s
[paths]
state_dir = %q
shm = "%s-%d"
[metrics]
listen = %q
`, a.id, cluster, 100+a.id, groupA, port, groupB, port, o.Profile, o.Realtime, pin, traceDir, a.dir, shmPrefix, a.id, a.metrics)
		if err := os.WriteFile(a.conf, []byte(conf), 0o644); err != nil {
			return nil, err
		}
		logf, err := os.Create(a.log)
		if err != nil {
			return nil, err
		}
		args := []string{"-config", a.conf}
		if o.LogLevel != "" {
			args = append(args, "-log-level", o.LogLevel)
		}
		a.cmd = exec.Command(o.Agent, args...)
		a.cmd.Stdout, a.cmd.Stderr = logf, logf
		a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		if err := a.cmd.Start(); err != nil {
			logf.Close()
			a.cmd = nil
			return nil, fmt.Errorf("soak: starting agent %d: %w", a.id, err)
		}
		a.done = make(chan struct{})
		go func() { a.cmd.Wait(); logf.Close(); close(a.done) }()
		agents[i] = a
	}
	// Formed: every agent sees one master and every peer up.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := true
		for _, a := range agents {
			m, err := scrape(a.metrics)
			if err != nil || m[`fmagent_peers_alive`] != float64(o.Nodes-1) {
				ok = false
				break
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("soak: the %d agents did not form a cluster in 20 s (logs under %s)", o.Nodes, dir)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // let the election settle
	res := &Result{Profile: o.Profile, Nodes: o.Nodes, Realtime: o.Realtime, Pinned: len(cpus) > 0, Hog: o.Hog, Burners: o.Burners}
	if d, err := time.ParseDuration(o.Profile); err == nil {
		res.Bound = d
	}

	// Idle: CPU per agent and per packet.
	if o.Idle > 0 {
		cpu0, pk0 := cpuAndPackets(agents)
		t0 := time.Now()
		if err := sleep(ctx, o.Idle); err != nil {
			return nil, err
		}
		cpu1, pk1 := cpuAndPackets(agents)
		el := time.Since(t0).Seconds()
		res.IdleCPU = (cpu1 - cpu0) / el / float64(o.Nodes)
		res.IdlePackets = (pk1 - pk0) / el / float64(o.Nodes)
		if pk1 > pk0 {
			res.CPUPerPkt = time.Duration((cpu1 - cpu0) / (pk1 - pk0) * 1e9)
		}
	}

	// The listers register their entities before the hog, the stall probe
	// beside them (until SIGTERM).
	var regProbe *exec.Cmd
	var regProbeOut strings.Builder
	if o.StallProbe != "" && o.Listers > 0 {
		regProbe = exec.Command(o.StallProbe, "3600")
		regProbe.Stdout = &regProbeOut
		regProbe.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := regProbe.Start(); err != nil {
			o.Logf("soak: stall probe %s: %v", o.StallProbe, err)
			regProbe = nil
		}
	}
	regBase, regStart := sumEvents(agents), time.Now()
	listers, err := startListers(o, agents)
	defer listers.stop()
	res.RegisterStallMax = -1
	if regProbe != nil {
		regProbe.Process.Signal(syscall.SIGTERM)
		regProbe.Wait()
		res.RegisterStallMax, _ = parseStallProbe(regProbeOut.String())
	}
	if err != nil {
		return nil, err
	}
	if o.Listers > 0 {
		res.RegisterTime = time.Since(regStart)
		res.RegisterRetries = listers.retries.Load()
		regEnd := sumEvents(agents)
		res.RegisterFalseDowns = int64(regEnd["peer-down"] - regBase["peer-down"])
		res.RegisterElections = int64(regEnd["elected"] - regBase["elected"])
		res.RegisterOverruns = int64(regEnd[overrunsKey] - regBase[overrunsKey])
		m, err := scrape(agents[0].metrics)
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			if strings.HasPrefix(k, "fmagent_entities{") {
				res.TableSize += int(v)
			}
		}
	}

	// The hog.
	base := sumEvents(agents)
	before := scrapeAll(agents)
	obs.reset(res.Bound)
	obs.start()
	res.LoadBefore = loadavg()
	burners, err := startBurners(o)
	if err != nil {
		return nil, err
	}
	cpu0, _ := cpuAndPackets(agents)
	t0 := time.Now()
	// The flood clients are processes of their own at the normal policy,
	// as applications are (in this process they would run at SCHED_FIFO).
	var flood atomic.Int64
	var fwg sync.WaitGroup
	var floods []*exec.Cmd
	for i := 0; i < o.Flood; i++ {
		for _, a := range agents {
			args := append(append([]string(nil), o.FloodCmd[1:]...), filepath.Join(a.dir, "fmagent.sock"), fmt.Sprintf("svc/soak-%d-%d", a.id, i))
			cmd := exec.Command(o.FloodCmd[0], args...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			out, err := cmd.StdoutPipe()
			if err != nil {
				return nil, err
			}
			if err := cmd.Start(); err != nil {
				return nil, fmt.Errorf("soak: starting a flood client: %w", err)
			}
			floods = append(floods, cmd)
			fwg.Add(1)
			go func() {
				defer fwg.Done()
				var n int64
				fmt.Fscan(out, &n)
				flood.Add(n)
			}()
		}
	}
	o.Logf("soak: profile %s, %d agents, %d burners, %v (load %s)", o.Profile, o.Nodes, len(burners), o.Hog, res.LoadBefore)
	res.MachineStallMax, res.MachineStallEpisodes = -1, -1
	var probeOut strings.Builder
	var probe *exec.Cmd
	var probeStart time.Time
	if o.StallProbe != "" {
		probeStart = time.Now()
		probe = exec.Command(o.StallProbe, fmt.Sprint(int(o.Hog.Seconds())))
		probe.Stdout = &probeOut
		probe.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := probe.Start(); err != nil {
			o.Logf("soak: stall probe %s: %v", o.StallProbe, err)
			probe = nil
		}
	}
	err = sleep(ctx, o.Hog)
	if probe != nil {
		if err != nil {
			probe.Process.Kill() // interrupted: its figures would be partial
		}
		probe.Wait()
		res.MachineStallMax, res.MachineStallEpisodes = parseStallProbe(probeOut.String())
		o.Logf("soak: the machine's own stalls (soak/vcpustall):\n%s", strings.TrimSpace(probeOut.String()))
	}
	for _, c := range floods {
		c.Process.Signal(syscall.SIGTERM)
	}
	fwg.Wait()
	for _, c := range floods {
		c.Wait()
	}
	res.FloodWrites = flood.Load()
	res.Lists = listers.stop()
	cpu1, _ := cpuAndPackets(agents)
	res.HogCPU = (cpu1 - cpu0) / time.Since(t0).Seconds() / float64(o.Nodes)
	res.LoadAfter = loadavg()
	stopBurners(burners)
	if err != nil {
		return nil, err
	}
	end := sumEvents(agents)
	res.FalseDowns = int64(end["peer-down"] - base["peer-down"])
	res.LinkDowns = int64(end["link-down"] - base["link-down"])
	res.Elections = int64(end["elected"] - base["elected"])
	res.Overruns = int64(end[overrunsKey] - base[overrunsKey])
	res.Stalls = int64(end["stalled"] - base["stalled"])
	// Over the hog only: the differences of the agents' cumulative
	// buckets between its start and its end (an agent's start-up, whose
	// first ticks and collections are late, is not the hog's).
	after := scrapeAll(agents)
	for i := range agents {
		if before[i] == nil || after[i] == nil {
			continue
		}
		sec := func(k string) time.Duration { return time.Duration(after[i][k] * 1e9) }
		late, _ := windowQuantiles(before[i], after[i], "fmagent_tick_lateness_seconds_bucket", "le")
		if math.IsInf(late, 1) { // beyond the last bucket: the latest since start is the hog's
			late = sec("fmagent_tick_lateness_max_seconds").Seconds()
		}
		res.TickLateMax = max(res.TickLateMax, time.Duration(late*1e9))
		y, _ := windowQuantiles(before[i], after[i], "fmagent_rt_yield_seconds_bucket", "le")
		if math.IsInf(y, 1) { // beyond the last bucket: the longest since start is the hog's
			y = sec("fmagent_rt_yield_max_seconds").Seconds()
		}
		res.YieldMax = max(res.YieldMax, time.Duration(y*1e9))
		res.YieldsOver += int64(windowCountAbove(before[i], after[i], "fmagent_rt_yield_seconds_bucket", "le", "0.01"))
		w, _ := windowQuantiles(before[i], after[i], "fmagent_rt_lock_wait_seconds_bucket", "le")
		if math.IsInf(w, 1) {
			w = sec("fmagent_rt_lock_wait_max_seconds").Seconds()
		}
		res.LockWaitMax = max(res.LockWaitMax, time.Duration(w*1e9))
		res.LockWaitsOver += int64(windowCountAbove(before[i], after[i], "fmagent_rt_lock_wait_seconds_bucket", "le", "0.01"))
		gcMax, gcP99 := windowQuantiles(before[i], after[i], "fmagent_gc_pauses_total", "at_most")
		if math.IsInf(gcMax, 1) {
			gcMax = sec("fmagent_gc_pause_max_seconds").Seconds()
		}
		if math.IsInf(gcP99, 1) {
			gcP99 = gcMax
		}
		res.GCPauseMax = max(res.GCPauseMax, time.Duration(gcMax*1e9))
		if stopMax, _ := windowQuantiles(before[i], after[i], "fmagent_gc_stopping_total", "at_most"); !math.IsInf(stopMax, 1) {
			res.GCStoppingMax = max(res.GCStoppingMax, time.Duration(stopMax*1e9))
		} else {
			res.GCStoppingMax = max(res.GCStoppingMax, res.GCPauseMax) // beyond the last bucket: at most the whole pause
		}
		res.GCPauseP99 = max(res.GCPauseP99, time.Duration(gcP99*1e9))
	}
	gaps, silences := obs.stop()
	var stalls []span
	if probe != nil {
		stalls = parseStallEpisodes(probeOut.String(), probeStart)
	}
	// The agents log their late ticks once a second: those of the hog's
	// last second are in their logs a second later.
	if err := sleep(ctx, 1200*time.Millisecond); err != nil {
		return nil, err
	}
	var late []lateTick
	for _, a := range agents {
		l, err := readLateTicks(a.log, a.id)
		if err != nil {
			o.Logf("soak: agent %d's late ticks: %v", a.id, err)
		}
		late = append(late, l...)
	}
	at := attribute(silences, stalls, late, 15*time.Millisecond, 5*time.Millisecond)
	res.Silences, res.SilencesInStall, res.SilencesOwnLate = at.merged, at.inStall, at.ownLate
	if probe == nil {
		res.SilencesInStall = -1
	}
	res.Gaps = len(gaps)
	res.GapP50, res.GapP99, res.GapMax = quantile(gaps, 0.5), quantile(gaps, 0.99), quantile(gaps, 1)
	return res, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// scrape reads an agent's metrics: "name{labels}" -> value.
func scrape(addr string) (map[string]float64, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// scrapeAll scrapes every agent's metrics (nil for one that did not answer).
func scrapeAll(agents []*agentProc) []map[string]float64 {
	out := make([]map[string]float64, len(agents))
	for i, a := range agents {
		out[i], _ = scrape(a.metrics)
	}
	return out
}

// windowQuantiles reads cumulative buckets — the series name{label="BOUND"}
// of two scrapes, counts of observations no larger than BOUND — and returns
// the bucket bounds of the largest observation and of the 99th percentile
// made between the two scrapes (0, 0 if none; +Inf if beyond every finite
// bound).
// windowCountAbove is how many observations of a cumulative histogram
// (name{label="bound"}) fell above bound between two scrapes.
func windowCountAbove(before, after map[string]float64, name, label, bound string) float64 {
	all := name + "{" + label + `="+Inf"}`
	at := name + "{" + label + `="` + bound + `"}`
	if _, ok := after[at]; !ok {
		return 0
	}
	return (after[all] - before[all]) - (after[at] - before[at])
}

func windowQuantiles(before, after map[string]float64, name, label string) (maxBound, p99Bound float64) {
	type bucket struct{ bound, n float64 }
	var bs []bucket
	prefix := name + "{" + label + `="`
	for k, v := range after {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		b, err := strconv.ParseFloat(strings.TrimSuffix(rest, `"}`), 64)
		if err != nil {
			continue
		}
		bs = append(bs, bucket{b, v - before[k]})
	}
	if len(bs) == 0 {
		return 0, 0
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].bound < bs[j].bound })
	total := bs[len(bs)-1].n
	if total <= 0 {
		return 0, 0
	}
	maxBound, p99Bound = -1, -1
	for _, b := range bs {
		if p99Bound < 0 && b.n >= 0.99*total {
			p99Bound = b.bound
		}
		if maxBound < 0 && b.n >= total {
			maxBound = b.bound
		}
	}
	return maxBound, p99Bound
}

// sumEvents sums each event kind over the agents.
func sumEvents(agents []*agentProc) map[string]float64 {
	sum := make(map[string]float64)
	for _, a := range agents {
		m, err := scrape(a.metrics)
		if err != nil {
			continue
		}
		for k, v := range m {
			if rest, ok := strings.CutPrefix(k, `fmagent_events_total{kind="`); ok {
				sum[strings.TrimSuffix(rest, `"}`)] += v
			}
		}
		sum[overrunsKey] += m["fmagent_rt_profile_overruns_total"]
	}
	return sum
}

// overrunsKey is sumEvents' key for the agents' profile overruns (agent's
// fmagent_rt_profile_overruns_total), beside the events' kinds.
const overrunsKey = "profile-overruns"

// cpuAndPackets sums the agents' CPU seconds (utime+stime of every thread)
// and the datagrams they sent and received.
func cpuAndPackets(agents []*agentProc) (cpu, pkts float64) {
	for _, a := range agents {
		if c, err := procCPU(a.cmd.Process.Pid); err == nil {
			cpu += c
		}
		m, err := scrape(a.metrics)
		if err != nil {
			continue
		}
		for k, v := range m {
			if strings.HasPrefix(k, "fmagent_packets_sent_total{") || strings.HasPrefix(k, "fmagent_packets_received_total{") {
				pkts += v
			}
		}
	}
	return cpu, pkts
}

// procCPU is utime + stime of pid in seconds (USER_HZ = 100).
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("soak: /proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("soak: /proc/%d/stat: short", pid)
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100, nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// startBurners starts o.Burners CPU burners at the normal policy.
func startBurners(o Options) ([]*exec.Cmd, error) {
	var cmds []*exec.Cmd
	for i := 0; i < o.Burners; i++ {
		cmd := exec.Command(o.BurnCmd[0], o.BurnCmd[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			stopBurners(cmds)
			return nil, fmt.Errorf("soak: starting the CPU burner %v: %w", o.BurnCmd, err)
		}
		cmds = append(cmds, cmd)
	}
	return cmds, nil
}

func stopBurners(cmds []*exec.Cmd) {
	for _, c := range cmds {
		c.Process.Kill()
		c.Wait()
	}
}

// Burn spins one core until the process is killed: the soak's CPU burner
// (soak -burn), at the normal scheduling policy.
func Burn() {
	_ = normalPolicy() // as a user's CPU hog would be
	runtime.GOMAXPROCS(1)
	x := uint64(1)
	for {
		x = x*6364136223846793005 + 1442695040888963407
		if x == 0 {
			fmt.Println(x)
		}
	}
}

// normalPolicy puts every thread of this process at the normal scheduling
// policy: a burner or flood client started from a thread at SCHED_FIFO
// (by hand; the harness's own real-time thread resets its children on
// fork) would otherwise measure a hog no user runs.
func normalPolicy() error {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			if err := unix.SchedSetAttr(tid, &attr, 0); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// listers are the list clients of a run (Options.Listers).
type listers struct {
	cmds    []*exec.Cmd
	wg      sync.WaitGroup
	lists   atomic.Int64
	retries atomic.Int64
	stopped bool
}

// startListers starts o.Listers list clients on every agent and waits
// until each has registered its entities.
func startListers(o Options, agents []*agentProc) (*listers, error) {
	l := &listers{}
	ready := make(chan error, o.Listers*len(agents))
	for i := 0; i < o.Listers; i++ {
		for _, a := range agents {
			args := append(append([]string(nil), o.ListCmd[1:]...), filepath.Join(a.dir, "fmagent.sock"),
				fmt.Sprintf("svc/soak-list-%d-%d", a.id, i), strconv.Itoa(o.ListEntities))
			cmd := exec.Command(o.ListCmd[0], args...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			out, err := cmd.StdoutPipe()
			if err != nil {
				return l, err
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				return l, fmt.Errorf("soak: starting a list client: %w", err)
			}
			l.cmds = append(l.cmds, cmd)
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				var word string
				var retries int64
				if _, err := fmt.Fscan(out, &word, &retries); err != nil || word != "ready" {
					ready <- fmt.Errorf("soak: a list client on agent %d did not register its entities (%q, %v)", a.id, word, err)
					return
				}
				l.retries.Add(retries)
				ready <- nil
				var n int64
				fmt.Fscan(out, &n)
				l.lists.Add(n)
			}()
		}
	}
	timeout := time.After(120 * time.Second)
	for range l.cmds {
		select {
		case err := <-ready:
			if err != nil {
				return l, err
			}
		case <-timeout:
			return l, errors.New("soak: the list clients did not register their entities in 120 s")
		}
	}
	return l, nil
}

// stop ends the list clients and returns the lists they were answered
// (once; 0 after).
func (l *listers) stop() int64 {
	if l.stopped {
		return 0
	}
	l.stopped = true
	for _, c := range l.cmds {
		c.Process.Signal(syscall.SIGTERM)
	}
	l.wg.Wait()
	for _, c := range l.cmds {
		c.Wait()
	}
	return l.lists.Load()
}

// List is a list client (soak -list-client SOCKET PREFIX N): at the normal
// policy, it registers N entities PREFIX/0 … PREFIX/N-1 (each tried again,
// up to registerTries times, while the agent answers with an error, as an
// application would), says "ready" and how many registrations it tried
// again, then lists the whole table as fast as the agent answers until
// SIGTERM, and prints how many lists it was answered.
func List(sock, prefix string, entities int) {
	_ = normalPolicy()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	c, err := client.Dial(ctx, sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak list client:", err)
		fmt.Println("failed")
		return
	}
	defer c.Close()
	retries := 0
	for i := range entities {
		for try := 1; ; try++ {
			_, err := c.Register(ctx, fmt.Sprintf("%s/%d", prefix, i), client.KindService)
			if err == nil {
				break
			}
			if try == registerTries || ctx.Err() != nil {
				fmt.Fprintln(os.Stderr, "soak list client:", err)
				fmt.Println("failed")
				return
			}
			retries++
			time.Sleep(100 * time.Millisecond)
		}
	}
	fmt.Println("ready", retries)
	var n int64
	for ctx.Err() == nil {
		if _, err := c.List(ctx, client.Filter{}); err == nil {
			n++
		}
	}
	fmt.Println(n)
}

// registerTries: how many times a list client tries one registration.
const registerTries = 50

// Flood is a flood client (soak -flood-client SOCKET NAME): at the normal
// policy, it raises and clears an alarm on its own entity as fast as the
// agent acknowledges until SIGTERM, then prints how many writes were
// acknowledged. A report flood through the API, replicated to every node,
// for the garbage collector's and the real-time loop's figures under load.
//
// stream: the writes go on the API's stream socket, not the datagram
// socket the client library uses by default.
func Flood(sock, name string, stream bool) {
	_ = normalPolicy()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var n atomic.Int64
	c, err := client.Dial(ctx, sock)
	if err == nil {
		defer c.Close()
		c.UseDatagram(!stream)
		if _, err = c.Register(ctx, name, client.KindService); err == nil {
			for ctx.Err() == nil {
				if _, err := c.Raise(ctx, name, "soak-flood", client.Severity("minor")); err == nil {
					n.Add(1)
				}
				if _, err := c.Clear(ctx, name, "soak-flood"); err == nil {
					n.Add(1)
				}
			}
		}
	}
	fmt.Println(n.Load())
}

// parseStallEpisodes reads vcpustall's episode lines ("cpu N: at +T s, L
// ms late": a wake-up L late at T after the probe started) as spans of time
// (the probe started at start).
func parseStallEpisodes(out string, start time.Time) []span {
	var eps []span
	for _, line := range strings.Split(out, "\n") {
		var cpu int
		var at, late float64
		if n, _ := fmt.Sscanf(line, "cpu %d: at +%g s, %g ms late", &cpu, &at, &late); n == 3 {
			to := start.Add(time.Duration(at * float64(time.Second)))
			eps = append(eps, span{to.Add(-time.Duration(late * float64(time.Millisecond))), to})
		}
	}
	return eps
}

// parseStallProbe reads vcpustall's summary lines ("cpu N: worst W ms,
// episodes E"): the worst over the CPUs and the episodes summed.
func parseStallProbe(out string) (time.Duration, int) {
	worst, episodes := time.Duration(0), 0
	for _, line := range strings.Split(out, "\n") {
		var cpu, e int
		var w float64
		if n, _ := fmt.Sscanf(line, "cpu %d: worst %g ms, episodes %d", &cpu, &w, &e); n == 3 {
			worst = max(worst, time.Duration(w*float64(time.Millisecond)))
			episodes += e
		}
	}
	return worst, episodes
}

// lateTickMsg starts the message of an agent's late tick (agent/rtlate.go:
// lateTickMsg).
const lateTickMsg = "real-time loop late:"

// readLateTicks reads the late ticks agent node logged (in JSON,
// log_format = "json") in the file at path.
func readLateTicks(path string, node int) ([]lateTick, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseLateTicks(f, node)
}

func parseLateTicks(r io.Reader, node int) ([]lateTick, error) {
	var out []lateTick
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(lateTickMsg)) {
			continue
		}
		var l struct {
			Msg   string `json:"msg"`
			Due   string `json:"due"`
			Late  int64  `json:"late"` // slog's JSON: nanoseconds
			Cause string `json:"cause"`
		}
		if err := json.Unmarshal(line, &l); err != nil || !strings.HasPrefix(l.Msg, lateTickMsg) {
			continue
		}
		due, err := time.Parse(time.RFC3339Nano, l.Due)
		if err != nil {
			return out, fmt.Errorf("soak: a late tick's due %q: %w", l.Due, err)
		}
		out = append(out, lateTick{span{due, due.Add(time.Duration(l.Late))}, node, l.Cause})
	}
	return out, sc.Err()
}

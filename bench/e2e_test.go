package bench

import (
	"context"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	MaybeHelper() // the baseline's receivers are this test binary run again
	code := m.Run()
	if agentDir != "" {
		os.RemoveAll(agentDir)
	}
	os.Exit(code)
}

// testAgent is cmd/fmagent built once for the tests of this binary that
// start real agents (skipped under -short).
func testAgent(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real agents")
	}
	agentOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fmagent-bench-test-")
		if err != nil {
			agentErr = err
			return
		}
		agentDir = dir
		agentBin, agentErr = BuildAgent(dir)
	})
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return agentBin
}

var (
	agentOnce          sync.Once
	agentDir, agentBin string
	agentErr           error
)

// logWriter sends progress lines to t.Log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// TestE2EShort runs a short version of the e2e measurement (bench/cmd/e2e)
// on three real agents, so that it cannot rot: every sample must be seen in
// every node's shared memory (every baseline datagram by every receiver),
// and every agent stopped or killed must be seen down by every survivor
// and come back.
// It checks no timing: the machine running the tests is shared and noisy.
func TestE2EShort(t *testing.T) {
	bin := testAgent(t)
	const samples, kills, failovers, exits, exitFailovers = 30, 2, 1, 2, 1
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, Config{
		Nodes: 3, Samples: samples, Warmup: 2, Kills: kills, Failovers: failovers, Exits: exits, ExitFailovers: exitFailovers, Idle: time.Second, IdleFloors: true, PinAgents: true, // pinned: the path -pin takes
		Agent: bin, Gap: time.Millisecond, Log: logWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	var sum strings.Builder
	res.Summary(&sum)
	WriteMedians(&sum, []*Result{res})
	t.Log("\n" + sum.String())

	if len(res.Failures) > 0 {
		t.Errorf("%d samples not observed everywhere: %v", len(res.Failures), res.Failures)
	}
	if res.Master < 1 || res.Master > 3 {
		t.Errorf("master %d", res.Master)
	}
	if res.Client == res.Master || res.Client < 1 || res.Client > 3 {
		t.Errorf("the client wrote to node %d, the master %d: a report's path must take the master's hop", res.Client, res.Master)
	}
	for _, f := range Figures {
		d := f.Get(res)
		want := samples
		switch {
		case f.Key == "detect_at_floor":
			want = samples * floorPhases // each floor sample at every phase
		case strings.HasPrefix(f.Key, "detect"):
			want = kills
		case strings.HasPrefix(f.Key, "failover"):
			want = failovers
		case strings.HasPrefix(f.Key, "exit_failover"):
			want = exitFailovers
		case strings.HasPrefix(f.Key, "exit"):
			want = exits
		}
		if len(d) != want {
			t.Errorf("%s: %d samples, want %d", f.Name, len(d), want)
		}
	}
	// A row is written before a reader sees it: in each sample, the
	// last table's written_at is no later than the last sighting (slack:
	// a written_at is carried to the monotonic clock, or compared with a
	// wall clock, through two clock readings of an observer taken apart).
	const slack = 50 * time.Microsecond
	for _, p := range []struct {
		name          string
		written, seen Dist
	}{
		{"down", res.DownWritten, res.Down},
		{"report from the master", res.ReportFromMasterWritten, res.ReportFromMaster},
		{"relays' floor", res.FloorWritten, res.Floor},
		{"report's floor", res.ReportFloorWritten, res.ReportFloor},
		{"detection", res.DetectWrittenDist(), res.DetectDist()},
		{"exit failover", killDist(res.ExitFailovers, func(k Kill) time.Duration { return k.Written }),
			killDist(res.ExitFailovers, func(k Kill) time.Duration { return k.Detect })},
	} {
		if len(p.written) != len(p.seen) {
			t.Errorf("%s: %d written, %d seen", p.name, len(p.written), len(p.seen))
			continue
		}
		for i := range p.seen {
			if p.written[i] > p.seen[i]+slack {
				t.Errorf("%s sample %d: written after %v, seen after %v", p.name, i, p.written[i], p.seen[i])
			}
		}
	}
	// Causality, on the monotonic clock: nothing is seen before it is done.
	for name, d := range map[string]Dist{
		"report": res.Report, "report return": res.ReportReturn, "down total": res.DownTotal,
		"baseline": res.Baseline, "baseline first": res.BaselineFirst, "floor": res.Floor, "floor first": res.FloorFirst,
		"detection":    res.DetectDist(),
		"down written": res.DownWritten, "report written": res.ReportWritten, "floor written": res.FloorWritten,
		"detection written": res.DetectWrittenDist(),
		"report floor":      res.ReportFloor, "report floor first": res.ReportFloorFirst, "report floor written": res.ReportFloorWritten,
		"report on the stream": res.ReportStream, "report on the stream written": res.ReportStreamWritten,
	} {
		for _, v := range d {
			if v <= 0 {
				t.Errorf("%s: sample %v", name, v)
			}
		}
	}
	for _, k := range append(slices.Clone(res.Kills), res.Exits...) {
		if k.Victim == k.Master || k.Victim < 1 || k.Victim > 3 {
			t.Errorf("kill %+v: the victim must be a node other than the master", k)
		}
	}
	// Each kill knows the bound its victim was judged at: the configured
	// one, or wider (a false down before it).
	for _, k := range append(slices.Clone(res.Kills), res.Failovers...) {
		if k.Bound < res.Bound {
			t.Errorf("kill %+v: bound %v, below the configured %v", k, k.Bound, res.Bound)
		}
	}
	if got := len(res.DetectAtBoundDist()) + res.KillsAtWidenedBound(); got != len(res.Kills) {
		t.Errorf("%d kills at the configured bound and %d at a widened one, of %d", len(res.DetectAtBoundDist()), res.KillsAtWidenedBound(), len(res.Kills))
	}
	for _, k := range append(slices.Clone(res.Failovers), res.ExitFailovers...) {
		if k.Victim != k.Master || k.NewMaster == k.Victim || k.NewMaster < 1 || k.NewMaster > 3 {
			t.Errorf("failover %+v: the victim must be the master, the decision another node's", k)
		}
	}
	// The idle window saw every agent's process and its heartbeats.
	if res.Idle == nil || len(res.Idle.PerAgent) != 3 {
		t.Fatalf("idle window: %+v", res.Idle)
	}
	for _, a := range res.Idle.PerAgent {
		if a.RSSKiB <= 0 || a.Sent == 0 || a.Received == 0 || a.CPUSec < 0 {
			t.Errorf("idle window, node %d: %+v", a.Node, a)
		}
		// Its CPU by thread: the loop at SCHED_FIFO (as root, as CI
		// runs) and sysmon both ran, and the parts add up to the
		// process's CPU (from /proc/PID/stat, in 10 ms ticks read at
		// each end of the window: within two ticks a second).
		th := a.Threads
		if th == nil {
			t.Errorf("idle window, node %d: no CPU by thread", a.Node)
			continue
		}
		sum := th.Realtime + th.Sysmon + th.Other
		if th.Sysmon <= 0 || th.Other < 0 || (os.Geteuid() == 0 && th.Realtime <= 0) || math.Abs(sum-a.CPU) > 0.02/res.Idle.Window.Seconds()+0.005 {
			t.Errorf("idle window, node %d: CPU %.4f, by thread %+v (sum %.4f)", a.Node, a.CPU, *th, sum)
		}
	}
	if res.Idle.MeanThreads == nil {
		t.Error("idle window: no mean CPU by thread")
	}
	// The idle floors ran and heartbeated as the agents do: the same
	// datagrams per second, within the jitter of their start and stop.
	fl := res.Idle.Floors
	if fl == nil {
		t.Fatal("idle floors not measured")
	}
	if strings.HasPrefix(fl.CNote, "no C compiler") {
		t.Logf("C floor: %s", fl.CNote)
	} else if fl.CNote != "" {
		t.Errorf("C floor: %s", fl.CNote)
	}
	for _, x := range []struct {
		name string
		pps  float64
		cpu  float64
	}{{"Go", fl.GoPPS, fl.GoCPU}, {"C", fl.CPPS, fl.CCPU}} {
		if x.name == "C" && fl.CNote != "" {
			continue
		}
		if want := res.Idle.MeanPacketsPerS; x.pps < want/2 || x.pps > want*3/2 || x.cpu < 0 {
			t.Errorf("%s floor: %.0f datagrams/s per process (agents %.0f), CPU %.4f", x.name, x.pps, want, x.cpu)
		}
	}
	checkResultsJSON(t, res)
}

// checkResultsJSON writes res the way bench/cmd/e2e does and reads it back.
func checkResultsJSON(t *testing.T, res *Result) {
	t.Helper()
	dir := t.TempDir()
	g := Group("10msx5", []*Result{res})
	p, err := WriteResults(dir, "e2e", struct {
		Groups []GroupJSON `json:"groups"`
	}{[]GroupJSON{g}})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{p, filepath.Join(dir, "e2e-latest.json")} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var back struct {
			Groups []GroupJSON `json:"groups"`
		}
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(back.Groups) != 1 || len(back.Groups[0].Runs) != 1 {
			t.Fatalf("%s: %d groups", f, len(back.Groups))
		}
		bg := back.Groups[0]
		for _, key := range []string{"down", "report", "baseline", "detect", "failover"} {
			if q := bg.Median[key]; q.N == 0 || q.P50 <= 0 || q.P50 > q.P99 || q.P99 > q.Max {
				t.Errorf("%s: median %s = %+v", f, key, q)
			}
		}
		if r := bg.MedianRatios["down"]; r.P50 <= 0 || r.P99 <= 0 {
			t.Errorf("%s: ratios %+v", f, bg.MedianRatios)
		}
		if r := bg.MedianReportFloorRatios["report_written"]; r.P50 <= 0 || r.P99 <= 0 {
			t.Errorf("%s: ratios to the report's floor %+v", f, bg.MedianReportFloorRatios)
		}
		if bg.MedianIdle == nil || bg.MedianIdle.MeanRSSKiB <= 0 {
			t.Errorf("%s: idle %+v", f, bg.MedianIdle)
		}
	}
}

func TestQuantile(t *testing.T) {
	var d Dist
	for i := 1; i <= 200; i++ {
		d = append(d, time.Duration(201-i)) // unsorted on purpose
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 100}, {0.9, 180}, {0.99, 198}, {1, 200}, {0.001, 1}} {
		if got := d.Quantile(c.q); got != c.want {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if d[0] != 200 {
		t.Error("Quantile sorted the caller's samples")
	}
	if (Dist{}).P99() != 0 {
		t.Error("empty Dist")
	}
}

// TestDetectAtBound: kills whose victim's bound a false down had widened
// are counted apart, and the detection at the configured bound leaves them
// out, in a run and in the median over runs.
func TestDetectAtBound(t *testing.T) {
	const b = 20 * time.Millisecond
	run := func(ks ...Kill) *Result {
		for i := range ks {
			ks[i].Written = ks[i].Detect - 500*time.Microsecond // written before it is seen
		}
		return &Result{Bound: b, Kills: ks}
	}
	rs := []*Result{
		run(Kill{Detect: 19 * time.Millisecond, Bound: b}, Kill{Detect: 38 * time.Millisecond, Bound: 2 * b}, Kill{Detect: 20 * time.Millisecond, Bound: b}),
		run(Kill{Detect: 18 * time.Millisecond, Bound: b}),
		run(Kill{Detect: 30 * time.Millisecond, Bound: 25 * time.Millisecond}),
	}
	if d := rs[0].DetectAtBoundDist(); len(d) != 2 || d.Max() != 20*time.Millisecond || rs[0].KillsAtWidenedBound() != 1 {
		t.Errorf("run 0: at the bound %v, widened %d", d, rs[0].KillsAtWidenedBound())
	}
	if j := rs[2].JSON(); j.DetectAtBound != nil || j.KillsWidened != 1 {
		t.Errorf("run 2 JSON: %+v, %d widened", j.DetectAtBound, j.KillsWidened)
	}
	g := Group("20ms", rs)
	if g.KillsWidened != 2 || g.MedianDetectAtBound == nil || g.MedianDetectAtBound.N != 3 {
		t.Fatalf("group: %d widened, at the bound %+v", g.KillsWidened, g.MedianDetectAtBound)
	}
	// Per-run maxima 20 and 18 ms: the median of two is the upper one.
	if g.MedianDetectAtBound.Max != 20*time.Millisecond {
		t.Errorf("group max at the bound %v", g.MedianDetectAtBound.Max)
	}
	var tab strings.Builder
	WriteTables(&tab, []GroupJSON{g}, nil)
	// All kills: the medians of the runs' 20/18/30 ms p50s and 38/18/30 ms
	// maxima; at the bound: 3 kills, 2 widened; written at the bound: the
	// upper of the runs' 19.5 and 17.5 ms p99s.
	if !strings.Contains(tab.String(), "| 20ms | 20.0ms | 0 | 20.0ms | 30.0ms | 30.0ms | 1.50× | 3 | 19.0ms | 20.0ms | 20.0ms | 19.5ms | 2 |") {
		t.Errorf("table row:\n%s", tab.String())
	}
}

// TestE2EFloorOnly: a run without latency samples (every profile but the
// first) still takes the two-hop floor's samples for its kills, and
// compares them with the perfect agent's detection.
func TestE2EFloorOnly(t *testing.T) {
	bin := testAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Run(ctx, Config{Nodes: 3, NoSamples: true, Warmup: 2, Kills: 1, Agent: bin, Gap: time.Millisecond, Log: logWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failures) > 0 {
		t.Errorf("failures: %v", res.Failures)
	}
	if len(res.Floor) != detectFloorSamples || len(res.FloorFirst) != detectFloorSamples || len(res.Baseline) != 0 || len(res.Down) != 0 {
		t.Fatalf("floor %d, first %d, baseline %d, down %d samples", len(res.Floor), len(res.FloorFirst), len(res.Baseline), len(res.Down))
	}
	if d := res.DetectAtFloorDist(); len(d) != detectFloorSamples*floorPhases || d.Quantile(0) <= res.Bound-res.Interval {
		t.Errorf("a perfect agent: %d values from %v", len(d), d.Quantile(0))
	}
	if len(res.Kills) != 1 || res.Kills[0].Last < 1 || res.Kills[0].Last > 3 || res.Kills[0].Last == res.Kills[0].Victim || res.Kills[0].SinceStart <= 0 {
		t.Errorf("kills %+v", res.Kills)
	}
}

// TestDetectAtFloor: the perfect agent's detection is the bound less a
// phase spread evenly over the interval, plus each floor sample; none
// without kills or without floor samples.
func TestDetectAtFloor(t *testing.T) {
	const ms = time.Millisecond
	r := &Result{Bound: 20 * ms, Interval: 4 * ms, Floor: Dist{ms, 3 * ms}, Kills: []Kill{{Detect: 21 * ms, Bound: 20 * ms}}}
	d := r.DetectAtFloorDist()
	if len(d) != 2*floorPhases {
		t.Fatalf("%d values, want %d", len(d), 2*floorPhases)
	}
	// Phases 0.05, 0.15, … 3.95 ms: with the 3 ms sample the largest is
	// 20 - 0.05 + 3 ms, with the 1 ms sample the smallest 20 - 3.95 + 1.
	if d.Max() != 22950*time.Microsecond || d.Quantile(0) != 17050*time.Microsecond {
		t.Errorf("min %v max %v", d.Quantile(0), d.Max())
	}
	// Over 21 ms: the 3 ms sample's phases under 2 ms (20 of 40), the 1 ms
	// sample's none: a quarter of the values, so the p99 is over 21 ms.
	over := 0
	for _, v := range d {
		if v > 21*ms {
			over++
		}
	}
	if over != floorPhases/2 || d.P99() <= 21*ms {
		t.Errorf("%d over 21 ms, p99 %v", over, d.P99())
	}
	if (&Result{Bound: 20 * ms, Interval: 4 * ms, Floor: Dist{ms}}).DetectAtFloorDist() != nil {
		t.Error("a perfect agent's detection without kills")
	}
	if (&Result{Bound: 20 * ms, Interval: 4 * ms, Kills: r.Kills}).DetectAtFloorDist() != nil {
		t.Error("a perfect agent's detection without floor samples")
	}
	var tab strings.Builder
	WriteTables(&tab, []GroupJSON{Group("20ms", []*Result{r})}, nil)
	if want := fmt.Sprintf("| 0 | %s |", FormatDuration(d.P99())); !strings.Contains(tab.String(), want) {
		t.Errorf("table without %q:\n%s", want, tab.String())
	}
}

func TestCostModel(t *testing.T) {
	c := CostModel(3, 10*time.Millisecond, 5, 500*time.Millisecond)
	// Every node multicasts a heartbeat per interval on both networks
	// (200 datagrams/s) and hears the two others' (400/s); the master's
	// few updates add nothing on an idle cluster.
	if c.SentPerS < 200 || c.SentPerS > 210 || c.RecvPerS < 400 || c.RecvPerS > 420 {
		t.Errorf("3 nodes at 10 ms: %+v", c)
	}
	if c.MeanDatagram <= 0 || c.SentBytesPS != c.SentPerS*c.MeanDatagram {
		t.Errorf("bytes: %+v", c)
	}
}

func TestParseCounters(t *testing.T) {
	in := `# HELP fmagent_packets_sent_total Datagrams sent.
fmagent_packets_sent_total{net="a"} 10
fmagent_packets_sent_total{net="b"} 12
fmagent_packets_received_total{net="a"} 5
fmagent_events_total{kind="peer-down"} 2
fmagent_events_total{kind="elected"} 1
fmagent_events_total{kind="peer-up"} 7
fmagent_rt_profile_overruns_total 3
`
	c, err := parseCounters(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if c != (agentCounters{sent: 22, received: 5, peerDowns: 2, elections: 1, overruns: 3}) {
		t.Errorf("%+v", c)
	}
}

// The agent the benchmarks measure is built as the package ships it:
// without cgo (BuildEnv).
func TestBuiltAgentHasNoCgo(t *testing.T) {
	info, err := buildinfo.ReadFile(testAgent(t))
	if err != nil {
		t.Fatal(err)
	}
	var cgo string
	for _, s := range info.Settings {
		if s.Key == "CGO_ENABLED" {
			cgo = s.Value
		}
	}
	if cgo != "0" {
		t.Fatalf("the built agent's CGO_ENABLED is %q, want \"0\"", cgo)
	}
}

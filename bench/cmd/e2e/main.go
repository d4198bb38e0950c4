// Command e2e measures fmagent end to end on real processes on loopback
// (DESIGN §6): report to everywhere, down propagation, failure detection,
// failover and idle resource use, next to a raw multicast baseline measured
// in the same run, for several cluster sizes and timing profiles; and a
// cost model of an idle cluster up to 64 nodes from netsim. See
// docs/bench.md and package bench.
//
//	go run ./bench/cmd/e2e [-nodes 3,5,9] [-profiles 10msx5,4msx5,2msx5] [-runs 3] [-out bench/results]
//
// Run it from the module (it builds cmd/fmagent unless -fmagent names a
// binary). It needs multicast on lo, which Linux delivers without root.
// It prints tables and writes every figure as JSON to
// OUT/e2e-<UTC time>.json and OUT/e2e-latest.json.
//
// Exit status: 0 when every sample was observed everywhere, 1 otherwise,
// 2 for bad usage.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fmagent/fmagent/bench"
)

func main() {
	bench.MaybeHelper() // the observer processes are this program run again
	os.Exit(run())
}

// Output is the JSON results file.
type Output struct {
	Benchmark string            `json:"benchmark"`
	Started   time.Time         `json:"started"`
	Finished  time.Time         `json:"finished"`
	Host      string            `json:"host"`
	CPUs      int               `json:"cpus"`
	Go        string            `json:"go"`
	Kernel    string            `json:"kernel"`
	Args      []string          `json:"args"`
	Pinned    bool              `json:"agents_pinned"` // -pin: agent i on the ith CPU
	Note      string            `json:"note"`
	Groups    []bench.GroupJSON `json:"groups"`
	Errors    []string          `json:"errors,omitempty"`
	CostModel []bench.Cost      `json:"cost_model,omitempty"`
}

func run() int {
	nodes := flag.String("nodes", "3,5,9", "cluster sizes to measure, comma-separated; each at least 2 (\"\": none, the cost model only)")
	profiles := flag.String("profiles", "10msx5,4msx5,2msx5", "timing profiles, comma-separated: INTERVALxMISSES (profile = \"custom\") or a profile name the agent knows; the latency samples are taken with the first only")
	samples := flag.Int("samples", 200, "samples of each latency per run (0: none, detection and resources only)")
	warmup := flag.Int("warmup", 5, "warm-up samples discarded per run")
	kills := flag.Int("kills", 10, "SIGSTOP repetitions of a non-master per run (failure detection at the heartbeats' bound: a silent process, as a hung host)")
	exits := flag.Int("exits", 10, "kill -9 repetitions of a non-master per run (a process's end: the exit watch)")
	exitFailovers := flag.Int("exit-failovers", 5, "kill -9 repetitions of the master per run (failover on a process's end)")
	failovers := flag.Int("failovers", 5, "SIGSTOP repetitions of the master per run (failover at the heartbeats' bound)")
	idle := flag.Duration("idle", 10*time.Second, "idle window per run over which every agent's CPU, RSS and datagrams are measured (0: none)")
	pin := flag.Bool("pin", false, "pin agent i to the ith CPU, round robin ([realtime] cpus); default: the kernel places them (the agent's default)")
	idleFloors := flag.Bool("idle-floors", true, "after each idle window, measure the idle floors (N Go then N C heartbeat loops, no protocol) over as long a window each")
	runs := flag.Int("runs", 3, "runs per profile and cluster size, each on a fresh cluster; the medians over the runs are printed and written")
	interval := flag.Duration("interval", 0, "shorthand: measure the single profile INTERVAL × -misses (overrides -profiles)")
	misses := flag.Int("misses", 5, "with -interval: missed heartbeats before down")
	costSizes := flag.String("costmodel", "3,5,9,16,32,64", "cluster sizes of the netsim cost model, per profile (\"\": none)")
	gap := flag.Duration("gap", 2*time.Millisecond, "pause between samples (plus a random part up to as much)")
	agent := flag.String("fmagent", "", "fmagent binary (default: build ./cmd/fmagent)")
	out := flag.String("out", "bench/results", "write the JSON results under DIR (\"\": not written)")
	name := flag.String("name", "e2e", "the results files' name: DIR/NAME-<UTC time>.json and DIR/NAME-latest.json")
	verbose := flag.Bool("v", false, "print progress")
	stateBase := flag.String("statedir", "", "make the agents' state directories under DIR (default $TMPDIR)")
	logLevel := flag.String("log-level", "", "the agents' -log-level (debug, info, warn, error)")
	logDir := flag.String("logs", "", "copy the agents' logs of each run into DIR/<profile>-<nodes>n-run<k>/")
	tables := flag.String("tables", "", "measure nothing: print the tables of the results FILE (a JSON this command wrote)")
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		return 2
	}
	if *tables != "" {
		b, err := os.ReadFile(*tables)
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
			return 1
		}
		var o Output
		if err := json.Unmarshal(b, &o); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %s: %v\n", *tables, err)
			return 1
		}
		bench.WriteTables(os.Stdout, o.Groups, o.CostModel)
		return 0
	}
	var sizes []int // none: the cost model only
	var err error
	if *nodes != "" {
		if sizes, err = parseSizes(*nodes, 2); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: -nodes: %v\n", err)
			return 2
		}
	}
	var cost []int
	if *costSizes != "" {
		if cost, err = parseSizes(*costSizes, 1); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: -costmodel: %v\n", err)
			return 2
		}
	}
	var profs []bench.Profile
	if *interval > 0 {
		profs, err = bench.ParseProfiles(fmt.Sprintf("%vx%d", *interval, *misses))
	} else {
		profs, err = bench.ParseProfiles(*profiles)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 2
	}
	if *samples < 0 || *runs < 1 || *kills < 0 || *failovers < 0 || *exits < 0 || *exitFailovers < 0 || *warmup < 0 || *idle < 0 {
		fmt.Fprintln(os.Stderr, "e2e: -runs must be positive, -samples, -kills, -failovers, -idle and -warmup not negative")
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	bin := *agent
	if bin == "" {
		dir, err := os.MkdirTemp("", "fmbench-bin")
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
			return 1
		}
		defer os.RemoveAll(dir)
		if bin, err = bench.BuildAgent(dir); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
			return 1
		}
	}
	var log io.Writer = io.Discard
	if *verbose {
		log = os.Stderr
	}
	host, _ := os.Hostname()
	o := Output{
		Benchmark: "e2e", Started: time.Now().UTC(), Host: host, CPUs: runtime.NumCPU(), Go: runtime.Version(),
		Kernel: kernel(), Args: os.Args[1:], Pinned: *pin,
		Note: "measured on a shared machine: every figure is taken under the load of other jobs; see load_average_* next to each run",
	}
	pinned := "not pinned"
	if *pin {
		pinned = "agent i pinned to CPU i mod CPUs"
	}
	fmt.Printf("fmagent e2e on %s (%s, %d CPUs, %s), %s UTC; per run: %d samples, %d stops and %d of the master, %d kills -9 and %d of the master, idle %v; %d runs each; agents %s; load average %.2f\n\n",
		host, o.Kernel, o.CPUs, o.Go, o.Started.Format(time.DateTime), *samples, *kills, *failovers, *exits, *exitFailovers, *idle, *runs, pinned, bench.LoadAverage())

	failed := false
	for pi, p := range profs {
		for _, n := range sizes {
			var results []*bench.Result
			for r := 1; r <= *runs; r++ {
				if ctx.Err() != nil {
					break
				}
				cfg := bench.Config{
					Nodes: n, Samples: *samples, Warmup: *warmup, Kills: *kills, Failovers: *failovers, Exits: *exits, ExitFailovers: *exitFailovers, Idle: *idle, IdleFloors: *idleFloors, PinAgents: *pin,
					NoSamples: pi > 0 || *samples == 0, Interval: p.Interval, Misses: p.Misses, Profile: p.Name,
					Agent: bin, Gap: *gap, Log: log, StateBase: *stateBase, LogLevel: *logLevel,
				}
				if *logDir != "" {
					cfg.LogDir = filepath.Join(*logDir, fmt.Sprintf("%s-%dn-run%d", p.Label, n, r))
				}
				res, err := bench.Run(ctx, cfg)
				if err != nil {
					msg := fmt.Sprintf("profile %s, %d nodes, run %d: %v", p.Label, n, r, err)
					fmt.Fprintf(os.Stderr, "e2e: %s\n", msg)
					o.Errors = append(o.Errors, firstLine(msg))
					failed = true
					continue
				}
				fmt.Printf("[%s] run %d/%d: ", p.Label, r, *runs)
				res.Summary(os.Stdout)
				fmt.Println()
				failed = failed || len(res.Failures) > 0
				results = append(results, res)
			}
			if len(results) == 0 {
				continue
			}
			if len(results) > 1 {
				fmt.Printf("[%s] ", p.Label)
				bench.WriteMedians(os.Stdout, results)
				fmt.Println()
			}
			o.Groups = append(o.Groups, bench.Group(p.Label, results))
		}
	}
	if ctx.Err() == nil {
		for _, p := range profs {
			for _, n := range cost {
				o.CostModel = append(o.CostModel, bench.CostModel(n, p.Interval, p.Misses, 50*p.Interval))
			}
		}
	}
	o.Finished = time.Now().UTC()
	bench.WriteTables(os.Stdout, o.Groups, o.CostModel)
	if *out != "" {
		p, err := bench.WriteResults(*out, *name, o)
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: writing the results: %v\n", err)
			return 1
		}
		fmt.Printf("\nresults: %s (and %s)\n", p, filepath.Join(*out, *name+"-latest.json"))
	}
	if failed || ctx.Err() != nil {
		return 1
	}
	return 0
}

func parseSizes(s string, least int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < least {
			return nil, fmt.Errorf("%q: want sizes of at least %d", s, least)
		}
		out = append(out, n)
	}
	return out, nil
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return "Linux " + strings.TrimSpace(string(b))
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

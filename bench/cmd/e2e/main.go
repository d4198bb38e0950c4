// Command e2e measures fmagent end to end on real processes on loopback
// (DESIGN §6): report to everywhere, down propagation and failure detection,
// next to a raw multicast baseline measured in the same run. See
// docs/bench.md and package bench.
//
//	go run ./bench/cmd/e2e [-nodes 3,5] [-samples 200] [-kills 10] [-runs 1]
//
// Run it from the module (it builds cmd/fmagent unless -fmagent names a
// binary). It needs multicast on lo, which Linux delivers without root.
//
// Exit status: 0 when every sample was observed everywhere, 1 otherwise,
// 2 for bad usage.
package main

import (
	"context"
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

func run() int {
	nodes := flag.String("nodes", "3", "cluster sizes to measure, comma-separated (e.g. 3,5); each at least 2")
	samples := flag.Int("samples", 200, "samples of each latency per run")
	warmup := flag.Int("warmup", 5, "warm-up samples discarded per run")
	kills := flag.Int("kills", 10, "kill -9 repetitions per run (failure detection)")
	runs := flag.Int("runs", 1, "runs per cluster size, each on a fresh cluster; with more than one, the median of each figure is printed too")
	interval := flag.Duration("interval", 10*time.Millisecond, "agents' heartbeat interval")
	misses := flag.Int("misses", 5, "agents' missed heartbeats before down (bound: interval × misses)")
	gap := flag.Duration("gap", 2*time.Millisecond, "pause between samples (plus a random part up to as much)")
	agent := flag.String("fmagent", "", "fmagent binary (default: build ./cmd/fmagent)")
	verbose := flag.Bool("v", false, "print progress")
	stateBase := flag.String("statedir", "", "make the agents' state directories under DIR (default $TMPDIR; /dev/shm takes the master's fsync of the membership off the disk)")
	logLevel := flag.String("log-level", "", "the agents' -log-level (debug, info, warn, error)")
	logDir := flag.String("logs", "", "copy the agents' logs of each run into DIR/<nodes>n-run<k>/")
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		return 2
	}
	var sizes []int
	for _, s := range strings.Split(*nodes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 2 {
			fmt.Fprintf(os.Stderr, "e2e: -nodes %q: want sizes of at least 2\n", *nodes)
			return 2
		}
		sizes = append(sizes, n)
	}
	if *samples < 1 || *runs < 1 || *kills < 0 || *warmup < 0 {
		fmt.Fprintln(os.Stderr, "e2e: -samples and -runs must be positive, -kills and -warmup not negative")
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
	fmt.Printf("fmagent e2e on %s: %d CPUs, %s; %d samples, %d kills per run, interval %v × misses %d\n\n",
		host, runtime.NumCPU(), time.Now().Format(time.DateTime), *samples, *kills, *interval, *misses)

	failed := false
	for _, n := range sizes {
		var results []*bench.Result
		for r := 1; r <= *runs; r++ {
			cfg := bench.Config{
				Nodes: n, Samples: *samples, Warmup: *warmup, Kills: *kills,
				Interval: *interval, Misses: *misses, Agent: bin, Gap: *gap, Log: log, StateBase: *stateBase, LogLevel: *logLevel,
			}
			if *logDir != "" {
				cfg.LogDir = filepath.Join(*logDir, fmt.Sprintf("%dn-run%d", n, r))
			}
			before := loadavg()
			res, err := bench.Run(ctx, cfg)
			if err != nil {
				fmt.Fprintf(os.Stderr, "e2e: %d nodes, run %d: %v\n", n, r, err)
				return 1
			}
			fmt.Printf("run %d/%d (load average before: %s, after: %s): ", r, *runs, before, loadavg())
			res.Summary(os.Stdout)
			fmt.Println()
			failed = failed || len(res.Failures) > 0
			results = append(results, res)
		}
		if *runs > 1 {
			bench.WriteMedians(os.Stdout, results)
			fmt.Println()
		}
	}
	if failed {
		return 1
	}
	return 0
}

// loadavg is the 1-minute load average: how busy the (shared) machine was.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

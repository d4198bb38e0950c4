// Command soak runs the false-down soak (package soak) for each timing
// profile and prints a table and, with -json, the results as JSON.
//
//	go run ./soak/cmd/soak -profiles 10ms,20ms,50ms -hog 60s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fmagent/fmagent/bench"
	"github.com/fmagent/fmagent/soak"
)

func main() {
	var (
		agent    = flag.String("agent", "", "fmagent binary (default: built from this module)")
		profiles = flag.String("profiles", "10ms,20ms,50ms", "timing profiles, comma-separated")
		nodes    = flag.Int("nodes", 5, "agents")
		hog      = flag.Duration("hog", 60*time.Second, "time under the CPU hog, per profile")
		idle     = flag.Duration("idle", 10*time.Second, "idle CPU measurement before the hog (negative: skip)")
		burners  = flag.Int("burners", 0, "CPU burners (default: one per CPU)")
		rt       = flag.Bool("realtime", true, "let the agents use SCHED_FIFO ([realtime] enabled)")
		pin      = flag.Bool("pin", false, "pin agent i to CPU i mod CPUs ([realtime] cpus)")
		flood    = flag.Int("flood", 0, "API clients per agent raising and clearing alarms during the hog (a report flood)")
		jsonOut  = flag.String("json", "", "also write the results as JSON to this file")
		logLevel = flag.String("log-level", "", "the agents' log level (default: theirs)")
		probe    = flag.String("stall-probe", "", "soak/vcpustall binary: measure the machine's own stalls beside the agents (make soak builds it)")
		keep     = flag.Bool("keep", false, "keep each run's directory (the agents' logs) and print where")
		traces   = flag.Bool("trace", false, "the agents write execution traces of their late ticks into traces/ in their directories ([realtime] trace_dir; with -keep to read them)")
		burn     = flag.Bool("burn", false, "be a CPU burner (used by the harness itself)")
		floodCl  = flag.Bool("flood-client", false, "be a flood client: SOCKET NAME (used by the harness itself)")
		floodStr = flag.Bool("flood-stream", false, "the flood clients keep their writes on the API's stream socket (client.UseDatagram(false)) instead of the datagram socket")
		listers  = flag.Int("listers", 0, "API clients per agent listing the whole table over and over during the hog")
		listEnts = flag.Int("list-entities", 800, "entities each lister registers before the hog (with -listers)")
		listCl   = flag.Bool("list-client", false, "be a list client: SOCKET PREFIX N (used by the harness itself)")
		dir      = flag.String("dir", "", "where each run's directory (the agents' state directories) is made (default: the temp dir)")
	)
	flag.Parse()
	if *burn {
		soak.Burn()
	}
	if *floodCl {
		soak.Flood(flag.Arg(0), flag.Arg(1), *floodStr)
		return
	}
	if *listCl {
		n, err := strconv.Atoi(flag.Arg(2))
		if err != nil {
			fail(fmt.Errorf("-list-client: entity count %q: %w", flag.Arg(2), err))
		}
		soak.List(flag.Arg(0), flag.Arg(1), n)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	self, err := os.Executable()
	if err != nil {
		fail(err)
	}
	if *agent == "" {
		dir, err := os.MkdirTemp("", "soakbin")
		if err != nil {
			fail(err)
		}
		defer os.RemoveAll(dir)
		// Built as the benchmarks build it: without cgo, as it ships.
		if *agent, err = bench.BuildAgent(dir); err != nil {
			fail(err)
		}
	}
	var results []*soak.Result
	fmt.Printf("%-7s %-5s %-3s %-9s %-6s %-6s %-6s %-9s %-9s %-9s %-9s %-9s %-8s %-10s %-16s %-16s %-9s %-9s %-8s %-13s %-18s %s\n",
		"profile", "nodes", "rt", "false_dn", "links", "elect", "stalls", "gap_p50", "gap_p99", "gap_max", "idle_cpu", "cpu/pkt", "hog_cpu",
		"tick_late", "yield_max(>10ms)", "lock_max(>10ms)", "gc_p99", "gc_max(stop)", "writes", "machine_stall", "silent(stall,own)", "load(before→after)")
	for _, p := range strings.Split(*profiles, ",") {
		r, err := soak.Run(ctx, soak.Options{
			Agent: *agent, Nodes: *nodes, Profile: p, Hog: *hog, Idle: *idle, Burners: *burners,
			BurnCmd: []string{self, "-burn"}, Realtime: *rt, Pin: *pin, Flood: *flood,
			FloodCmd: floodCmd(self, *floodStr), Listers: *listers, ListEntities: *listEnts,
			ListCmd: []string{self, "-list-client"}, Dir: *dir, Keep: *keep, Trace: *traces, LogLevel: *logLevel, StallProbe: *probe,
			Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) },
		})
		if err != nil {
			fail(err)
		}
		results = append(results, r)
		if *listers > 0 {
			stall := "not measured"
			if r.RegisterStallMax >= 0 {
				stall = r.RegisterStallMax.Round(100 * time.Microsecond).String()
			}
			fmt.Fprintf(os.Stderr, "soak: registering: %v, %d tried again, %d false downs, %d elections; the machine's longest stall meanwhile %s, agents woken later than the profile tolerates %d times; %d lists of the whole table (%d entities) answered during the hog\n",
				r.RegisterTime.Round(time.Millisecond), r.RegisterRetries, r.RegisterFalseDowns, r.RegisterElections, stall, r.RegisterOverruns, r.Lists, r.TableSize)
		}
		fmt.Printf("%-7s %-5d %-3v %-9d %-6d %-6d %-6d %-9v %-9v %-9v %-9s %-9v %-8s %-10v %-16s %-16s %-9v %-9v %-8d %-13s %-18s %s → %s\n",
			r.Profile, r.Nodes, r.Realtime, r.FalseDowns, r.LinkDowns, r.Elections, r.Stalls,
			r.GapP50.Round(time.Microsecond), r.GapP99.Round(time.Microsecond), r.GapMax.Round(time.Microsecond),
			fmt.Sprintf("%.2f%%", 100*r.IdleCPU), r.CPUPerPkt.Round(100*time.Nanosecond), fmt.Sprintf("%.2f%%", 100*r.HogCPU),
			r.TickLateMax.Round(time.Microsecond), fmt.Sprintf("%v(%d)", r.YieldMax.Round(time.Microsecond), r.YieldsOver),
			fmt.Sprintf("%v(%d)", r.LockWaitMax.Round(time.Microsecond), r.LockWaitsOver), r.GCPauseP99.Round(time.Microsecond), fmt.Sprintf("%v(%v)", r.GCPauseMax.Round(time.Microsecond), r.GCStoppingMax.Round(time.Microsecond)), r.FloodWrites,
			machineStall(r), silences(r), r.LoadBefore, r.LoadAfter)
	}
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "soak:", err)
	os.Exit(1)
}

// machineStall is the stall probe's figure: its worst wake-up and, in
// brackets, how many times it was more than 20 ms late.
func machineStall(r *soak.Result) string {
	if r.MachineStallEpisodes < 0 {
		return "-"
	}
	return fmt.Sprintf("%v(%d)", r.MachineStallMax.Round(100*time.Microsecond), r.MachineStallEpisodes)
}

// silences is the agents' silences over the bound and, in brackets, how
// many of them the machine's own stalls overlap and how many of the others
// a late tick of the silent agent's own, by cause (y yield, l lock wait, w
// waking, k the loop's work after waking): "16(9,y5l0w1k0)".
func silences(r *soak.Result) string {
	own := fmt.Sprintf("y%dl%dw%dk%d", r.SilencesOwnLate["yield"], r.SilencesOwnLate["lock_wait"], r.SilencesOwnLate["wake"], r.SilencesOwnLate["work"])
	if r.SilencesInStall < 0 {
		return fmt.Sprintf("%d(-,%s)", r.Silences, own)
	}
	return fmt.Sprintf("%d(%d,%s)", r.Silences, r.SilencesInStall, own)
}

// floodCmd is the flood clients' command line (socket and entity are
// appended).
func floodCmd(self string, stream bool) []string {
	if stream {
		return []string{self, "-flood-stream", "-flood-client"}
	}
	return []string{self, "-flood-client"}
}

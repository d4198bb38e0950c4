package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Figure is one distribution of a Result, by name.
type Figure struct {
	Key  string // the figure's key in the JSON results
	Name string
	Get  func(*Result) Dist
}

// Figures are the distributions Summary prints, in order. Names starting
// with spaces are parts of the figure above them.
var Figures = []Figure{
	{"report", "report to everywhere (fault report -> every shm)", func(r *Result) Dist { return r.Report }},
	{"report_to_master", "  client -> master's decision", func(r *Result) Dist { return r.ReportToMaster }},
	{"report_from_master", "  master's decision -> every shm", func(r *Result) Dist { return r.ReportFromMaster }},
	{"report_return", "  Report call returned", func(r *Result) Dist { return r.ReportReturn }},
	{"report_written", "  client -> written in every table", func(r *Result) Dist { return r.ReportWritten }},
	{"report_from_master_written", "  decision -> written in every table", func(r *Result) Dist { return r.ReportFromMasterWritten }},
	{"report_stream", "  on the stream socket: -> every shm", func(r *Result) Dist { return r.ReportStream }},
	{"report_stream_written", "  on the stream socket: -> written in every table", func(r *Result) Dist { return r.ReportStreamWritten }},
	{"down", "down propagation (decision -> every shm)", func(r *Result) Dist { return r.Down }},
	{"down_first", "  master's decision -> first shm", func(r *Result) Dist { return r.DownFirst }},
	{"down_spread", "  first shm -> last shm", func(r *Result) Dist { return r.DownSpread }},
	{"down_total", "  SetState(down) -> every shm", func(r *Result) Dist { return r.DownTotal }},
	{"down_written", "  decision -> written in every table", func(r *Result) Dist { return r.DownWritten }},
	{"baseline", "baseline: multicast -> all N receivers", func(r *Result) Dist { return r.Baseline }},
	{"baseline_first", "  -> first receiver", func(r *Result) Dist { return r.BaselineFirst }},
	{"floor", "two-hop floor: via N RT relays -> every shm", func(r *Result) Dist { return r.Floor }},
	{"floor_first", "  -> first shm", func(r *Result) Dist { return r.FloorFirst }},
	{"floor_written", "  one RT hop: -> written in every relay table", func(r *Result) Dist { return r.FloorWritten }},
	{"report_floor", "report's floor: 3 hops -> every shm", func(r *Result) Dist { return r.ReportFloor }},
	{"report_floor_first", "  -> first shm", func(r *Result) Dist { return r.ReportFloorFirst }},
	{"report_floor_written", "  -> written in every relay table", func(r *Result) Dist { return r.ReportFloorWritten }},
	{"detect", "detection: SIGSTOP -> every survivor's shm", (*Result).DetectDist},
	{"detect_decision", "  SIGSTOP -> master's decision", (*Result).DecisionDist},
	{"detect_propagate", "  decision -> last survivor's shm", (*Result).PropagateDist},
	{"detect_spread", "  first survivor -> last", (*Result).KillSpreadDist},
	{"detect_at_floor", "  a perfect agent: bound - phase + two-hop floor", (*Result).DetectAtFloorDist},
	{"detect_written", "  SIGSTOP -> written in every survivor's table", (*Result).DetectWrittenDist},
	{"failover", "failover: SIGSTOP of master -> every shm", (*Result).FailoverDist},
	{"failover_decision", "  SIGSTOP -> new master's decision", (*Result).FailoverDecisionDist},
	{"failover_propagate", "  decision -> last survivor's shm", (*Result).FailoverPropagateDist},
	{"exit", "exit: kill -9 -> every survivor's shm", func(r *Result) Dist { return killDist(r.Exits, func(k Kill) time.Duration { return k.Detect }) }},
	{"exit_decision", "  kill -9 -> master's decision", func(r *Result) Dist { return killDist(r.Exits, func(k Kill) time.Duration { return k.ToDecision }) }},
	{"exit_written", "  kill -9 -> written in every survivor's table", func(r *Result) Dist { return killDist(r.Exits, func(k Kill) time.Duration { return k.Written }) }},
	{"exit_failover", "exit failover: kill -9 of master -> every shm", func(r *Result) Dist { return killDist(r.ExitFailovers, func(k Kill) time.Duration { return k.Detect }) }},
	{"exit_failover_written", "  kill -9 of master -> written in every survivor's table", func(r *Result) Dist {
		return killDist(r.ExitFailovers, func(k Kill) time.Duration { return k.Written })
	}},
}

// Ratios are the figures compared with the baseline.
var Ratios = []Figure{
	{"report", "report to everywhere", func(r *Result) Dist { return r.Report }},
	{"report_from_master", "report: master's decision -> every shm", func(r *Result) Dist { return r.ReportFromMaster }},
	{"down", "down propagation", func(r *Result) Dist { return r.Down }},
	{"report_written", "report -> written in every table", func(r *Result) Dist { return r.ReportWritten }},
	{"report_stream_written", "report on the stream socket -> written in every table", func(r *Result) Dist { return r.ReportStreamWritten }},
	{"report_from_master_written", "report: decision -> written in every table", func(r *Result) Dist { return r.ReportFromMasterWritten }},
	{"down_written", "down: decision -> written in every table", func(r *Result) Dist { return r.DownWritten }},
	// The floors themselves: what a path with nothing in its hops costs
	// against the baseline on this host. A ratio target below a path's
	// floor cannot be met by any agent here.
	{"floor_written", "floor: one RT hop -> written in every relay table", func(r *Result) Dist { return r.FloorWritten }},
	{"report_floor_written", "floor: the report's 3 hops -> written in every relay table", func(r *Result) Dist { return r.ReportFloorWritten }},
}

// FloorRatios are the figures compared with the two-hop floor: the paths
// that end in every node's shared memory from one datagram of the master.
var FloorRatios = []Figure{
	{"report_from_master", "report: master's decision -> every shm", func(r *Result) Dist { return r.ReportFromMaster }},
	{"down", "down propagation", func(r *Result) Dist { return r.Down }},
}

// HopRatios are the figures compared with one real-time hop (the relays'
// write): the paths that end written in every node's table from one
// datagram of the master, before any reader is woken.
var HopRatios = []Figure{
	{"report_from_master_written", "report: decision -> written in every table", func(r *Result) Dist { return r.ReportFromMasterWritten }},
	{"down_written", "down: decision -> written in every table", func(r *Result) Dist { return r.DownWritten }},
}

// ReportFloorRatios are the figures compared with the report's floor (its
// three hops with nothing else, reportfloor.go).
var ReportFloorRatios = []Figure{
	{"report", "report to everywhere", func(r *Result) Dist { return r.Report }},
	{"report_written", "report -> written in every table", func(r *Result) Dist { return r.ReportWritten }},
	{"report_stream_written", "report on the stream socket -> written in every table", func(r *Result) Dist { return r.ReportStreamWritten }},
}

// reference is what some figures are divided by: the baseline, the
// two-hop floor, or one real-time hop.
type reference struct {
	title string
	get   func(*Result) Dist
	figs  []Figure
}

var (
	toBaseline    = reference{"ratio to the baseline", func(r *Result) Dist { return r.Baseline }, Ratios}
	toFloor       = reference{"ratio to the two-hop floor", func(r *Result) Dist { return r.Floor }, FloorRatios}
	toHop         = reference{"ratio to one RT hop (relays' write)", func(r *Result) Dist { return r.FloorWritten }, HopRatios}
	toReportFloor = reference{"ratio to the report's floor (written)", func(r *Result) Dist { return r.ReportFloorWritten }, ReportFloorRatios}
	references    = []reference{toBaseline, toFloor, toHop, toReportFloor}
)

// pairs is each of x's figures' p50 and p99 over the reference's, in r
// (nil if r has no reference samples).
func (x reference) pairs(r *Result) map[string]RatioPair {
	ref := x.get(r)
	if len(ref) == 0 {
		return nil
	}
	out := map[string]RatioPair{}
	for _, f := range x.figs {
		d := f.Get(r)
		out[f.Key] = RatioPair{Ratio(d.P50(), ref.P50()), Ratio(d.P99(), ref.P99())}
	}
	return out
}

// medianPairs is, for each figure, the median over rs of pairs (nil if
// the first run has no reference samples).
func (x reference) medianPairs(rs []*Result) map[string]RatioPair {
	if len(x.get(rs[0])) == 0 {
		return nil
	}
	out := map[string]RatioPair{}
	for _, f := range x.figs {
		var a, b []float64
		for _, r := range rs {
			p := x.pairs(r)[f.Key]
			a, b = append(a, p.P50), append(b, p.P99)
		}
		out[f.Key] = RatioPair{medianFloat(a), medianFloat(b)}
	}
	return out
}

// write writes pairs (of x's figures) under x's title; nothing if nil.
func (x reference) write(b *strings.Builder, pairs map[string]RatioPair) {
	if pairs == nil {
		return
	}
	fmt.Fprintf(b, "  %-44s %8s  %8s\n", x.title, "p50/p50", "p99/p99")
	for _, f := range x.figs {
		fmt.Fprintf(b, "    %-42s %7.2f×  %7.2f×\n", f.Name, pairs[f.Key].P50, pairs[f.Key].P99)
	}
}

// Summary writes the figures of r.
func (r *Result) Summary(w io.Writer) {
	var b strings.Builder
	fmt.Fprintf(&b, "%d nodes on lo (master: node %d; client on node %d; %v × %d: detection bound %v; load average %.2f → %.2f)\n",
		r.Nodes, r.Master, r.Client, r.Interval, r.Misses, r.Bound, r.LoadBefore, r.LoadAfter)
	for _, f := range Figures {
		if d := f.Get(r); len(d) > 0 {
			fmt.Fprintf(&b, "  %-44s %s\n", f.Name, d)
		}
	}
	for _, x := range references {
		x.write(&b, x.pairs(r))
	}
	if d := r.DetectDist(); len(d) > 0 {
		fmt.Fprintf(&b, "  %-44s p50 %.2f×  p99 %.2f×  max %.2f×\n", "detection / bound", Ratio(d.P50(), r.Bound), Ratio(d.P99(), r.Bound), Ratio(d.Max(), r.Bound))
		if a := r.DetectAtBoundDist(); len(a) > 0 {
			fmt.Fprintf(&b, "  %-44s p50 %.2f×  p99 %.2f×  max %.2f× (%d kills; %d at a widened bound)\n", "  at the configured bound", Ratio(a.P50(), r.Bound), Ratio(a.P99(), r.Bound), Ratio(a.Max(), r.Bound), len(a), r.KillsAtWidenedBound())
		}
		if a := r.DetectWrittenAtBoundDist(); len(a) > 0 {
			fmt.Fprintf(&b, "  %-44s %s\n", "  the same, written in every table", a)
		}
	}
	if d := r.FailoverDist(); len(d) > 0 {
		fmt.Fprintf(&b, "  %-44s p50 %.2f×  p99 %.2f×  max %.2f×\n", "failover / bound", Ratio(d.P50(), r.Bound), Ratio(d.P99(), r.Bound), Ratio(d.Max(), r.Bound))
	}
	if s := r.Idle; s != nil {
		fmt.Fprintf(&b, "  idle %v (load %.2f): CPU per agent mean %.2f%% max %.2f%% of a core, RSS %.1f MiB, %.0f datagrams/s per agent, %s CPU per datagram; %d peer downs, %d elections; the machine woke agents later than the profile tolerates %d times\n",
			s.Window.Round(time.Millisecond), s.LoadAverage, 100*s.MeanCPU, 100*s.MaxCPU, float64(s.MeanRSSKiB)/1024, s.MeanPacketsPerS,
			FormatDuration(s.MeanCPUPerPacket), s.PeerDowns, s.Elections, s.Overruns)
		writeThreads(&b, s)
		writeFloors(&b, s)
	}
	if len(r.Failures) > 0 {
		fmt.Fprintf(&b, "  FAILURES (%d):\n", len(r.Failures))
		for _, f := range r.Failures {
			fmt.Fprintf(&b, "    %s\n", f)
		}
	}
	io.WriteString(w, b.String())
}

// WriteMedians writes, for results of several runs of one configuration,
// the median over the runs of each figure's quantiles and of each ratio.
func WriteMedians(w io.Writer, rs []*Result) {
	if len(rs) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d nodes, %v × %d: median of %d runs\n", rs[0].Nodes, rs[0].Interval, rs[0].Misses, len(rs))
	fmt.Fprintf(&b, "  %-44s %8s  %8s  %8s  %8s\n", "", "p50", "p90", "p99", "max")
	med := func(f func(*Result) time.Duration) time.Duration {
		v := make([]time.Duration, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	for _, f := range Figures {
		if len(f.Get(rs[0])) == 0 {
			continue
		}
		q := func(p float64) string {
			return FormatDuration(med(func(r *Result) time.Duration { return f.Get(r).Quantile(p) }))
		}
		fmt.Fprintf(&b, "  %-44s %8s  %8s  %8s  %8s\n", f.Name, q(0.5), q(0.9), q(0.99), q(1))
	}
	medf := func(f func(*Result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	for _, x := range references {
		x.write(&b, x.medianPairs(rs))
	}
	if len(rs[0].Kills) > 0 {
		p50 := medf(func(r *Result) float64 { return Ratio(r.DetectDist().P50(), r.Bound) })
		p99 := medf(func(r *Result) float64 { return Ratio(r.DetectDist().P99(), r.Bound) })
		mx := medf(func(r *Result) float64 { return Ratio(r.DetectDist().Max(), r.Bound) })
		fmt.Fprintf(&b, "  %-44s p50 %.2f×  p99 %.2f×  max %.2f×\n", "detection / bound", p50, p99, mx)
		if q, ok := medianQuantiles(rs, (*Result).DetectAtBoundDist); ok {
			fmt.Fprintf(&b, "  %-44s p50 %.2f×  p99 %.2f×  max %.2f× (%d kills; %d at a widened bound)\n", "  at the configured bound",
				Ratio(q.P50, rs[0].Bound), Ratio(q.P99, rs[0].Bound), Ratio(q.Max, rs[0].Bound), q.N, killsWidened(rs))
		}
		if q, ok := medianQuantiles(rs, (*Result).DetectWrittenAtBoundDist); ok {
			fmt.Fprintf(&b, "  %-44s %8s  %8s  %8s  %8s\n", "  the same, written in every table", FormatDuration(q.P50), FormatDuration(q.P90), FormatDuration(q.P99), FormatDuration(q.Max))
		}
	}
	if rs[0].Idle != nil {
		s := medianIdle(rs)
		fmt.Fprintf(&b, "  idle (median of runs): CPU per agent %.2f%% of a core, RSS %.1f MiB, %.0f datagrams/s per agent, %s CPU per datagram; false peer downs %d, elections %d, machine overruns %d (summed)\n",
			100*s.MeanCPU, float64(s.MeanRSSKiB)/1024, s.MeanPacketsPerS, FormatDuration(s.MeanCPUPerPacket), s.PeerDowns, s.Elections, s.Overruns)
		writeThreads(&b, s)
		writeFloors(&b, s)
	}
	io.WriteString(w, b.String())
}

// writeThreads writes the agents' idle CPU by thread (ThreadSplit).
func writeThreads(b *strings.Builder, s *ResourceSummary) {
	if t := s.MeanThreads; t != nil {
		fmt.Fprintf(b, "  idle CPU by thread (mean per agent, schedstat): real-time threads %.2f%%, Go's sysmon %.2f%%, other threads %.2f%% of a core\n",
			100*t.Realtime, 100*t.Sysmon, 100*t.Other)
	}
}

// writeFloors writes the idle floors of s and the agents' CPU over each.
func writeFloors(b *strings.Builder, s *ResourceSummary) {
	f := s.Floors
	if f == nil {
		return
	}
	fmt.Fprintf(b, "  idle floors (the same ticks, no protocol):")
	if f.GoCPU > 0 {
		fmt.Fprintf(b, " Go loop %.2f%% at %.0f datagrams/s (agent %.2f×)", 100*f.GoCPU, f.GoPPS, s.MeanCPU/f.GoCPU)
	}
	if f.CCPU > 0 {
		fmt.Fprintf(b, ", C loop %.2f%% at %.0f datagrams/s (agent %.2f×, Go loop %.2f×)", 100*f.CCPU, f.CPPS, s.MeanCPU/f.CCPU, f.GoCPU/f.CCPU)
	} else if f.CNote != "" {
		fmt.Fprintf(b, ", C loop not measured: %s", f.CNote)
	}
	b.WriteString("\n")
}

package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteTables writes the medians of every group, and the cost model, as
// Markdown tables (the ones docs/bench.md shows).
func WriteTables(w io.Writer, gs []GroupJSON, cost []Cost) {
	var b strings.Builder
	f := FormatDuration
	loads := func(g GroupJSON) string {
		lo, hi := 0.0, 0.0
		for i, l := range g.LoadAverages {
			if i == 0 || l < lo {
				lo = l
			}
			if i == 0 || l > hi {
				hi = l
			}
		}
		return fmt.Sprintf("%.1f–%.1f", lo, hi)
	}

	has := func(ok func(GroupJSON) bool) bool {
		for _, g := range gs {
			if ok(g) {
				return true
			}
		}
		return false
	}
	if has(func(g GroupJSON) bool { _, ok := g.Median["baseline"]; return ok }) {
		b.WriteString("Latency (median over the runs of each quantile; × is the ratio to the baseline of the same run, × floor to the two-hop floor's, × hop to one real-time hop's (the relays' write), medians over the runs). \"Every shm\": seen by a reader in every node's segment, woken by the futex; \"written\": the row's written_at in every node's segment, when it became readable there\n\n")
		b.WriteString("| profile | N | figure | p50 | p99 | max | p50 × | p99 × | p50 × floor | p99 × floor | p50 × hop | p99 × hop | load avg |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, g := range gs {
			if _, ok := g.Median["baseline"]; !ok {
				continue
			}
			for _, row := range []struct{ key, name string }{
				{"down", "down propagation (decision → every shm)"},
				{"down_written", "down: decision → written in every table"},
				{"report", "report → every shm"},
				{"report_written", "report → written in every table"},
				{"report_from_master", "report: decision → every shm"},
				{"report_from_master_written", "report: decision → written in every table"},
				{"baseline", "baseline: multicast → N receivers"},
				{"floor", "two-hop floor: via N RT relays → every shm"},
				{"floor_written", "one RT hop: N RT relays → written"},
				{"report_floor", "report's floor: 3 hops → every shm"},
				{"report_floor_written", "report's floor → written"},
			} {
				q, ok := g.Median[row.key]
				if !ok {
					continue
				}
				rs := [6]string{}
				if r, ok := g.MedianRatios[row.key]; ok {
					rs[0], rs[1] = fmt.Sprintf("%.2f×", r.P50), fmt.Sprintf("%.2f×", r.P99)
				}
				if r, ok := g.MedianFloorRatios[row.key]; ok {
					rs[2], rs[3] = fmt.Sprintf("%.2f×", r.P50), fmt.Sprintf("%.2f×", r.P99)
				}
				if r, ok := g.MedianHopRatios[row.key]; ok {
					rs[4], rs[5] = fmt.Sprintf("%.2f×", r.P50), fmt.Sprintf("%.2f×", r.P99)
				}
				fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", g.Profile, g.Nodes, row.name, f(q.P50), f(q.P99), f(q.Max), rs[0], rs[1], rs[2], rs[3], rs[4], rs[5], loads(g))
			}
		}
	}

	if has(func(g GroupJSON) bool { return g.MedianReportFloorRatios != nil }) {
		b.WriteString("\nThe report against its floor: its three hops with nothing else (the harness's 8 bytes on a Unix socket to a forwarder, whose SCHED_FIFO thread sends them to a hub, whose SCHED_FIFO thread sends them to the N relays, which write them; bench/reportfloor.go), written in every table, same runs\n\n")
		b.WriteString("| profile | N | report → written p50 | p99 | floor → written p50 | p99 | p50 × | p99 × | load avg |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, g := range gs {
			r, ok := g.MedianReportFloorRatios["report_written"]
			if !ok {
				continue
			}
			q, fl := g.Median["report_written"], g.Median["report_floor_written"]
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %.2f× | %.2f× | %s |\n", g.Profile, g.Nodes, f(q.P50), f(q.P99), f(fl.P50), f(fl.P99), r.P50, r.P99, loads(g))
		}
	}

	if has(func(g GroupJSON) bool { _, ok := g.Median["detect"]; return ok }) {
		b.WriteString("\nDetection at the heartbeats' bound (a non-master stopped, SIGSTOP: silent as a hung host → down in every survivor's shm) and failover (the master stopped → its down, the new master's first change, in every survivor's shm). A kill -9 is seen sooner, by the exit watch: the next table\n\n")
		b.WriteString("Kills at the configured bound (here, stops): those whose victim the master (the decider) held at the profile's bound just before the stop; the others came after a false down of the victim had widened its bound (agent/core/detector.go), and measure the widening. A perfect agent: one that judges the victim down exactly when its bound runs out after its last heartbeat (the kill at a phase uniform over the interval after it) and whose down reaches every survivor's shm in the two-hop floor's time of the same run (Result.DetectAtFloorDist): what no agent could beat on this machine.\n\n")
		b.WriteString("Written p99: the same kills at the configured bound, to the down written in every survivor's table (the rows' written_at: readable there, before a reader is woken).\n\n")
		b.WriteString("| profile | bound | N | detect p50 | p99 | max | p99 / bound | at the configured bound: kills | p50 | p99 | max | written p99 | kills at a widened bound | a perfect agent p99 | failover p50 | p99 | max | load avg |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, g := range gs {
			d, ok := g.Median["detect"]
			if !ok {
				continue
			}
			fo := [3]string{"—", "—", "—"}
			if q, ok := g.Median["failover"]; ok {
				fo = [3]string{f(q.P50), f(q.P99), f(q.Max)}
			}
			at := [4]string{"0", "—", "—", "—"}
			if q := g.MedianDetectAtBound; q != nil {
				at = [4]string{fmt.Sprint(q.N), f(q.P50), f(q.P99), f(q.Max)}
			}
			written := "—"
			if q := g.MedianDetectWrittenAtBound; q != nil {
				written = f(q.P99)
			}
			perfect := "—"
			if q, ok := g.Median["detect_at_floor"]; ok {
				perfect = f(q.P99)
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %.2f× | %s | %s | %s | %s | %s | %d | %s | %s | %s | %s | %s |\n", g.Profile, f(g.Bound), g.Nodes,
				f(d.P50), f(d.P99), f(d.Max), g.MedianDetectOverBound["p99"], at[0], at[1], at[2], at[3], written, g.KillsWidened, perfect, fo[0], fo[1], fo[2], loads(g))
		}
	}

	if has(func(g GroupJSON) bool { _, ok := g.Median["exit"]; return ok }) {
		b.WriteString("\nProcess exits: kill -9 of a non-master → down in every survivor's shm (and written in every survivor's table), and of the master → its down, the new master's first change, in every survivor's shm. Seen by the exit watch (agent/exitwatch.go): the victim's kernel closes its connection as the process dies (held by a thread with a file table of its own, internal/connhold: before the memory is freed)\n\n")
		b.WriteString("| profile | bound | N | exit p50 | p99 | max | kill -9 → decision p50 | written p99 | exit failover p50 | p99 | max | written p50 | p99 | load avg |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, g := range gs {
			d, ok := g.Median["exit"]
			if !ok {
				continue
			}
			dec, wr := "—", "—"
			if q, ok := g.Median["exit_decision"]; ok {
				dec = f(q.P50)
			}
			if q, ok := g.Median["exit_written"]; ok {
				wr = f(q.P99)
			}
			fo := [5]string{"—", "—", "—", "—", "—"}
			if q, ok := g.Median["exit_failover"]; ok {
				fo[0], fo[1], fo[2] = f(q.P50), f(q.P99), f(q.Max)
			}
			if q, ok := g.Median["exit_failover_written"]; ok {
				fo[3], fo[4] = f(q.P50), f(q.P99)
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", g.Profile, f(g.Bound), g.Nodes,
				f(d.P50), f(d.P99), f(d.Max), dec, wr, fo[0], fo[1], fo[2], fo[3], fo[4], loads(g))
		}
	}

	if has(func(g GroupJSON) bool { return g.MedianIdle != nil }) {
		b.WriteString("\nIdle resource use per agent (median over the runs; CPU from /proc/PID/stat, RSS from /proc/PID/status, datagrams from the agents' metrics, sent + received on both networks)\n\n")
		b.WriteString("| profile | N | CPU (% of a core) | max agent | by thread: real-time / sysmon / other | Go floor | C floor | RSS | datagrams/s | CPU per datagram | false peer downs | elections | machine overruns | load avg |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, g := range gs {
			s := g.MedianIdle
			if s == nil {
				continue
			}
			floor := func(v float64) string {
				if v <= 0 {
					return "—"
				}
				return fmt.Sprintf("%.2f%% (%.2f×)", 100*v, s.MeanCPU/v)
			}
			gof, cf := "—", "—"
			if s.Floors != nil {
				gof, cf = floor(s.Floors.GoCPU), floor(s.Floors.CCPU)
			}
			split := "—"
			if t := s.MeanThreads; t != nil {
				split = fmt.Sprintf("%.2f / %.2f / %.2f%%", 100*t.Realtime, 100*t.Sysmon, 100*t.Other)
			}
			fmt.Fprintf(&b, "| %s | %d | %.2f%% | %.2f%% | %s | %s | %s | %.1f MiB | %.0f | %s | %d | %d | %d | %.2f |\n", g.Profile, g.Nodes, 100*s.MeanCPU, 100*s.MaxCPU,
				split, gof, cf, float64(s.MeanRSSKiB)/1024, s.MeanPacketsPerS, f(s.MeanCPUPerPacket), s.PeerDowns, s.Elections, s.Overruns, s.LoadAverage)
		}
		if has(func(g GroupJSON) bool { return g.MedianIdle != nil && g.MedianIdle.MeanThreads != nil }) {
			b.WriteString("\nBy thread: each thread's time on a CPU (/proc/PID/task/TID/schedstat), mean per agent: its threads at SCHED_FIFO (the real-time loop; the exit watch's, which run only when a connection ends), Go's monitor thread sysmon (the process's second thread), the rest (bench.ThreadSplit).\n")
		}
		if has(func(g GroupJSON) bool { return g.MedianIdle != nil && g.MedianIdle.Floors != nil }) {
			b.WriteString("\nFloors: N processes that only do the agents' idle ticks (idlefloor.go), measured right after them; in brackets the agents' CPU over the floor. Go floor: the agent's transport, waiter and real-time thread, no protocol; C floor: the same system calls from one C thread (bench/csrc/hbloop.c).\n")
		}
	}

	if len(cost) > 0 {
		b.WriteString("\nCost model of an idle cluster (netsim, the real core; per node and second, mean over the nodes). The CPU column multiplies the datagrams by the CPU per datagram measured above for the same interval at the largest N measured.\n\n")
		b.WriteString("| interval × misses | N | sent/s | received/s | sent B/s | received B/s | mean datagram | est. CPU (% of a core) | sim CPU per received |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, c := range cost {
			est := "—"
			if per := perPacket(gs, c.Interval, c.Misses); per > 0 {
				est = fmt.Sprintf("%.1f%%", 100*(c.SentPerS+c.RecvPerS)*per.Seconds())
			}
			fmt.Fprintf(&b, "| %v × %d | %d | %.0f | %.0f | %.0f | %.0f | %.0f B | %s | %s |\n", c.Interval, c.Misses, c.Nodes,
				c.SentPerS, c.RecvPerS, c.SentBytesPS, c.RecvBytesPS, c.MeanDatagram, est, f(c.SimCPUPerRecv))
		}
	}
	io.WriteString(w, b.String())
}

// perPacket is the measured idle CPU per datagram of the largest cluster
// measured with this timing (0: none).
func perPacket(gs []GroupJSON, interval time.Duration, misses int) time.Duration {
	var per time.Duration
	n := 0
	for _, g := range gs {
		if g.Interval == interval && g.Misses == misses && g.MedianIdle != nil && g.Nodes > n {
			n, per = g.Nodes, g.MedianIdle.MeanCPUPerPacket
		}
	}
	return per
}

package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Resource use of one agent over an idle window (nothing reported, nothing
// changing: heartbeats only), from /proc/PID/stat (utime + stime, every
// thread), /proc/PID/status (VmRSS, VmHWM) and the agent's own metrics
// (datagrams sent and received on both networks, protocol events).
type Resource struct {
	Node int `json:"node"`
	// CPU is the agent's CPU time over the window divided by the window: 0.01
	// is 1% of one core.
	CPU    float64 `json:"cpu_fraction"`
	CPUSec float64 `json:"cpu_seconds"`
	// RSS and HWM are VmRSS and VmHWM at the end of the window, in KiB.
	RSSKiB int64 `json:"rss_kib"`
	HWMKiB int64 `json:"hwm_kib"`
	// Sent and Received are datagrams over the window (both networks).
	Sent     uint64 `json:"packets_sent"`
	Received uint64 `json:"packets_received"`
	// CPUPerPacket is CPU time divided by datagrams sent plus received.
	CPUPerPacket time.Duration `json:"cpu_per_packet_ns"`
	// PeerDowns and Elections are the agent's peer-down and elected
	// events over the window: on an idle cluster every one is false.
	PeerDowns uint64 `json:"peer_downs"`
	Elections uint64 `json:"elections"`
	// Overruns are the agent's wake-ups that the machine made later than
	// the profile tolerates (fmagent_rt_profile_overruns_total): the
	// machine's stalls that every peer heard as a silence past the bound.
	Overruns uint64 `json:"machine_overruns"`
	// Threads is the same CPU by thread (nil: not measured).
	Threads *ThreadSplit `json:"threads,omitempty"`
}

// ThreadSplit is an agent's CPU over a window by thread, in fractions of
// one core, from each thread's /proc/PID/task/TID/schedstat (its time on a
// CPU, in ns): what an idle agent's CPU is spent on, which the process's
// total does not say.
//   - Realtime: the threads at SCHED_FIFO or SCHED_RR at the window's end
//     (the real-time loop, and the exit watch's two threads, which run
//     only when a connection ends);
//   - Sysmon: Go's monitor thread, the process's second thread (the first
//     one Go's runtime starts, before any other code runs). While a
//     goroutine keeps a P, as the loop does (DESIGN §8), it never sleeps
//     longer than 10 ms: a part of an idle agent's CPU that the protocol
//     does not cause;
//   - Other: every other thread (the API, the savers, the guard, the
//     garbage collector's workers).
//
// Threads that ended during the window are not counted.
type ThreadSplit struct {
	Realtime float64 `json:"realtime_fraction"`
	Sysmon   float64 `json:"sysmon_fraction"`
	Other    float64 `json:"other_fraction"`
}

// threadRun is one thread's CPU time so far and its policy.
type threadRun struct {
	runNs  uint64
	policy int // sched_setattr's: 1 SCHED_FIFO, 2 SCHED_RR
}

// procThreads reads the CPU time and policy of every thread of pid.
func procThreads(pid int) (map[int]threadRun, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make(map[int]threadRun, len(ents))
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ss, err1 := os.ReadFile(fmt.Sprintf("%s/%d/schedstat", dir, tid))
		st, err2 := os.ReadFile(fmt.Sprintf("%s/%d/stat", dir, tid))
		if err1 != nil || err2 != nil {
			continue // ended meanwhile
		}
		f := strings.Fields(string(ss))
		if len(f) < 1 {
			return nil, fmt.Errorf("bench: %s/%d/schedstat: empty", dir, tid)
		}
		run, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bench: %s/%d/schedstat: %q", dir, tid, f[0])
		}
		sf, err := statFields(st, fmt.Sprintf("%s/%d/stat", dir, tid), 39)
		if err != nil {
			return nil, err
		}
		pol, err := strconv.Atoi(sf[38]) // field 41, policy
		if err != nil {
			return nil, fmt.Errorf("bench: %s/%d/stat: policy %q", dir, tid, sf[38])
		}
		out[tid] = threadRun{runNs: run, policy: pol}
	}
	return out, nil
}

// splitThreads is the CPU of each kind of thread between two readings of
// procThreads, window apart (ThreadSplit says which is which).
func splitThreads(before, after map[int]threadRun, window time.Duration) *ThreadSplit {
	if len(after) == 0 || window <= 0 {
		return nil
	}
	tids := make([]int, 0, len(after))
	for tid := range after {
		tids = append(tids, tid)
	}
	slices.Sort(tids)
	sysmon := -1
	if len(tids) > 1 {
		sysmon = tids[1]
	}
	var rt, mon, other uint64
	for _, tid := range tids {
		a := after[tid]
		d := a.runNs - min(before[tid].runNs, a.runNs)
		switch {
		case a.policy == 1 || a.policy == 2:
			rt += d
		case tid == sysmon:
			mon += d
		default:
			other += d
		}
	}
	w := float64(window.Nanoseconds())
	return &ThreadSplit{Realtime: float64(rt) / w, Sysmon: float64(mon) / w, Other: float64(other) / w}
}

// ResourceSummary is the Resource of every agent of a run and their mean.
type ResourceSummary struct {
	Window      time.Duration `json:"window_ns"`
	LoadAverage float64       `json:"load_average_1m"`
	PerAgent    []Resource    `json:"per_agent"`
	// Means over the agents.
	MeanCPU          float64       `json:"mean_cpu_fraction"`
	MaxCPU           float64       `json:"max_cpu_fraction"`
	MeanRSSKiB       int64         `json:"mean_rss_kib"`
	MeanPacketsPerS  float64       `json:"mean_packets_per_second"` // sent + received, per agent
	MeanCPUPerPacket time.Duration `json:"mean_cpu_per_packet_ns"`
	PeerDowns        uint64        `json:"peer_downs"` // summed over the agents
	Elections        uint64        `json:"elections"`
	Overruns         uint64        `json:"machine_overruns"`
	// Floors is what the same ticks cost without the protocol, and without
	// Go's scheduler, measured right after (nil: not measured).
	Floors *IdleFloors `json:"floors,omitempty"`
	// MeanThreads is the mean over the agents of their CPU by thread (nil:
	// not measured).
	MeanThreads *ThreadSplit `json:"mean_threads,omitempty"`
}

// meanThreads is the mean of the agents' ThreadSplits (nil: none).
func meanThreads(rs []Resource) *ThreadSplit {
	var m ThreadSplit
	n := 0
	for _, r := range rs {
		if r.Threads == nil {
			continue
		}
		m.Realtime += r.Threads.Realtime
		m.Sysmon += r.Threads.Sysmon
		m.Other += r.Threads.Other
		n++
	}
	if n == 0 {
		return nil
	}
	m.Realtime /= float64(n)
	m.Sysmon /= float64(n)
	m.Other /= float64(n)
	return &m
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100
// on every Linux architecture Go supports.
const clockTicks = 100

// procCPU returns utime + stime of pid, in seconds.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f, err := statFields(b, fmt.Sprintf("/proc/%d/stat", pid), 13)
	if err != nil {
		return 0, err
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64) // field 14
	st, err2 := strconv.ParseUint(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bench: /proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return float64(ut+st) / clockTicks, nil
}

// statFields is the fields of a /proc stat file (of a process or a
// thread) from field 3 (state) on, at least want of them. The command name
// (field 2) is in parentheses and may hold spaces: the fields start after
// the last ')'.
func statFields(b []byte, path string, want int) ([]string, error) {
	s := string(b)
	k := strings.LastIndexByte(s, ')')
	if k < 0 {
		return nil, fmt.Errorf("bench: %s: malformed", path)
	}
	f := strings.Fields(s[k+1:])
	if len(f) < want {
		return nil, fmt.Errorf("bench: %s: %d fields", path, len(f))
	}
	return f, nil
}

// procMem returns VmRSS and VmHWM of pid in KiB.
func procMem(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fs[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	return rss, hwm, sc.Err()
}

// LoadAverage is the 1-minute load average (0 if unreadable).
func LoadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// agentCounters are the metrics the resource window reads.
type agentCounters struct {
	sent, received, peerDowns, elections, overruns uint64
}

// scrape reads the agent's metrics endpoint.
func scrape(ctx context.Context, addr string) (agentCounters, error) {
	var c agentCounters
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return c, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return c, fmt.Errorf("bench: metrics of %s: %w", addr, err)
	}
	defer resp.Body.Close()
	return parseCounters(resp.Body)
}

// parseCounters sums the counters it needs from the Prometheus text format.
func parseCounters(r io.Reader) (agentCounters, error) {
	var c agentCounters
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		base, labels, _ := strings.Cut(name, "{")
		switch {
		case base == "fmagent_packets_sent_total":
			c.sent += uint64(v)
		case base == "fmagent_packets_received_total":
			c.received += uint64(v)
		case base == "fmagent_events_total" && strings.Contains(labels, `kind="peer-down"`):
			c.peerDowns += uint64(v)
		case base == "fmagent_events_total" && strings.Contains(labels, `kind="elected"`):
			c.elections += uint64(v)
		case base == "fmagent_rt_profile_overruns_total":
			c.overruns += uint64(v)
		}
	}
	return c, sc.Err()
}

// measureIdle measures every agent of c over window, with nothing else
// happening.
func measureIdle(ctx context.Context, c *cluster, window time.Duration) (*ResourceSummary, error) {
	all := c.all()
	cpu0 := make([]float64, len(all))
	cnt0 := make([]agentCounters, len(all))
	th0 := make([]map[int]threadRun, len(all))
	for k, i := range all {
		var err error
		if cnt0[k], err = scrape(ctx, c.nodes[i].metrics); err != nil {
			return nil, err
		}
		if cpu0[k], err = procCPU(c.nodes[i].cmd.Process.Pid); err != nil {
			return nil, err
		}
		if th0[k], err = procThreads(c.nodes[i].cmd.Process.Pid); err != nil {
			return nil, err
		}
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(window):
	}
	s := &ResourceSummary{LoadAverage: LoadAverage()}
	cpu1 := make([]float64, len(all))
	th1 := make([]map[int]threadRun, len(all))
	for k, i := range all {
		var err error
		if cpu1[k], err = procCPU(c.nodes[i].cmd.Process.Pid); err != nil {
			return nil, err
		}
		if th1[k], err = procThreads(c.nodes[i].cmd.Process.Pid); err != nil {
			return nil, err
		}
	}
	s.Window = time.Since(t0)
	var sumCPU, sumPPS float64
	var sumRSS int64
	var sumPer time.Duration
	for k, i := range all {
		pid := c.nodes[i].cmd.Process.Pid
		cnt1, err := scrape(ctx, c.nodes[i].metrics)
		if err != nil {
			return nil, err
		}
		rss, hwm, err := procMem(pid)
		if err != nil {
			return nil, err
		}
		r := Resource{
			Node: i, CPUSec: cpu1[k] - cpu0[k], RSSKiB: rss, HWMKiB: hwm,
			Sent: cnt1.sent - cnt0[k].sent, Received: cnt1.received - cnt0[k].received,
			PeerDowns: cnt1.peerDowns - cnt0[k].peerDowns, Elections: cnt1.elections - cnt0[k].elections,
			Overruns: cnt1.overruns - cnt0[k].overruns,
		}
		r.CPU = r.CPUSec / s.Window.Seconds()
		r.Threads = splitThreads(th0[k], th1[k], s.Window)
		if p := r.Sent + r.Received; p > 0 {
			r.CPUPerPacket = time.Duration(r.CPUSec * 1e9 / float64(p))
		}
		s.PerAgent = append(s.PerAgent, r)
		sumCPU += r.CPU
		s.MaxCPU = max(s.MaxCPU, r.CPU)
		sumRSS += rss
		sumPPS += float64(r.Sent+r.Received) / s.Window.Seconds()
		sumPer += r.CPUPerPacket
		s.PeerDowns += r.PeerDowns
		s.Elections += r.Elections
		s.Overruns += r.Overruns
	}
	n := len(all)
	s.MeanThreads = meanThreads(s.PerAgent)
	s.MeanCPU = sumCPU / float64(n)
	s.MeanRSSKiB = sumRSS / int64(n)
	s.MeanPacketsPerS = sumPPS / float64(n)
	s.MeanCPUPerPacket = sumPer / time.Duration(n)
	return s, nil
}

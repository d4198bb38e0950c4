package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Quantiles are a distribution's nearest-rank quantiles, in nanoseconds.
type Quantiles struct {
	N   int           `json:"n"`
	P50 time.Duration `json:"p50_ns"`
	P90 time.Duration `json:"p90_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

func quantiles(d Dist) Quantiles {
	return Quantiles{N: len(d), P50: d.P50(), P90: d.P90(), P99: d.P99(), Max: d.Max()}
}

// RatioPair is a figure's p50 over the baseline's p50 and p99 over p99.
type RatioPair struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// RunJSON is one Result as written to the JSON results.
type RunJSON struct {
	Nodes       int                  `json:"nodes"`
	Master      int                  `json:"master"`
	Client      int                  `json:"client"`
	Interval    time.Duration        `json:"interval_ns"`
	Misses      int                  `json:"misses"`
	Bound       time.Duration        `json:"bound_ns"`
	LoadBefore  float64              `json:"load_average_before"`
	LoadAfter   float64              `json:"load_average_after"`
	Figures     map[string]Quantiles `json:"figures"`
	Ratios      map[string]RatioPair `json:"ratios_to_baseline,omitempty"`
	FloorRatios map[string]RatioPair `json:"ratios_to_floor,omitempty"`
	HopRatios   map[string]RatioPair `json:"ratios_to_rt_hop,omitempty"`
	// ReportFloorRatios: report and report_written over the report's
	// floor's written (reportfloor.go).
	ReportFloorRatios map[string]RatioPair `json:"ratios_to_report_floor,omitempty"`
	// DetectOverBound is detection / bound at p50, p99 and max.
	DetectOverBound   map[string]float64 `json:"detect_over_bound,omitempty"`
	FailoverOverBound map[string]float64 `json:"failover_over_bound,omitempty"`
	Kills             []KillJSON         `json:"kills,omitempty"`
	Failovers         []KillJSON         `json:"failovers,omitempty"`
	// Exits and ExitFailovers are the kill -9 repetitions (Kills and
	// Failovers are SIGSTOPs: the heartbeats' bound).
	Exits         []KillJSON `json:"exits,omitempty"`
	ExitFailovers []KillJSON `json:"exit_failovers,omitempty"`
	// DetectAtBound is the detection of the kills whose victim the master
	// held at the configured bound; KillsWidened counts the others (a
	// false down of the victim had widened its bound).
	DetectAtBound *Quantiles `json:"detect_at_configured_bound,omitempty"`
	// DetectWrittenAtBound is the same kills' stop to the down written
	// in every survivor's table.
	DetectWrittenAtBound *Quantiles       `json:"detect_written_at_configured_bound,omitempty"`
	KillsWidened         int              `json:"kills_at_widened_bound"`
	Idle                 *ResourceSummary `json:"idle,omitempty"`
	Failures             []string         `json:"failures,omitempty"`
}

// KillJSON is one Kill.
type KillJSON struct {
	Victim     int           `json:"victim"`
	Master     int           `json:"master"`
	NewMaster  int           `json:"new_master"`
	Detect     time.Duration `json:"detect_ns"`
	ToDecision time.Duration `json:"to_decision_ns"`
	Propagate  time.Duration `json:"propagate_ns"`
	Spread     time.Duration `json:"spread_ns"`
	Bound      time.Duration `json:"bound_ns"` // the decider's just before (Kill.Bound)
	Last       int           `json:"last_survivor"`
	SinceStart time.Duration `json:"last_survivor_started_ns"` // before the kill
	Written    time.Duration `json:"written_ns"`               // the signal to written in every survivor's table
}

func killsJSON(ks []Kill) []KillJSON {
	out := make([]KillJSON, len(ks))
	for i, k := range ks {
		out[i] = KillJSON(k)
	}
	return out
}

func overBound(d Dist, bound time.Duration) map[string]float64 {
	if len(d) == 0 {
		return nil
	}
	return map[string]float64{"p50": Ratio(d.P50(), bound), "p99": Ratio(d.P99(), bound), "max": Ratio(d.Max(), bound)}
}

// JSON returns r as written to the results.
func (r *Result) JSON() RunJSON {
	j := RunJSON{
		Nodes: r.Nodes, Master: r.Master, Client: r.Client, Interval: r.Interval, Misses: r.Misses, Bound: r.Bound,
		LoadBefore: r.LoadBefore, LoadAfter: r.LoadAfter,
		Figures:           map[string]Quantiles{},
		DetectOverBound:   overBound(r.DetectDist(), r.Bound),
		FailoverOverBound: overBound(r.FailoverDist(), r.Bound),
		Kills:             killsJSON(r.Kills), Failovers: killsJSON(r.Failovers),
		Exits: killsJSON(r.Exits), ExitFailovers: killsJSON(r.ExitFailovers),
		KillsWidened: r.KillsAtWidenedBound(),
		Idle:         r.Idle, Failures: r.Failures,
	}
	if d := r.DetectAtBoundDist(); len(d) > 0 {
		q := quantiles(d)
		j.DetectAtBound = &q
	}
	if d := r.DetectWrittenAtBoundDist(); len(d) > 0 {
		q := quantiles(d)
		j.DetectWrittenAtBound = &q
	}
	for _, f := range Figures {
		if d := f.Get(r); len(d) > 0 {
			j.Figures[f.Key] = quantiles(d)
		}
	}
	j.Ratios, j.FloorRatios, j.HopRatios = toBaseline.pairs(r), toFloor.pairs(r), toHop.pairs(r)
	j.ReportFloorRatios = toReportFloor.pairs(r)
	return j
}

// GroupJSON is every run of one profile and cluster size, and the median
// over the runs of each figure's quantiles and of each ratio.
type GroupJSON struct {
	Profile  string        `json:"profile"`
	Nodes    int           `json:"nodes"`
	Interval time.Duration `json:"interval_ns"`
	Misses   int           `json:"misses"`
	Bound    time.Duration `json:"bound_ns"`
	Runs     []RunJSON     `json:"runs"`
	// Median is, for each figure, the median over the runs of each quantile.
	Median            map[string]Quantiles `json:"median"`
	MedianRatios      map[string]RatioPair `json:"median_ratios_to_baseline,omitempty"`
	MedianFloorRatios map[string]RatioPair `json:"median_ratios_to_floor,omitempty"`
	MedianHopRatios   map[string]RatioPair `json:"median_ratios_to_rt_hop,omitempty"`
	// MedianReportFloorRatios: the same over the report's floor.
	MedianReportFloorRatios map[string]RatioPair `json:"median_ratios_to_report_floor,omitempty"`
	// MedianDetectOverBound is the median over the runs of detection /
	// bound at p50, p99 and max (and the same for failover).
	MedianDetectOverBound   map[string]float64 `json:"median_detect_over_bound,omitempty"`
	MedianFailoverOverBound map[string]float64 `json:"median_failover_over_bound,omitempty"`
	// MedianDetectAtBound is the median over the runs of each quantile of
	// the detection of kills at the configured bound (N: their number);
	// KillsWidened the kills at a widened bound, summed over the runs.
	MedianDetectAtBound *Quantiles `json:"median_detect_at_configured_bound,omitempty"`
	// MedianDetectWrittenAtBound is the same for the down written in every
	// survivor's table.
	MedianDetectWrittenAtBound *Quantiles       `json:"median_detect_written_at_configured_bound,omitempty"`
	KillsWidened               int              `json:"kills_at_widened_bound"`
	MedianIdle                 *ResourceSummary `json:"median_idle,omitempty"`
	LoadAverages               []float64        `json:"load_averages"`
}

func medianDur(v []time.Duration) time.Duration {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianFloat(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// medianQuantiles is, over the runs rs that have samples of get, the
// median of each quantile (N: the samples of all of them); ok false if
// none has any.
func medianQuantiles(rs []*Result, get func(*Result) Dist) (q Quantiles, ok bool) {
	var p50, p90, p99, mx []time.Duration
	for _, r := range rs {
		d := get(r)
		if len(d) == 0 {
			continue
		}
		q.N += len(d)
		p50, p90, p99, mx = append(p50, d.P50()), append(p90, d.P90()), append(p99, d.P99()), append(mx, d.Max())
	}
	if q.N == 0 {
		return q, false
	}
	q.P50, q.P90, q.P99, q.Max = medianDur(p50), medianDur(p90), medianDur(p99), medianDur(mx)
	return q, true
}

// killsWidened is the kills at a widened bound of every run of rs.
func killsWidened(rs []*Result) int {
	n := 0
	for _, r := range rs {
		n += r.KillsAtWidenedBound()
	}
	return n
}

// Group summarises the runs rs of one configuration.
func Group(profile string, rs []*Result) GroupJSON {
	g := GroupJSON{Profile: profile, Median: map[string]Quantiles{}}
	if len(rs) == 0 {
		return g
	}
	g.Nodes, g.Interval, g.Misses, g.Bound = rs[0].Nodes, rs[0].Interval, rs[0].Misses, rs[0].Bound
	for _, r := range rs {
		g.Runs = append(g.Runs, r.JSON())
		g.LoadAverages = append(g.LoadAverages, r.LoadBefore, r.LoadAfter)
	}
	for _, f := range Figures {
		if q, ok := medianQuantiles(rs, f.Get); ok {
			g.Median[f.Key] = q
		}
	}
	g.MedianRatios, g.MedianFloorRatios, g.MedianHopRatios = toBaseline.medianPairs(rs), toFloor.medianPairs(rs), toHop.medianPairs(rs)
	g.MedianReportFloorRatios = toReportFloor.medianPairs(rs)
	med := func(get func(*Result) Dist) map[string]float64 {
		out := map[string]float64{}
		for _, q := range []struct {
			k string
			f func(Dist) time.Duration
		}{{"p50", Dist.P50}, {"p99", Dist.P99}, {"max", Dist.Max}} {
			var v []float64
			for _, r := range rs {
				if d := get(r); len(d) > 0 {
					v = append(v, Ratio(q.f(d), r.Bound))
				}
			}
			if len(v) == 0 {
				return nil
			}
			out[q.k] = medianFloat(v)
		}
		return out
	}
	g.MedianDetectOverBound = med((*Result).DetectDist)
	g.MedianFailoverOverBound = med((*Result).FailoverDist)
	g.KillsWidened = killsWidened(rs)
	if q, ok := medianQuantiles(rs, (*Result).DetectAtBoundDist); ok {
		g.MedianDetectAtBound = &q
	}
	if q, ok := medianQuantiles(rs, (*Result).DetectWrittenAtBoundDist); ok {
		g.MedianDetectWrittenAtBound = &q
	}
	if rs[0].Idle != nil {
		g.MedianIdle = medianIdle(rs)
	}
	return g
}

// medianIdle is the median over the runs of each mean of the idle window
// (false downs and elections are summed over the runs).
func medianIdle(rs []*Result) *ResourceSummary {
	var cpu, mx, pps, load, thRT, thMon, thOther []float64
	var rss, per, win []time.Duration
	s := &ResourceSummary{}
	for _, r := range rs {
		if r.Idle == nil {
			continue
		}
		if t := r.Idle.MeanThreads; t != nil {
			thRT, thMon, thOther = append(thRT, t.Realtime), append(thMon, t.Sysmon), append(thOther, t.Other)
		}
		cpu = append(cpu, r.Idle.MeanCPU)
		mx = append(mx, r.Idle.MaxCPU)
		pps = append(pps, r.Idle.MeanPacketsPerS)
		load = append(load, r.Idle.LoadAverage)
		rss = append(rss, time.Duration(r.Idle.MeanRSSKiB))
		per = append(per, r.Idle.MeanCPUPerPacket)
		win = append(win, r.Idle.Window)
		s.PeerDowns += r.Idle.PeerDowns
		s.Elections += r.Idle.Elections
		s.Overruns += r.Idle.Overruns
	}
	if len(cpu) == 0 {
		return nil
	}
	s.MeanCPU, s.MaxCPU, s.MeanPacketsPerS, s.LoadAverage = medianFloat(cpu), medianFloat(mx), medianFloat(pps), medianFloat(load)
	s.MeanRSSKiB, s.MeanCPUPerPacket, s.Window = int64(medianDur(rss)), medianDur(per), medianDur(win)
	s.Floors = medianFloors(rs)
	if len(thRT) > 0 {
		s.MeanThreads = &ThreadSplit{Realtime: medianFloat(thRT), Sysmon: medianFloat(thMon), Other: medianFloat(thOther)}
	}
	return s
}

// medianFloors is the median over the runs of each idle floor (nil: none
// measured; a floor no run measured stays 0, with the first run's note).
func medianFloors(rs []*Result) *IdleFloors {
	var gos, cs, gpps, cpps []float64
	var note string
	for _, r := range rs {
		if r.Idle == nil || r.Idle.Floors == nil {
			continue
		}
		f := r.Idle.Floors
		if f.GoCPU > 0 {
			gos, gpps = append(gos, f.GoCPU), append(gpps, f.GoPPS)
		}
		if f.CCPU > 0 {
			cs, cpps = append(cs, f.CCPU), append(cpps, f.CPPS)
		}
		if note == "" {
			note = f.CNote
		}
	}
	if len(gos) == 0 && len(cs) == 0 && note == "" {
		return nil
	}
	fl := &IdleFloors{}
	if len(gos) > 0 {
		fl.GoCPU, fl.GoPPS = medianFloat(gos), medianFloat(gpps)
	}
	if len(cs) > 0 {
		fl.CCPU, fl.CPPS = medianFloat(cs), medianFloat(cpps)
	} else {
		fl.CNote = note
	}
	return fl
}

// WriteResults writes v as JSON to dir/<name>-<UTC timestamp>.json and to
// dir/<name>-latest.json, and returns the timestamped file's path.
func WriteResults(dir, name string, v any) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", err
	}
	b = append(b, '\n')
	p := filepath.Join(dir, fmt.Sprintf("%s-%s.json", name, time.Now().UTC().Format("20060102T150405Z")))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return "", err
	}
	tmp := filepath.Join(dir, "."+name+"-latest.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return "", err
	}
	return p, os.Rename(tmp, filepath.Join(dir, name+"-latest.json"))
}

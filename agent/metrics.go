package agent

import (
	"math"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/fmagent/fmagent/agent/core"
	fmmetrics "github.com/fmagent/fmagent/metrics"
	"github.com/fmagent/fmagent/transport"
	"github.com/fmagent/fmagent/wire"
)

// agentMetrics are the agent's own counters; updating one is an atomic add.
type agentMetrics struct {
	events        [core.EvStalled + 1]*fmmetrics.Counter // by core.EventKind
	rejects       map[string]*fmmetrics.Counter          // by wire.Reason
	persistErrors *fmmetrics.Counter
	tableSaves    *fmmetrics.Counter
	tableErrors   *fmmetrics.Counter
	shmErrors     *fmmetrics.Counter
	noAddr        *fmmetrics.Counter
	watchDropped  *fmmetrics.Counter
	bulkDropped   *fmmetrics.Counter
	propagation   *fmmetrics.Histogram
	tickLateness  *fmmetrics.Histogram
	tickLateMax   atomic.Int64 // ns
	yieldTime     *fmmetrics.Histogram
	yieldMax      atomic.Int64 // ns
	lockWait      *fmmetrics.Histogram
	lockWaitMax   atomic.Int64 // ns
	lateTicks     [numLateCauses]*fmmetrics.Counter
}

// rejectReasons are the labels wire.Reason returns.
var rejectReasons = []string{"short", "too_big", "magic", "version", "cluster", "auth", "replay", "malformed", "socket", "other"}

func newMetrics(r *fmmetrics.Registry, a *agent) *agentMetrics {
	m := &agentMetrics{rejects: make(map[string]*fmmetrics.Counter)}
	for k := core.EventKind(1); k <= core.EvStalled; k++ {
		m.events[k] = r.Counter("fmagent_events_total", "Protocol events (elections, peers and links up and down, stale...).", "kind", k.String())
	}
	r.CounterFunc("fmagent_receive_overflow_total", "Datagrams the kernel dropped because a socket's receive buffer was full (a flood faster than the agent rejects it); the agent judges no peer silent meanwhile.",
		func() float64 { return float64(a.rxDrops.Load()) })
	for _, reason := range rejectReasons {
		m.rejects[reason] = r.Counter("fmagent_packets_rejected_total", "Datagrams the core dropped, by reason.", "reason", reason)
	}
	for _, c := range []struct {
		how string
		n   *atomic.Uint64
	}{{"submitted", &a.dgram.submitted}, {"answered", &a.dgram.answered}, {"to_stream", &a.dgram.toStream}, {"malformed", &a.dgram.malformed}} {
		r.CounterFunc("fmagent_api_datagrams_total", "Requests read on the API's datagram socket, by what the real-time loop did: submitted to the master, answered at once (an error, or a check that failed), sent back to the stream socket (use_stream: a caller the Authorizer refuses on uid and gid alone, the write rate's lock busy, too many in flight), or dropped as malformed (no header, no credentials, too long).",
			func() float64 { return float64(c.n.Load()) }, "how", c.how)
	}
	r.CounterFunc("fmagent_api_datagram_replies_lost_total", "Replies on the API's datagram socket its client could not take (gone, or its queue full): that client was told the outcome is unknown.",
		func() float64 { return float64(a.dgram.repliesLost.Load()) })
	m.persistErrors = r.Counter("fmagent_persist_errors_total", "Failures to persist the membership state.")
	m.tableSaves = r.Counter("fmagent_table_saves_total", "Saves of the cluster table to this node's disk (master-eligible nodes): one per burst of changes and every 20 ms while it lasts, and one for each write a client of this node waits for.")
	m.tableErrors = r.Counter("fmagent_table_save_errors_total", "Failures to save the cluster table to this node's disk.")
	m.shmErrors = r.Counter("fmagent_shm_errors_total", "Failures to publish an entity to shared memory.")
	m.noAddr = r.Counter("fmagent_unicast_no_address_total", "Unicast packets not sent on a network: no address known for the peer there.")
	m.bulkDropped = r.Counter("fmagent_bulk_dropped_total", "Snapshot or retransmission bursts not sent: the bulk sender was a full queue behind.")
	r.CounterFunc("fmagent_exit_watch_total", "Peers' process ends heard on the exit watch's connections (closed without a goodbye), by whether the core took them (a peer heard at that incarnation) or not.",
		func() float64 { t, _, _ := a.exitStats(); return float64(t) }, "taken", "yes")
	r.CounterFunc("fmagent_exit_watch_total", "Peers' process ends heard on the exit watch's connections (closed without a goodbye), by whether the core took them (a peer heard at that incarnation) or not.",
		func() float64 { _, i, _ := a.exitStats(); return float64(i) }, "taken", "no")
	r.CounterFunc("fmagent_exit_watch_dial_failures_total", "Failed attempts to open the exit watch's connection to the master (logged at WARN once a master): until one succeeds, this node's kill -9 is seen at the detection time.",
		func() float64 {
			if a.exit == nil {
				return 0
			}
			return float64(a.exit.dialFailures.Load())
		})
	r.CounterFunc("fmagent_exit_watch_refused_total", "Connections to the exit watch's listener refused: not authenticated, malformed, or too many handshakes at once.",
		func() float64 { _, _, r := a.exitStats(); return float64(r) })
	m.watchDropped = r.Counter("fmagent_watchers_dropped_total", "API watchers dropped for falling behind.")

	stat := func(f func(*transport.NetStats) uint64, n wire.Net) func() float64 {
		return func() float64 {
			s := a.tr.Stats()
			return float64(f(&s.Nets[n]))
		}
	}
	for n := wire.Net(0); n < wire.NumNets; n++ {
		net := netName(n)
		r.CounterFunc("fmagent_packets_sent_total", "Datagrams sent.", stat(func(s *transport.NetStats) uint64 { return s.SentPackets }, n), "net", net)
		r.CounterFunc("fmagent_packets_received_total", "Datagrams received.", stat(func(s *transport.NetStats) uint64 { return s.RecvPackets }, n), "net", net)
		r.CounterFunc("fmagent_send_errors_total", "Send errors.", stat(func(s *transport.NetStats) uint64 { return s.SendErrors }, n), "net", net)
		r.CounterFunc("fmagent_receive_errors_total", "Receive errors.", stat(func(s *transport.NetStats) uint64 { return s.ReadErrors }, n), "net", net)
		r.CounterFunc("fmagent_packets_dropped_total", "Datagrams the transport dropped (wrong interface or group, truncated).",
			stat(func(s *transport.NetStats) uint64 {
				return s.DroppedWrongIface + s.DroppedWrongGroup + s.DroppedTruncated
			}, n), "net", net)
	}
	locked := func(f func() float64) func() float64 {
		return func() float64 {
			a.mu.Lock()
			defer a.mu.Unlock()
			return f()
		}
	}
	coreStat := func(f func(*core.Stats) uint64) func() float64 {
		return locked(func() float64 {
			st := a.core.Stats()
			return float64(f(&st))
		})
	}
	for n := wire.Net(0); n < wire.NumNets; n++ {
		r.CounterFunc("fmagent_heartbeats_received_total", "Authenticated heartbeats received, per network.",
			coreStat(func(s *core.Stats) uint64 { return s.HeartbeatsRecv[n] }), "net", netName(n))
	}
	r.CounterFunc("fmagent_heartbeats_sent_total", "Heartbeats sent (each on both networks).", coreStat(func(s *core.Stats) uint64 { return s.HeartbeatsSent }))
	r.CounterFunc("fmagent_updates_sent_total", "Update datagrams sent (as master).", coreStat(func(s *core.Stats) uint64 { return s.UpdatesSent }))
	r.CounterFunc("fmagent_changes_applied_total", "Replicated table changes applied.", coreStat(func(s *core.Stats) uint64 { return s.ChangesApplied }))
	r.CounterFunc("fmagent_nacks_sent_total", "Requests for missing changes or a snapshot.", coreStat(func(s *core.Stats) uint64 { return s.NacksSent }))
	r.CounterFunc("fmagent_nacks_served_total", "Nacks answered (as master).", coreStat(func(s *core.Stats) uint64 { return s.NacksServed }))
	r.CounterFunc("fmagent_nacks_covered_by_group_total", "Requests for the whole table left to the snapshot this master sent every member with its claim (as master).",
		coreStat(func(s *core.Stats) uint64 { return s.NacksCoveredByGroup }))
	r.CounterFunc("fmagent_retransmits_total", "Changes resent on a nack (as master).", coreStat(func(s *core.Stats) uint64 { return s.Retransmits }))
	r.CounterFunc("fmagent_snapshots_sent_total", "Snapshot transfers served (as master).", coreStat(func(s *core.Stats) uint64 { return s.SnapshotsSent }))
	r.CounterFunc("fmagent_snapshots_applied_total", "Snapshots that replaced this node's table.", coreStat(func(s *core.Stats) uint64 { return s.SnapshotsApplied }))
	limitMetrics(r, a, coreStat)
	r.CounterFunc("fmagent_reports_handled_total", "Reports run through the plugin chain (as master).", coreStat(func(s *core.Stats) uint64 { return s.ReportsHandled }))
	r.CounterFunc("fmagent_reports_inherited_total", "Retransmitted requests answered as the earlier master that applied them had, not decided again (as master).",
		coreStat(func(s *core.Stats) uint64 { return s.ReportsInherited }))
	r.CounterFunc("fmagent_reports_of_an_earlier_life_total", "Fault reports, raises and clears of a reporter's earlier life (retransmitted after it came back fenced) answered as the master that applied them had, not decided again (as master).",
		coreStat(func(s *core.Stats) uint64 { return s.ReportsOfAnEarlierLife }))
	m.tickLateness = r.Histogram("fmagent_tick_lateness_seconds",
		"How late the real-time loop ticked for its deadline (heartbeat, judgement), at every wake-up by its timer or past its deadline: what scheduling, the garbage collector or a page fault cost.",
		[]float64{10e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 50e-3})
	m.yieldTime = r.Histogram("fmagent_rt_yield_seconds",
		"How long each of the real-time loop's yields to Go's scheduler took (one every 5 ms, in place: what its processor had queued runs first), time in which the loop could not run.",
		[]float64{10e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 50e-3})
	m.lockWait = r.Histogram("fmagent_rt_lock_wait_seconds",
		"How long the real-time loop waited for the agent's lock when another goroutine held it (API, publishing, process watcher), time in which the loop could not run.",
		[]float64{10e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 50e-3})
	for c, name := range lateCauseNames {
		m.lateTicks[c] = r.Counter("fmagent_rt_late_ticks_total",
			"The real-time loop's wake-ups for a deadline two heartbeat intervals late or more (this node's heartbeat went out late), by what held most of it: a yield to Go's scheduler, a wait for the agent's lock, its own work after waking (or its thread stopped meanwhile), or waking (the kernel ran the loop late: the machine). Each is logged with its parts.",
			"cause", name)
	}
	r.GaugeFunc("fmagent_rt_lock_wait_max_seconds", "The real-time loop's longest wait for the agent's lock since start.",
		func() float64 { return time.Duration(m.lockWaitMax.Load()).Seconds() })
	moves := func(failed bool) func() float64 {
		return func() float64 {
			th := a.rtThread.Load()
			if th == nil {
				return 0
			}
			n, f := th.Moves()
			if failed {
				return float64(f)
			}
			return float64(n)
		}
	}
	r.CounterFunc("fmagent_rt_yield_moves_total", "Yields after which the real-time loop came back on another thread of the agent (rare: a thread looking for work took it), which it then put at SCHED_FIFO, the thread it left back at its own policy.", moves(false))
	r.CounterFunc("fmagent_rt_yield_move_failures_total", "Of those moves, the ones the kernel refused in part (the loop tries again at its next yield; the thread it left is never left at SCHED_FIFO).", moves(true))
	r.GaugeFunc("fmagent_rt_yield_max_seconds", "The longest yield of the real-time loop to Go's scheduler since start.",
		func() float64 { return time.Duration(m.yieldMax.Load()).Seconds() })
	r.CounterFunc("fmagent_rt_profile_overruns_total", "Wake-ups of the real-time loop that the kernel made later than the timing profile tolerates, (misses - 1) x interval: every peer heard this node silent past the bound. Above zero, this machine cannot hold the profile (the agent says so in its log, and fmctl status).",
		func() float64 { return float64(a.fit.overruns.Load()) })
	r.GaugeFunc("fmagent_rt_wake_late_max_seconds", "The longest the kernel took to wake the real-time loop for a deadline since start, without the loop's own yields and lock waits: the machine's part of its latest tick.",
		func() float64 { return time.Duration(a.fit.worst.Load()).Seconds() })
	r.GaugeFunc("fmagent_tick_lateness_max_seconds", "The latest the real-time loop has woken for a deadline since start.",
		func() float64 { return time.Duration(m.tickLateMax.Load()).Seconds() })
	r.GaugeFunc("fmagent_gc_pause_max_seconds", "The longest stop-the-world pause of the garbage collector since start (runtime/metrics /sched/pauses/total/gc).",
		func() float64 { _, mx := gcPauses(); return mx })
	r.GaugeFunc("fmagent_gc_pause_p99_seconds", "The 99th percentile stop-the-world pause of the garbage collector since start (bucket upper bound).",
		func() float64 { p99, _ := gcPauses(); return p99 })
	r.CounterCollector("fmagent_gc_pauses_total", "Stop-the-world pauses of the garbage collector since start that lasted at most at_most seconds (cumulative, as a histogram's buckets: the difference of two scrapes gives the pauses of the time between).",
		func(emit func(float64, ...string)) {
			for i, c := range gcPauseCounts(gcPausesTotal, gcPauseBounds) {
				emit(float64(c), "at_most", gcPauseLabels[i])
			}
		})
	r.CounterCollector("fmagent_gc_stopping_total", "Of the garbage collector's stop-the-world pauses since start, the part spent stopping the world (runtime/metrics /sched/pauses/stopping/gc: waiting for every goroutine to reach a safe point, a thread off the CPU holding one of Go's processors among them) that lasted at most at_most seconds (cumulative buckets, as fmagent_gc_pauses_total).",
		func(emit func(float64, ...string)) {
			for i, c := range gcPauseCounts(gcPausesStopping, gcPauseBounds) {
				emit(float64(c), "at_most", gcPauseLabels[i])
			}
		})
	m.propagation = r.Histogram("fmagent_propagation_seconds",
		"From the master's decision to the change applied here (master's clock to ours: exact on one host, otherwise as good as clock sync).",
		[]float64{50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 50e-3, 0.1, 1})
	r.GaugeFunc("fmagent_role", "This node's role: 0 joining, 1 member, 2 vice-master, 3 master.",
		locked(func() float64 { return float64(a.core.Role().Role) }))
	r.GaugeFunc("fmagent_master", "The master this node follows (0: none).", locked(func() float64 { return float64(a.core.Role().Master) }))
	r.GaugeFunc("fmagent_epoch", "The election epoch.", locked(func() float64 { return float64(a.core.Role().Epoch) }))
	r.GaugeFunc("fmagent_stale", "1 while the table is stale (no master for the stale timeout).", locked(func() float64 {
		if a.core.Stale() {
			return 1
		}
		return 0
	}))
	r.GaugeFunc("fmagent_table_seq", "The latest table seq applied here.", locked(func() float64 { return float64(a.core.Table().Seq()) }))
	r.GaugeFunc("fmagent_table_entities", "Entities in the table.", locked(func() float64 { return float64(a.core.Table().Len()) }))
	r.GaugeFunc("fmagent_peers_alive", "Peers heard within the detection time.", locked(func() float64 {
		n := 0
		for _, p := range a.core.Status().Peers {
			if p.Alive {
				n++
			}
		}
		return float64(n)
	}))
	r.CounterFunc("fmagent_false_downs_total", "Peers this node judged down that spoke again at the same incarnation within a second (slow, not dead): each widens that peer's bound.",
		locked(func() float64 { return float64(a.core.DetectorStats().FalseDowns) }))
	r.CounterFunc("fmagent_vouched_total", "Silence verdicts deferred because a live member's heartbeat vouched for the peer.",
		locked(func() float64 { return float64(a.core.DetectorStats().Vouched) }))
	r.GaugeFunc("fmagent_detection_bound_max_seconds", "The widest detection bound this node holds for a peer now (the configured bound unless a false down widened one).",
		locked(func() float64 {
			b := a.cfg.Timing.Detection()
			for _, p := range a.core.Status().Peers {
				b = max(b, p.Bound)
			}
			return b.Seconds()
		}))
	r.GaugeFunc("fmagent_realtime", "1 while the real-time loop runs at SCHED_FIFO.", func() float64 {
		if a.rtPrio > 0 {
			return 1
		}
		return 0
	})
	r.GaugeFunc("fmagent_gc_percent", "The garbage collector's GOGC (400 unless the environment sets GOGC; -1: off).", func() float64 {
		return float64(gcPercentNow())
	})
	r.GaugeFunc("fmagent_cpus_pinned", "How many CPUs every thread of the agent is pinned to (realtime.cpus); 0: not pinned.", func() float64 {
		return float64(len(a.pinned))
	})
	r.GaugeFunc("fmagent_host_damon_schemes", "DAMON schemes the kernel ran on this host at the agent's start (kdamonds with schemes, built-in scheme modules): above 0, kdamond can hold the agent's memory-map locks while kept off a busy CPU, and the real-time loop then waits at a page fault (see the start-up warning).", func() float64 {
		return float64(a.damonSchemes.Load())
	})
	r.GaugeFunc("fmagent_memory_locked", "1 when mlockall succeeded at start.", func() float64 {
		if a.memLocked {
			return 1
		}
		return 0
	})
	r.GaugeFunc("fmagent_watchdog_fenced", "1 while the node fences itself (the core's self-fence decision).", locked(func() float64 {
		if a.core.Fence().Fenced {
			return 1
		}
		return 0
	}))
	r.GaugeFunc("fmagent_watchdog_kicking", "1 while the watchdog is kicked (every loop healthy, no fence, no hold).", func() float64 {
		if a.guard != nil && a.guard.Status().Kicking {
			return 1
		}
		return 0
	})
	registerOpsMetrics(r, a)
	return m
}

func (m *agentMetrics) event(k core.EventKind) {
	if int(k) < len(m.events) && m.events[k] != nil {
		m.events[k].Inc()
	}
}

func (m *agentMetrics) reject(err error) {
	if c, ok := m.rejects[wire.Reason(err)]; ok {
		c.Inc()
	} else {
		m.rejects["other"].Inc()
	}
}

// gcPauseBounds are the at_most bounds of fmagent_gc_pauses_total (the
// last, +Inf, counts every pause).
var gcPauseBounds = []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 20e-3, 50e-3, 100e-3, math.Inf(1)}

var gcPauseLabels = func() []string {
	l := make([]string, len(gcPauseBounds))
	for i, b := range gcPauseBounds {
		l[i] = strconv.FormatFloat(b, 'g', -1, 64)
	}
	return l
}()

// gcPauseCounts counts the garbage collector's stop-the-world pauses since
// start no longer than each of bounds (a runtime bucket counts under a
// bound its upper end does not pass: never too low a pause).
// The runtime's histograms of the collector's stop-the-world pauses: whole,
// and the part spent stopping the world.
const (
	gcPausesTotal    = "/sched/pauses/total/gc:seconds"
	gcPausesStopping = "/sched/pauses/stopping/gc:seconds"
)

func gcPauseCounts(name string, bounds []float64) []uint64 {
	out := make([]uint64, len(bounds))
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return out
	}
	h := s[0].Value.Float64Histogram()
	for i, c := range h.Counts {
		for j, b := range bounds {
			if h.Buckets[i+1] <= b {
				out[j] += c
			}
		}
	}
	return out
}

// gcPauses reads the garbage collector's stop-the-world pause histogram:
// its 99th percentile and its maximum (bucket upper bounds), in seconds.
func gcPauses() (p99, maxPause float64) {
	s := []metrics.Sample{{Name: gcPausesTotal}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return 0, 0
	}
	h := s[0].Value.Float64Histogram()
	var total uint64
	for _, c := range h.Counts {
		total += c
	}
	if total == 0 {
		return 0, 0
	}
	var cum uint64
	p99 = -1
	for i, c := range h.Counts {
		cum += c
		if p99 < 0 && float64(cum) >= 0.99*float64(total) {
			p99 = h.Buckets[i+1]
		}
		if c > 0 {
			maxPause = h.Buckets[i+1]
		}
	}
	return p99, maxPause
}

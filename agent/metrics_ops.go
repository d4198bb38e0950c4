package agent

import (
	"fmt"
	"strconv"
	"time"

	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/metrics"
	"github.com/fmagent/fmagent/version"
	"github.com/fmagent/fmagent/wire"
)

// Metrics an operator alerts on (docs/alerting.md, dist/prometheus-alerts.yml):
// per-peer and per-link up gauges, active alarms by severity, entities by
// kind and state, build information, and the process and Go runtime
// metrics. Every series with a fixed label set is always present (0 when
// nothing matches) so that an alert rule never sees an absent series where
// it expects a zero.

var (
	severities = []wire.Severity{wire.SevIndeterminate, wire.SevWarning, wire.SevMinor, wire.SevMajor, wire.SevCritical}
	kinds      = []wire.EntityKind{wire.KindNode, wire.KindLink, wire.KindProcess, wire.KindService, wire.KindCustom}
	states     = []wire.State{wire.StateUp, wire.StateDown}
)

func registerOpsMetrics(r *metrics.Registry, a *agent) {
	b := version.Get()
	r.GaugeFunc("fmagent_build_info", "Always 1; the labels say which build runs.", func() float64 { return 1 },
		"commit", b.Commit, "goversion", b.Go, "version", b.Version)
	r.GaugeFunc("fmagent_node_id", "This node's ID.", func() float64 { return float64(a.cfg.NodeID) })
	r.GaugeFunc("fmagent_detection_seconds", "The failure detection bound in force, interval × misses.",
		func() float64 { return a.cfg.Timing.Detection().Seconds() })

	r.GaugeCollector("fmagent_peer_up", "1 while the peer is heard on at least one network within the detection time, 0 once it is down. One series per peer this node has known.",
		func(emit func(float64, ...string)) {
			a.mu.Lock()
			peers := a.core.Status().Peers
			a.mu.Unlock()
			for _, p := range peers {
				emit(b2f(p.Alive), "peer", strconv.FormatUint(uint64(p.Node), 10))
			}
		})
	r.GaugeCollector("fmagent_link_up", "1 while the peer is heard on this network within the detection time. A link down with the peer up is a network fault.",
		func(emit func(float64, ...string)) {
			a.mu.Lock()
			peers := a.core.Status().Peers
			a.mu.Unlock()
			for _, p := range peers {
				for n := wire.Net(0); n < wire.NumNets; n++ {
					emit(b2f(p.Links[n]), "net", netName(n), "peer", strconv.FormatUint(uint64(p.Node), 10))
				}
			}
		})
	r.GaugeCollector("fmagent_link_last_heard_age_seconds", "Seconds since the peer was last heard on this network (absent if never).",
		func(emit func(float64, ...string)) {
			a.mu.Lock()
			peers := a.core.Status().Peers
			a.mu.Unlock()
			now := time.Now()
			for _, p := range peers {
				for n := wire.Net(0); n < wire.NumNets; n++ {
					if t := p.LastHeard[n]; !t.IsZero() {
						emit(now.Sub(t).Seconds(), "net", netName(n), "peer", strconv.FormatUint(uint64(p.Node), 10))
					}
				}
			}
		})

	r.GaugeCollector("fmagent_alarms_active", "Active alarms in the cluster table, by severity (every severity present, 0 when none).",
		func(emit func(float64, ...string)) {
			var count [wire.SevCritical + 1]int
			a.mu.Lock()
			a.core.Table().Range(func(e *table.Entity) bool {
				for _, al := range e.Alarms {
					if al.Severity <= wire.SevCritical {
						count[al.Severity]++
					}
				}
				return true
			})
			a.mu.Unlock()
			for _, s := range severities {
				emit(float64(count[s]), "severity", string(api.SeverityOf(s)))
			}
		})
	r.GaugeCollector("fmagent_entities", "Entities in the cluster table, by kind and state (every pair present, 0 when none).",
		func(emit func(float64, ...string)) {
			var count [wire.KindCustom + 1][wire.StateDown + 1]int
			a.mu.Lock()
			a.core.Table().Range(func(e *table.Entity) bool {
				if e.Kind <= wire.KindCustom && e.State <= wire.StateDown {
					count[e.Kind][e.State]++
				}
				return true
			})
			a.mu.Unlock()
			for _, k := range kinds {
				for _, s := range states {
					emit(float64(count[k][s]), "kind", string(api.KindOf(k)), "state", string(api.StateOf(s)))
				}
			}
		})
	tombstones := func(forgotten bool) func(emit func(float64, ...string)) {
		return func(emit func(float64, ...string)) {
			a.mu.Lock()
			ents, alarms, fEnts, fAlarms := a.core.Table().Tombstones()
			a.mu.Unlock()
			if forgotten {
				ents, alarms = int(fEnts), int(fAlarms)
			}
			emit(float64(ents), "kind", "entity")
			emit(float64(alarms), "kind", "alarm")
		}
	}
	r.GaugeCollector("fmagent_tombstones", fmt.Sprintf("Tombstones this node's table keeps, by kind: the unregisters (entity) and clears (alarm) that refuse an older write re-asserted later, one per entity or alarm, at most %d of each.", table.MaxTombstones),
		tombstones(false))
	r.CounterCollector("fmagent_tombstones_forgotten_total", "Tombstones this node's table forgot to its bound since the agent started, by kind, the oldest by last clear or unregister first. Above zero, a raise or registration from the losing side of a split brain, older than a clear or unregister it forgot, would be applied again at the heal.",
		tombstones(true))
	metrics.RegisterProcess(r)
	metrics.RegisterGo(r)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

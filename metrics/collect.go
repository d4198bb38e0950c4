package metrics

import (
	"fmt"
	"sort"
)

// GaugeCollector registers a gauge family whose series are not known up
// front (one per peer and network, one per severity present...): at each
// scrape collect calls emit once per series with its value and label
// pairs. The series are written sorted by labels; a series emitted twice,
// or with a bad label name, is dropped (a scrape must not panic).
func (r *Registry) GaugeCollector(name, help string, collect func(emit func(value float64, labels ...string))) {
	r.registerCollector(name, help, kindGauge, collect)
}

// CounterCollector is GaugeCollector for a counter family.
func (r *Registry) CounterCollector(name, help string, collect func(emit func(value float64, labels ...string))) {
	r.registerCollector(name, help, kindCounter, collect)
}

func (r *Registry) registerCollector(name, help, kind string, collect func(emit func(value float64, labels ...string))) {
	if !nameRE.MatchString(name) {
		panic(fmt.Sprintf("metrics: bad metric name %q", name))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.families[name] != nil {
		panic(fmt.Sprintf("metrics: %s registered twice", name))
	}
	r.families[name] = &family{name: name, help: help, kind: kind, series: map[string]*series{}, collect: collect}
}

// writeCollected writes the series f.collect emits.
func writeCollected(b []byte, f *family) []byte {
	type point struct {
		labels string
		v      float64
	}
	var pts []point
	seen := map[string]bool{}
	f.collect(func(v float64, labels ...string) {
		l, err := renderLabels(f.kind, labels)
		if err != nil || seen[l] {
			return
		}
		seen[l] = true
		pts = append(pts, point{l, v})
	})
	sort.Slice(pts, func(i, j int) bool { return pts[i].labels < pts[j].labels })
	for _, p := range pts {
		b = sample(b, f.name, p.labels, "", formatFloat(p.v))
	}
	return b
}

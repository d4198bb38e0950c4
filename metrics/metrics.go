// Package metrics is a tiny Prometheus text exposition (format 0.0.4)
// without a client library: counters, gauges and fixed-bucket histograms
// updated with atomics and no allocation, labels as fixed series registered
// up front (per network "a"/"b", per reject reason, ...), and a registry
// that writes every family sorted by name and every series by its labels.
//
// Register at start-up and keep the returned pointers; updating them on a
// hot path costs one or two atomic operations.
package metrics

import (
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kinds of families.
const (
	kindCounter   = "counter"
	kindGauge     = "gauge"
	kindHistogram = "histogram"
)

// Counter is a monotonically increasing count.
type Counter struct{ v atomic.Uint64 }

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value is the current count.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Gauge is a value that goes up and down.
type Gauge struct{ bits atomic.Uint64 }

// Set sets the value.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Add adds d (which may be negative).
func (g *Gauge) Add(d float64) {
	for {
		old := g.bits.Load()
		if g.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

// Value is the current value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

// Histogram counts observations in fixed buckets.
type Histogram struct {
	bounds []float64       // upper bounds, increasing; +Inf implicit
	counts []atomic.Uint64 // per bucket (not cumulative); last is +Inf
	sum    atomic.Uint64   // float64 bits
	count  atomic.Uint64
}

// Observe records v.
func (h *Histogram) Observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v) // first bound >= v: le semantics
	h.counts[i].Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			break
		}
	}
	h.count.Add(1)
}

// ObserveDuration records d in seconds.
func (h *Histogram) ObserveDuration(d time.Duration) { h.Observe(d.Seconds()) }

// Count is the number of observations.
func (h *Histogram) Count() uint64 { return h.count.Load() }

// Sum is the sum of the observations.
func (h *Histogram) Sum() float64 { return math.Float64frombits(h.sum.Load()) }

// DurationBuckets are upper bounds in seconds from 10 µs to 1 s, for
// propagation and detection latencies.
var DurationBuckets = []float64{
	0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
}

// Registry holds metric families.
type Registry struct {
	mu       sync.Mutex
	families map[string]*family
}

type family struct {
	name, help, kind string
	bounds           []float64 // histograms
	series           map[string]*series
	// collect, for a collected family (collect.go), produces its series at
	// each scrape instead.
	collect func(emit func(value float64, labels ...string))
}

type series struct {
	labels string // rendered: a="x",b="y" (no braces)
	c      *Counter
	g      *Gauge
	h      *Histogram
	fn     func() float64
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{families: map[string]*family{}} }

var (
	nameRE  = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// register adds one series; labels are name, value pairs. Registering is
// start-up code: mistakes (a bad name, a kind or help that differs from the
// family's, a series registered twice) panic.
func (r *Registry) register(name, help, kind string, bounds []float64, labels []string, s *series) {
	if !nameRE.MatchString(name) {
		panic(fmt.Sprintf("metrics: bad metric name %q", name))
	}
	l, err := renderLabels(kind, labels)
	if err != nil {
		panic(fmt.Sprintf("metrics: %s: %v", name, err))
	}
	s.labels = l
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.families[name]
	if f == nil {
		f = &family{name: name, help: help, kind: kind, bounds: bounds, series: map[string]*series{}}
		r.families[name] = f
	} else if f.kind != kind || f.help != help || !slices.Equal(f.bounds, bounds) || f.collect != nil {
		panic(fmt.Sprintf("metrics: %s registered again as a different %s", name, kind))
	}
	if f.series[s.labels] != nil {
		panic(fmt.Sprintf("metrics: %s{%s} registered twice", name, s.labels))
	}
	f.series[s.labels] = s
}

// renderLabels renders name, value pairs as a="x",b="y" (no braces).
func renderLabels(kind string, labels []string) (string, error) {
	if len(labels)%2 != 0 {
		return "", fmt.Errorf("labels must be name, value pairs")
	}
	var b strings.Builder
	for i := 0; i < len(labels); i += 2 {
		if !labelRE.MatchString(labels[i]) || strings.HasPrefix(labels[i], "__") || (kind == kindHistogram && labels[i] == "le") {
			return "", fmt.Errorf("bad label name %q", labels[i])
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(labels[i])
		b.WriteString(`="`)
		b.WriteString(escapeLabel(labels[i+1]))
		b.WriteByte('"')
	}
	return b.String(), nil
}

// Counter registers a counter series: name, help and label pairs, e.g.
// r.Counter("fmagent_packets_received_total", "Datagrams received.", "net", "a").
func (r *Registry) Counter(name, help string, labels ...string) *Counter {
	c := &Counter{}
	r.register(name, help, kindCounter, nil, labels, &series{c: c})
	return c
}

// Gauge registers a gauge series.
func (r *Registry) Gauge(name, help string, labels ...string) *Gauge {
	g := &Gauge{}
	r.register(name, help, kindGauge, nil, labels, &series{g: g})
	return g
}

// CounterFunc registers a counter series whose value fn returns at each
// scrape (e.g. a counter another package keeps, like transport.Stats).
func (r *Registry) CounterFunc(name, help string, fn func() float64, labels ...string) {
	r.register(name, help, kindCounter, nil, labels, &series{fn: fn})
}

// GaugeFunc registers a gauge series whose value fn returns at each scrape.
func (r *Registry) GaugeFunc(name, help string, fn func() float64, labels ...string) {
	r.register(name, help, kindGauge, nil, labels, &series{fn: fn})
}

// Histogram registers a histogram series with the given increasing upper
// bounds (the +Inf bucket is implicit). Every series of a family must use
// the same bounds.
func (r *Registry) Histogram(name, help string, bounds []float64, labels ...string) *Histogram {
	if len(bounds) == 0 || !sort.Float64sAreSorted(bounds) || math.IsInf(bounds[len(bounds)-1], +1) {
		panic(fmt.Sprintf("metrics: %s: bounds must be increasing and finite", name))
	}
	for i := 1; i < len(bounds); i++ {
		if bounds[i] == bounds[i-1] {
			panic(fmt.Sprintf("metrics: %s: duplicate bound %v", name, bounds[i]))
		}
	}
	b := slices.Clone(bounds)
	h := &Histogram{bounds: b, counts: make([]atomic.Uint64, len(b)+1)}
	r.register(name, help, kindHistogram, b, labels, &series{h: h})
	return h
}

// WriteText writes every family in the Prometheus text format, families
// sorted by name and series by their label text.
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	fams := make([]*family, 0, len(r.families))
	for _, f := range r.families {
		fams = append(fams, f)
	}
	r.mu.Unlock()
	sort.Slice(fams, func(i, j int) bool { return fams[i].name < fams[j].name })
	var b []byte
	for _, f := range fams {
		b = append(b, "# HELP "...)
		b = append(b, f.name...)
		b = append(b, ' ')
		b = append(b, escapeHelp(f.help)...)
		b = append(b, "\n# TYPE "...)
		b = append(b, f.name...)
		b = append(b, ' ')
		b = append(b, f.kind...)
		b = append(b, '\n')
		if f.collect != nil {
			b = writeCollected(b, f)
			continue
		}
		r.mu.Lock()
		ss := make([]*series, 0, len(f.series))
		for _, s := range f.series {
			ss = append(ss, s)
		}
		r.mu.Unlock()
		sort.Slice(ss, func(i, j int) bool { return ss[i].labels < ss[j].labels })
		for _, s := range ss {
			switch {
			case s.c != nil:
				b = sample(b, f.name, s.labels, "", strconv.FormatUint(s.c.Value(), 10))
			case s.g != nil:
				b = sample(b, f.name, s.labels, "", formatFloat(s.g.Value()))
			case s.fn != nil:
				b = sample(b, f.name, s.labels, "", formatFloat(s.fn()))
			case s.h != nil:
				b = writeHistogram(b, f.name, s)
			}
		}
	}
	_, err := w.Write(b)
	return err
}

func writeHistogram(b []byte, name string, s *series) []byte {
	h := s.h
	// Read the buckets first and derive the count from them, so that the
	// +Inf bucket and _count agree even while observations land.
	var cum uint64
	for i, bound := range h.bounds {
		cum += h.counts[i].Load()
		b = sample(b, name+"_bucket", s.labels, `le="`+formatFloat(bound)+`"`, strconv.FormatUint(cum, 10))
	}
	cum += h.counts[len(h.bounds)].Load()
	b = sample(b, name+"_bucket", s.labels, `le="+Inf"`, strconv.FormatUint(cum, 10))
	b = sample(b, name+"_sum", s.labels, "", formatFloat(h.Sum()))
	b = sample(b, name+"_count", s.labels, "", strconv.FormatUint(cum, 10))
	return b
}

func sample(b []byte, name, labels, extra, value string) []byte {
	b = append(b, name...)
	if labels != "" || extra != "" {
		b = append(b, '{')
		b = append(b, labels...)
		if labels != "" && extra != "" {
			b = append(b, ',')
		}
		b = append(b, extra...)
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = append(b, value...)
	return append(b, '\n')
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, +1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }

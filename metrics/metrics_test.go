package metrics

import (
	"bytes"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func text(t *testing.T, r *Registry) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, r.WriteText(&b))
	return b.String()
}

func TestTextFormat(t *testing.T) {
	r := NewRegistry()
	// Registered out of order: the output is sorted.
	rb := r.Counter("fmagent_packets_received_total", "Datagrams received, per network.", "net", "b")
	ra := r.Counter("fmagent_packets_received_total", "Datagrams received, per network.", "net", "a")
	rej := r.Counter("fmagent_packets_rejected_total", "Datagrams rejected.", "net", "a", "reason", "bad_mac")
	r.Counter("fmagent_packets_rejected_total", "Datagrams rejected.", "net", "a", "reason", "replay")
	role := r.Gauge("fmagent_role", "Role: 0 joining, 1 member, 2 vice-master, 3 master.")
	h := r.Histogram("fmagent_propagation_seconds", "Time from decision to publish.", []float64{0.0001, 0.001, 0.01}, "net", "a")
	r.GaugeFunc("fmagent_peers", "Peers heard.", func() float64 { return 3 })
	r.CounterFunc("fmagent_sent_total", "Sent.", func() float64 { return 12 }, "net", "a")
	r.Gauge("fmagent_weird", "Help with \\ and\nnewline.", "path", "C:\\x \"q\"\nz")

	ra.Add(5)
	rb.Inc()
	rej.Inc()
	role.Set(3)
	h.Observe(0.00005)
	h.Observe(0.0005)
	h.Observe(0.0005)
	h.ObserveDuration(2 * time.Second)

	want := `# HELP fmagent_packets_received_total Datagrams received, per network.
# TYPE fmagent_packets_received_total counter
fmagent_packets_received_total{net="a"} 5
fmagent_packets_received_total{net="b"} 1
# HELP fmagent_packets_rejected_total Datagrams rejected.
# TYPE fmagent_packets_rejected_total counter
fmagent_packets_rejected_total{net="a",reason="bad_mac"} 1
fmagent_packets_rejected_total{net="a",reason="replay"} 0
# HELP fmagent_peers Peers heard.
# TYPE fmagent_peers gauge
fmagent_peers 3
# HELP fmagent_propagation_seconds Time from decision to publish.
# TYPE fmagent_propagation_seconds histogram
fmagent_propagation_seconds_bucket{net="a",le="0.0001"} 1
fmagent_propagation_seconds_bucket{net="a",le="0.001"} 3
fmagent_propagation_seconds_bucket{net="a",le="0.01"} 3
fmagent_propagation_seconds_bucket{net="a",le="+Inf"} 4
fmagent_propagation_seconds_sum{net="a"} 2.00105
fmagent_propagation_seconds_count{net="a"} 4
# HELP fmagent_role Role: 0 joining, 1 member, 2 vice-master, 3 master.
# TYPE fmagent_role gauge
fmagent_role 3
# HELP fmagent_sent_total Sent.
# TYPE fmagent_sent_total counter
fmagent_sent_total{net="a"} 12
# HELP fmagent_weird Help with \\ and\nnewline.
# TYPE fmagent_weird gauge
fmagent_weird{path="C:\\x \"q\"\nz"} 0
`
	assert.Equal(t, want, text(t, r))
	assert.Equal(t, want, text(t, r), "deterministic")
}

func TestHistogramBounds(t *testing.T) {
	r := NewRegistry()
	h := r.Histogram("h", "h.", []float64{1, 2})
	for _, v := range []float64{1, 2, 2.5, 0, -1, math.Inf(1)} {
		h.Observe(v)
	}
	// le is inclusive: 1 falls in le="1", 2 in le="2".
	assert.Contains(t, text(t, r), "h_bucket{le=\"1\"} 3\nh_bucket{le=\"2\"} 4\nh_bucket{le=\"+Inf\"} 6\nh_sum +Inf\nh_count 6\n")
	assert.Equal(t, uint64(6), h.Count())
}

func TestGaugeAdd(t *testing.T) {
	var g Gauge
	g.Set(1.5)
	g.Add(-0.5)
	g.Add(2)
	assert.Equal(t, 3.0, g.Value())
	r := NewRegistry()
	r.GaugeFunc("nan", "n.", func() float64 { return math.NaN() })
	r.GaugeFunc("ninf", "n.", func() float64 { return math.Inf(-1) })
	assert.Contains(t, text(t, r), "nan NaN\n")
	assert.Contains(t, text(t, r), "ninf -Inf\n")
}

func TestZeroAllocUpdates(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("c_total", "c.", "net", "a")
	g := r.Gauge("g", "g.")
	h := r.Histogram("h_seconds", "h.", DurationBuckets, "net", "a")
	allocs := testing.AllocsPerRun(1000, func() {
		c.Inc()
		c.Add(3)
		g.Set(2)
		g.Add(1)
		h.Observe(0.0003)
		h.ObserveDuration(700 * time.Microsecond)
	})
	assert.Zero(t, allocs, "updates must not allocate")
	t.Logf("counter, gauge and histogram updates: %v allocations per run", allocs)
}

func TestConcurrentUpdates(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("c_total", "c.")
	g := r.Gauge("g", "g.")
	h := r.Histogram("h", "h.", []float64{1})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				c.Inc()
				g.Add(1)
				h.Observe(0.5)
				_ = r.WriteText(io.Discard)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, uint64(4000), c.Value())
	assert.Equal(t, 4000.0, g.Value())
	assert.Equal(t, uint64(4000), h.Count())
	assert.Equal(t, 2000.0, h.Sum())
}

func TestRegistrationMistakesPanic(t *testing.T) {
	r := NewRegistry()
	r.Counter("x_total", "x.", "net", "a")
	for name, f := range map[string]func(){
		"twice":          func() { r.Counter("x_total", "x.", "net", "a") },
		"other kind":     func() { r.Gauge("x_total", "x.", "net", "b") },
		"other help":     func() { r.Counter("x_total", "y.", "net", "b") },
		"bad name":       func() { r.Counter("x-total", "x.") },
		"bad label":      func() { r.Counter("y_total", "y.", "1net", "a") },
		"reserved label": func() { r.Counter("y_total", "y.", "__net", "a") },
		"odd labels":     func() { r.Counter("y_total", "y.", "net") },
		"le label":       func() { r.Histogram("z", "z.", []float64{1}, "le", "1") },
		"bad bounds":     func() { r.Histogram("z", "z.", []float64{2, 1}) },
		"no bounds":      func() { r.Histogram("z", "z.", nil) },
		"dup bounds":     func() { r.Histogram("z", "z.", []float64{1, 1}) },
		"inf bound":      func() { r.Histogram("z", "z.", []float64{1, math.Inf(1)}) },
		"other bounds": func() {
			r.Histogram("w", "w.", []float64{1}, "net", "a")
			r.Histogram("w", "w.", []float64{2}, "net", "b")
		},
	} {
		assert.Panics(t, f, name)
	}
}

func TestHTTPEndpoint(t *testing.T) {
	r := NewRegistry()
	r.Counter("fmagent_up_total", "Up.").Add(7)
	s, err := NewServer("127.0.0.1:0", r)
	require.NoError(t, err)
	defer s.Close()
	url := "http://" + s.Addr().String() + "/metrics"

	resp, err := http.Get(url)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, ContentType, resp.Header.Get("Content-Type"))
	assert.Equal(t, "# HELP fmagent_up_total Up.\n# TYPE fmagent_up_total counter\nfmagent_up_total 7\n", string(body))

	resp, err = http.Post(url, "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)

	resp, err = http.Get("http://" + s.Addr().String() + "/other")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)

	require.NoError(t, s.Close())
	_, err = http.Get(url)
	assert.Error(t, err, "stopped")
}

func TestServeStop(t *testing.T) {
	stop, err := Serve("127.0.0.1:0", NewRegistry())
	require.NoError(t, err)
	stop()
	stop, err = Serve("localhost:0", NewRegistry())
	require.NoError(t, err)
	stop()
}

func TestServeRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{":0", "0.0.0.0:0", "[::]:0", "192.0.2.1:9464", "example.com:9464"} {
		stop, err := Serve(addr, NewRegistry())
		if stop != nil {
			stop()
		}
		require.Error(t, err, addr)
		assert.ErrorIs(t, err, ErrNotLoopback, addr)
	}
	_, err := Serve("127.0.0.1", NewRegistry())
	assert.Error(t, err, "no port")
}

package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCollector(t *testing.T) {
	r := NewRegistry()
	peers := []string{"3", "2"}
	r.GaugeCollector("x_up", "Up.", func(emit func(float64, ...string)) {
		for i, p := range peers {
			emit(float64(i), "peer", p)
		}
		emit(9, "peer", peers[0]) // twice: dropped
		emit(9, "__bad", "x")     // bad label: dropped
		emit(9, "odd")            // not pairs: dropped
	})
	r.CounterCollector("x_total", "Count.", func(emit func(float64, ...string)) { emit(7) })
	var b bytes.Buffer
	require.NoError(t, r.WriteText(&b))
	assert.Equal(t, "# HELP x_total Count.\n# TYPE x_total counter\nx_total 7\n"+
		"# HELP x_up Up.\n# TYPE x_up gauge\nx_up{peer=\"2\"} 1\nx_up{peer=\"3\"} 0\n", b.String())
	// The series follow what exists at each scrape.
	peers = []string{"4"}
	b.Reset()
	require.NoError(t, r.WriteText(&b))
	assert.True(t, strings.HasSuffix(b.String(), "# TYPE x_up gauge\nx_up{peer=\"4\"} 0\n"), b.String())
	assert.NotContains(t, b.String(), `peer="2"`)
	assert.Panics(t, func() { r.GaugeCollector("x_up", "Up.", nil) }, "a family twice")
	assert.Panics(t, func() { r.Gauge("x_up", "Up.", "peer", "9") }, "a fixed series in a collected family")
}

func TestHealthz(t *testing.T) {
	var sick error
	h := HealthHandler(func() error { return sick })
	get := func() (int, string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/healthz", nil))
		return w.Code, w.Body.String()
	}
	code, body := get()
	assert.Equal(t, 200, code)
	assert.Equal(t, "ok\n", body)
	sick = errors.New("no heartbeat sent for 2s")
	code, body = get()
	assert.Equal(t, 503, code)
	assert.Equal(t, "unhealthy: no heartbeat sent for 2s\n", body)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/healthz", nil))
	assert.Equal(t, 405, w.Code)
}

// A non-loopback address is refused unless AllowRemote; with it the server
// binds the wildcard address (reached here through loopback only).
func TestServerAllowRemote(t *testing.T) {
	r := NewRegistry()
	r.Gauge("g", "G.").Set(1)
	_, err := NewServerWith("0.0.0.0:0", r, ServerOptions{})
	require.ErrorIs(t, err, ErrNotLoopback)
	s, err := NewServerWith(":0", r, ServerOptions{AllowRemote: true, Healthy: func() error { return nil }})
	require.NoError(t, err)
	defer s.Close()
	port := s.Addr().(*net.TCPAddr).Port
	assert.True(t, s.Addr().(*net.TCPAddr).IP.IsUnspecified(), "bound %v", s.Addr())
	c := http.Client{Timeout: 2 * time.Second}
	for path, want := range map[string]string{"/metrics": "g 1\n", "/healthz": "ok\n"} {
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode, path)
		assert.True(t, strings.HasSuffix(string(b), want), "%s: %q", path, b)
	}
}

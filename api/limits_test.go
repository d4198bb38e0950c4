package api_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/api"
)

// Connections over the total or per-UID limit are answered busy and
// closed; a closed connection frees its slot.
func TestConnectionLimits(t *testing.T) {
	ts := startServer(t, func(s *api.Server) { s.Limits.MaxConns, s.Limits.MaxConnsPerUID = 100, 3 })
	var open []*rawConn
	for i := range 3 {
		c := dialRaw(t, ts.Path)
		c.do(api.OpStatus, uint32(i+1), ``, nil)
		open = append(open, c)
	}
	extra := dialRaw(t, ts.Path)
	h, b := extra.read()
	require.NotZero(t, h.Flags&api.FlagError)
	require.Contains(t, string(b), `"code":"busy"`)
	require.Contains(t, string(b), "limit 3 per uid")
	extra.expectClosed()
	require.Equal(t, uint64(1), ts.LimitStats().ConnsRefused)

	open[0].nc.Close()
	require.Eventually(t, func() bool {
		// Until the server has seen the close, a new connection is
		// answered busy and closed, perhaps before our request is
		// written (broken pipe): that is a "not yet", not a failure.
		c := dialRaw(t, ts.Path)
		defer c.nc.Close()
		if _, err := c.nc.Write(api.AppendFrame(nil, api.Header{Version: api.Version, Op: api.OpStatus, ID: 9}, nil)); err != nil {
			return false
		}
		h, _, err := c.readErr()
		return err == nil && h.Flags&api.FlagError == 0
	}, 5*time.Second, 20*time.Millisecond, "a closed connection frees its slot")
}

// 1,000 connections each holding half a frame: the server closes every one
// of them after FrameTimeout, and idle ones after IdleTimeout; the
// goroutines they held are released.
func TestHalfFramesAndIdleConnectionsClosed(t *testing.T) {
	ts := startServer(t, func(s *api.Server) {
		s.Limits.FrameTimeout = 300 * time.Millisecond
		s.Limits.IdleTimeout = 600 * time.Millisecond
		s.Limits.MaxConnsPerUID = 2000
		s.Limits.MaxConns = 2000
	})
	base := runtime.NumGoroutine()
	frame := api.AppendFrame(nil, api.Header{Version: api.Version, Op: api.OpStatus, ID: 1}, []byte(`{}`))
	const n = 300
	var half, idle []*rawConn
	for range n {
		c := dialRaw(t, ts.Path)
		c.writeBytes(frame[:len(frame)-1])
		half = append(half, c)
		idle = append(idle, dialRaw(t, ts.Path))
	}
	for _, c := range half {
		c.expectClosed()
	}
	for _, c := range idle {
		c.expectClosed()
	}
	st := ts.LimitStats()
	require.Equal(t, uint64(n), st.FrameTimeouts)
	require.Equal(t, uint64(n), st.IdleClosed)
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= base+10 }, 5*time.Second, 20*time.Millisecond,
		"goroutines back to %d (now %d)", base, runtime.NumGoroutine())
	// A Watch is not idle: it stays past the idle timeout.
	w := dialRaw(t, ts.Path)
	w.send(api.OpWatch, 1, ``)
	w.read()
	time.Sleep(900 * time.Millisecond)
	w.do(api.OpStatus, 2, ``, nil)
}

// A UID writing faster than its bucket gets throttled errors with a
// retry-after; after waiting that long it may write again; reads are not
// throttled; the bucket is the UID's, not the connection's.
func TestWriteRateThrottled(t *testing.T) {
	// 2 writes/s: one token per 500 ms, so the loop below and the second
	// connection's dial cannot see a token refilled on a slow machine (at
	// 20/s, 50 ms between the last throttled write and the other
	// connection's refilled one: seen under -race in make test).
	ts := startServer(t, func(s *api.Server) { s.Limits.WriteRate, s.Limits.WriteBurst = 2, 10 })
	c := dialRaw(t, ts.Path)
	c.do(api.OpRegister, 1, `{"name":"svc/a","kind":"service"}`, nil)
	ok, throttled := 1, 0
	var last *api.Error
	for i := range 100 {
		c.send(api.OpRaise, uint32(i+2), fmt.Sprintf(`{"name":"svc/a","cause":"c%d","severity":"minor"}`, i))
		h, b := c.read()
		if h.Flags&api.FlagError == 0 {
			ok++
			continue
		}
		e := c.decodeError(b)
		require.Equal(t, api.CodeThrottled, e.Code, "%s", b)
		require.Positive(t, e.RetryAfterMs)
		throttled++
		last = e
	}
	require.LessOrEqual(t, ok, 10+5, "burst of 10 plus what 2/s refills meanwhile")
	require.Positive(t, throttled)
	require.ErrorIs(t, last, api.ErrThrottled)
	c.do(api.OpStatus, 500, ``, nil) // reads go on
	other := dialRaw(t, ts.Path)
	e := other.doErr(api.OpRaise, 1, `{"name":"svc/a","cause":"x","severity":"minor"}`)
	require.Equal(t, api.CodeThrottled, e.Code, "another connection of the same uid shares the bucket")
	time.Sleep(time.Duration(e.RetryAfterMs) * time.Millisecond)
	other.do(api.OpRaise, 2, `{"name":"svc/a","cause":"x","severity":"minor"}`, nil)
	require.Equal(t, uint64(throttled+1), ts.LimitStats().Throttled)
}

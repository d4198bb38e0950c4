package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
)

// dgramServer answers the requests on a datagram socket at
// api.DatagramPath(socket) with answer (nil: no reply), and counts them.
type dgramServer struct {
	fd    int
	seen  atomic.Int32 // requests other than pings
	pings atomic.Int32
	stop  atomic.Bool
}

// It answers pings (api.AppendPing), unless unanswered.
func startDgramServer(t *testing.T, socket string, answer func(h api.Header) []byte) *dgramServer {
	return startDgramServerPings(t, socket, answer, false)
}

func startDgramServerPings(t *testing.T, socket string, answer func(h api.Header) []byte, unanswered bool) *dgramServer {
	t.Helper()
	fd, err := api.ListenDatagram(api.DatagramPath(socket), 0o660, -1, -1)
	require.NoError(t, err)
	s := &dgramServer{fd: fd}
	require.NoError(t, unix.SetNonblock(fd, false))
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, api.MaxDatagram)
		for {
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || s.stop.Load() {
				return
			}
			if n == 0 {
				continue // a probe
			}
			h, err := api.ParseHeader(buf[:n])
			if err != nil {
				continue
			}
			if h.Op == api.OpStatus && n == api.HeaderSize {
				s.pings.Add(1)
				if !unanswered {
					_ = unix.Sendto(fd, api.AppendFrame(nil, api.Header{Version: api.Version, Op: h.Op | api.OpReply, ID: h.ID}, nil), 0, from)
				}
				continue
			}
			s.seen.Add(1)
			if r := answer(h); r != nil {
				_ = unix.Sendto(fd, r, 0, from)
			}
		}
	}()
	t.Cleanup(func() {
		s.stop.Store(true)
		unix.Shutdown(fd, unix.SHUT_RDWR)
		<-done
		unix.Close(fd)
	})
	return s
}

// use_stream: the same write goes on the stream, and only there is it
// made (the fake's handler sees it once).
func TestDatagramUseStream(t *testing.T) {
	a := startAgent(t, "")
	ds := startDgramServer(t, a.path, func(h api.Header) []byte {
		return api.AppendReply(nil, h, nil, api.Errorf(api.ErrUseStream, "not on uid and gid alone"))
	})
	c := dial(t, a.path)
	ctx := ctxT(t)
	_, err := c.Register(ctx, "svc/s", client.KindService)
	require.NoError(t, err)
	res, err := c.Raise(ctx, "svc/s", "cpu", client.SevMinor)
	require.NoError(t, err)
	require.Equal(t, "raise", res.Verdict)
	require.EqualValues(t, 1, ds.seen.Load(), "tried on the datagram socket first")
	got, err := c.Get(ctx, "svc/s")
	require.NoError(t, err)
	require.Len(t, got.Alarms, 1, "raised once, on the stream")
}

// An answer on the datagram socket is the write's answer: its result, or
// its error (never sent again on the stream).
func TestDatagramAnswer(t *testing.T) {
	a := startAgent(t, "")
	var fail atomic.Bool
	ds := startDgramServer(t, a.path, func(h api.Header) []byte {
		if fail.Load() {
			return api.AppendReply(nil, h, nil, api.Errorf(api.ErrRefused, "no"))
		}
		return api.AppendReply(nil, h, &api.ReportResult{Seq: 77, Verdict: "down"}, nil)
	})
	c := dial(t, a.path)
	ctx := ctxT(t)
	res, err := c.SetState(ctx, "svc/x", client.StateDown)
	require.NoError(t, err)
	require.Equal(t, uint64(77), res.Seq)
	fail.Store(true)
	_, err = c.Report(ctx, "svc/x", "c", client.SevMajor)
	require.ErrorIs(t, err, api.ErrRefused)
	require.EqualValues(t, 2, ds.seen.Load())
	_, err = c.Get(ctx, "svc/x")
	require.ErrorIs(t, err, api.ErrNotFound, "nothing went on the stream")

	c.UseDatagram(false)
	_, err = c.Register(ctx, "svc/x", client.KindService)
	require.NoError(t, err)
	_, err = c.Raise(ctx, "svc/x", "c", client.SevMajor)
	require.NoError(t, err)
	require.EqualValues(t, 2, ds.seen.Load(), "off: the stream only")
}

// A throttled answer is waited out and the write sent again, as on the
// stream.
func TestDatagramThrottled(t *testing.T) {
	a := startAgent(t, "")
	var n atomic.Int32
	startDgramServer(t, a.path, func(h api.Header) []byte {
		if n.Add(1) == 1 {
			return api.AppendReply(nil, h, nil, &api.Error{Code: api.CodeThrottled, Message: "slow down", RetryAfterMs: 30})
		}
		return api.AppendReply(nil, h, &api.ReportResult{Seq: 5, Verdict: "raise"}, nil)
	})
	c := dial(t, a.path)
	start := time.Now()
	res, err := c.Raise(ctxT(t), "svc/t", "c", client.SevMajor)
	require.NoError(t, err)
	require.Equal(t, uint64(5), res.Seq)
	require.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond)
	require.EqualValues(t, 2, n.Load())
}

// No reply: the caller's context bounds the wait, and the error says the
// outcome is unknown (the context's error, wrapped).
func TestDatagramNoReply(t *testing.T) {
	a := startAgent(t, "")
	startDgramServer(t, a.path, func(api.Header) []byte { return nil })
	c := dial(t, a.path)
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Report(ctx, "svc/n", "c", client.SevMajor)
	require.Error(t, err)
	require.True(t, errors.Is(err, ctx.Err()), "%v", err)
	require.Less(t, time.Since(start), 2*time.Second)
}

// A datagram socket whose answers never come back (a client in another
// network namespace than its agent's): the ping at the first write finds
// it (that write waits for the ping, then goes on the stream), and every
// later write goes on the stream with no wait.
func TestDatagramUnansweredPing(t *testing.T) {
	a := startAgent(t, "")
	ds := startDgramServerPings(t, a.path, func(api.Header) []byte { return nil }, true)
	start := time.Now()
	c := dial(t, a.path)
	require.Less(t, time.Since(start), 2*time.Second)
	ctx := ctxT(t)
	_, err := c.Register(ctx, "svc/p", client.KindService)
	require.NoError(t, err)
	require.EqualValues(t, 0, ds.pings.Load(), "no ping before a fault write")
	for i := range 2 {
		start = time.Now()
		res, err := c.Raise(ctx, "svc/p", fmt.Sprint("c", i), client.SevMajor)
		require.NoError(t, err)
		require.Equal(t, "raise", res.Verdict)
		require.Less(t, time.Since(start), 2*time.Second, "no wait on the datagram socket (up to 10 s)")
	}
	require.EqualValues(t, 0, ds.seen.Load(), "nothing after the ping")
	require.EqualValues(t, 1, ds.pings.Load(), "one ping, at the first write")
}

package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/api/apitest"
	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/internal/testutil"
	"github.com/fmagent/fmagent/internal/testutil/agenttest"
)

type agent struct {
	stop func() // the agent goes away
	fake *apitest.Handler
	path string
}

// startAgent runs a real api.Server with the fake handler on a unix socket
// (path, or one in a temporary directory when "").
func startAgent(t *testing.T, path string) *agent {
	t.Helper()
	fake := apitest.NewHandler()
	if path == "" {
		path = filepath.Join(t.TempDir(), "fmagent.sock")
	}
	return &agent{stop: agenttest.ServeAPIAt(t, fake, path), fake: fake, path: path}
}

func dial(t *testing.T, path string) *client.Client {
	t.Helper()
	c, err := client.Dial(context.Background(), path)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context { return testutil.Context(t, 10*time.Second) }

func TestEveryOp(t *testing.T) {
	a := startAgent(t, "")
	c := dial(t, a.path)
	ctx := ctxT(t)

	e, err := c.Register(ctx, "svc/billing", client.KindService)
	require.NoError(t, err)
	assert.Equal(t, "svc/billing", e.Name)
	assert.Equal(t, client.StateUp, e.State)
	assert.NotZero(t, e.ID)

	p, err := c.Register(ctx, "node/1/proc/worker", client.KindProcess, client.AsProcess(), client.Txn())
	require.NoError(t, err)
	assert.Equal(t, api.KindProcess, p.Kind)

	got, err := c.Get(ctx, "svc/billing")
	require.NoError(t, err)
	assert.Equal(t, e.ID, got.ID)

	r, err := c.Raise(ctx, "svc/billing", "queue-full", client.SevMajor)
	require.NoError(t, err)
	assert.Equal(t, "raise", r.Verdict)
	assert.NotZero(t, r.Seq)
	got, err = c.Get(ctx, "svc/billing")
	require.NoError(t, err)
	require.Len(t, got.Alarms, 1)
	assert.Equal(t, api.Alarm{Cause: "queue-full", Severity: client.SevMajor, RaisedAt: got.Alarms[0].RaisedAt, RaisedBy: 1}, got.Alarms[0])
	assert.Equal(t, r.Seq, got.ChangedSeq)

	r2, err := c.Clear(ctx, "svc/billing", "queue-full")
	require.NoError(t, err)
	assert.Greater(t, r2.Seq, r.Seq)
	_, err = c.Clear(ctx, "svc/billing", "queue-full")
	assert.ErrorIs(t, err, api.ErrNotFound)

	r, err = c.Report(ctx, "svc/billing", "rpc-timeout", "", client.Txn())
	require.NoError(t, err)
	assert.Equal(t, "raise", r.Verdict)
	r, err = c.Report(ctx, "svc/unknown", "rpc-timeout", client.SevMinor)
	require.NoError(t, err)
	assert.Equal(t, api.ReportResult{Seq: 0, Verdict: "ignore"}, *r)

	r, err = c.SetState(ctx, "node/1/proc/worker", client.StateDown)
	require.NoError(t, err)
	assert.Equal(t, "down", r.Verdict)

	all, err := c.List(ctx, client.Filter{})
	require.NoError(t, err)
	assert.Len(t, all, 2)
	down, err := c.List(ctx, client.Filter{State: client.StateDown})
	require.NoError(t, err)
	require.Len(t, down, 1)
	assert.Equal(t, "node/1/proc/worker", down[0].Name)
	alarmed, err := c.List(ctx, client.Filter{AlarmedOnly: true, Prefix: "svc/"})
	require.NoError(t, err)
	require.Len(t, alarmed, 1)
	none, err := c.List(ctx, client.Filter{Kind: client.KindLink})
	require.NoError(t, err)
	assert.NotNil(t, none)
	assert.Empty(t, none)

	st, err := c.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, api.RoleMaster, st.Role)
	assert.Len(t, st.Members, 1)

	assert.ErrorIs(t, c.Switchover(ctx), api.ErrUnsupported)
	a.fake.SetVice(2)
	require.NoError(t, c.Switchover(ctx))

	_, err = c.Unregister(ctx, "svc/billing")
	require.NoError(t, err)
	_, err = c.Get(ctx, "svc/billing")
	assert.ErrorIs(t, err, api.ErrNotFound)
	var ae *api.Error
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, api.CodeNotFound, ae.Code)
	assert.Contains(t, err.Error(), "svc/billing")

	_, err = c.Register(ctx, "node/1/proc/worker", client.KindService)
	assert.ErrorIs(t, err, api.ErrCollision)
	_, err = c.Register(ctx, "", client.KindService)
	assert.ErrorIs(t, err, api.ErrBadRequest)
	_, err = c.Raise(ctx, "x", "c", "fatal")
	assert.ErrorIs(t, err, api.ErrBadRequest)

	// AsProcess told the agent our PID.
	var pids []int32
	for _, call := range a.fake.Calls() {
		if call.Method == "register" && call.Process != 0 {
			pids = append(pids, call.Process)
		}
	}
	assert.Equal(t, []int32{int32(os.Getpid())}, pids)
}

func TestErrorsFromHandler(t *testing.T) {
	a := startAgent(t, "")
	a.fake.Hook = func(ctx context.Context, m string) error {
		switch m {
		case "report":
			return fmt.Errorf("master gone: %w", api.ErrNoMaster)
		case "raise":
			return api.ErrPermission
		case "status":
			return context.DeadlineExceeded
		}
		return nil
	}
	c := dial(t, a.path)
	ctx := ctxT(t)
	_, err := c.Report(ctx, "x", "", "")
	assert.ErrorIs(t, err, api.ErrNoMaster)
	assert.EqualError(t, err, "fmagent report: master gone: no master")
	_, err = c.Raise(ctx, "x", "c", client.SevMinor)
	assert.ErrorIs(t, err, api.ErrPermission)
	_, err = c.Status(ctx)
	assert.ErrorIs(t, err, api.ErrTimeout)
}

// TestConcurrentUse hammers one Client from many goroutines (run with -race).
func TestConcurrentUse(t *testing.T) {
	a := startAgent(t, "")
	c := dial(t, a.path)
	ctx := ctxT(t)
	const workers, each = 32, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("svc/w%02d", w)
			if _, err := c.Register(ctx, name, client.KindService); err != nil {
				errs <- err
				return
			}
			for i := range each {
				cause := fmt.Sprintf("c%d", i)
				if _, err := c.Raise(ctx, name, cause, client.SevMinor); err != nil {
					errs <- err
					return
				}
				e, err := c.Get(ctx, name)
				if err != nil {
					errs <- err
					return
				}
				if e.Name != name || len(e.Alarms) != i+1 {
					errs <- fmt.Errorf("%s: got %s with %d alarms, want %d", name, e.Name, len(e.Alarms), i+1)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	all, err := c.List(ctx, client.Filter{Prefix: "svc/w"})
	require.NoError(t, err)
	assert.Len(t, all, workers)
}

// TestRequestsMultiplexed checks that one slow request does not hold up the
// others on the same Client.
func TestRequestsMultiplexed(t *testing.T) {
	a := startAgent(t, "")
	release := make(chan struct{})
	a.fake.Hook = func(ctx context.Context, m string) error {
		if m == "report" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return nil
	}
	c := dial(t, a.path)
	ctx := ctxT(t)
	slow := make(chan error, 1)
	go func() {
		_, err := c.Report(ctx, "x", "", "")
		slow <- err
	}()
	for range 20 {
		_, err := c.Status(ctx)
		require.NoError(t, err)
	}
	select {
	case err := <-slow:
		t.Fatalf("slow request finished early: %v", err)
	default:
	}
	close(release)
	require.NoError(t, <-slow)
}

func TestListManyFrames(t *testing.T) {
	a := startAgent(t, "")
	c := dial(t, a.path)
	ctx := ctxT(t)
	const n = 800
	for i := range n {
		_, err := c.Register(ctx, fmt.Sprintf("node/%04d/%s", i, strings.Repeat("l", 150)), client.KindLink)
		require.NoError(t, err)
	}
	all, err := c.List(ctx, client.Filter{Prefix: "node/"})
	require.NoError(t, err)
	require.Len(t, all, n)
	for i, e := range all {
		assert.True(t, strings.HasPrefix(e.Name, fmt.Sprintf("node/%04d/", i)))
	}
}

// hungAgent accepts connections and never answers nor reads: a stopped or
// wedged agent.
func hungAgent(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hung.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	require.NoError(t, err)
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return path
}

func TestContextOnHungAgent(t *testing.T) {
	path := hungAgent(t)
	c := dial(t, path)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Get(ctx, "x")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "fmagent get")
	assert.Less(t, time.Since(start), 2*time.Second)

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err = c.Status(ctx)
	assert.ErrorIs(t, err, context.Canceled)

	// Enough concurrent requests to fill the socket buffer: some block in
	// write, not only in waiting for the reply. All must honour ctx.
	const n = 2000
	ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	var bad atomic.Int32
	start = time.Now()
	long := strings.Repeat("n", 200)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Report(ctx, long, strings.Repeat("c", 64), client.SevMinor)
			if !errors.Is(err, context.DeadlineExceeded) {
				bad.Add(1)
			}
		}()
	}
	wg.Wait()
	assert.Zero(t, bad.Load(), "requests that did not end with the context's error")
	assert.Less(t, time.Since(start), 5*time.Second)
}

func TestConnectionLostAndRedial(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fmagent.sock")

	// An agent that reads one request and dies.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	require.NoError(t, err)
	ln.SetUnlinkOnClose(false)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 16)
		c.Read(buf)
		c.Close()
		ln.Close()
	}()
	c := dial(t, path)
	ctx := ctxT(t)
	_, err = c.Status(ctx)
	assert.ErrorIs(t, err, api.ErrUnavailable, "%v", err)
	_, err = c.Status(ctx)
	assert.ErrorIs(t, err, api.ErrUnavailable, "no agent: redial fails: %v", err)

	// The agent comes back (Listen removes the stale socket): the same
	// Client dials again.
	a := startAgent(t, path)
	st, err := c.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, api.RoleMaster, st.Role)

	// The agent shuts down while a request is in flight.
	inHandler := make(chan struct{})
	a.fake.Hook = func(ctx context.Context, m string) error {
		if m == "report" {
			close(inHandler)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	res := make(chan error, 1)
	go func() {
		_, err := c.Report(ctx, "x", "", "")
		res <- err
	}()
	<-inHandler
	a.stop()
	assert.ErrorIs(t, <-res, api.ErrUnavailable)
}

func TestDialNoAgent(t *testing.T) {
	_, err := client.Dial(ctxT(t), filepath.Join(t.TempDir(), "none.sock"))
	assert.ErrorIs(t, err, api.ErrUnavailable)
}

func TestClose(t *testing.T) {
	a := startAgent(t, "")
	block := make(chan struct{})
	defer close(block)
	a.fake.Hook = func(ctx context.Context, m string) error {
		if m == "report" {
			select {
			case <-block:
			case <-ctx.Done():
			}
		}
		return nil
	}
	c, err := client.Dial(ctxT(t), a.path)
	require.NoError(t, err)
	w, err := c.Watch(ctxT(t), "")
	require.NoError(t, err)
	res := make(chan error, 1)
	go func() {
		_, err := c.Report(context.Background(), "x", "", "")
		res <- err
	}()
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, c.Close())
	assert.ErrorIs(t, <-res, client.ErrClosed)
	_, err = c.Status(context.Background())
	assert.ErrorIs(t, err, client.ErrClosed)
	_, ok := <-w.Events()
	assert.False(t, ok, "Close ends the client's watches")
	assert.NoError(t, w.Err())
	_, err = c.Watch(context.Background(), "")
	assert.ErrorIs(t, err, client.ErrClosed)
	assert.NoError(t, c.Close(), "second Close")
}

package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/internal/testutil"
	"github.com/fmagent/fmagent/wire"
)

// dgramCount is the agent's fmagent_api_datagrams_total{how}.
func dgramCount(t *testing.T, addr, how string) float64 {
	t.Helper()
	return metricsOf(t, addr)[`fmagent_api_datagrams_total{how="`+how+`"}`]
}

// The four fault writes go on the datagram socket, which the real-time
// loop reads; their answers are the stream's, errors included, and a write
// is acknowledged only once this node's table has it. Off
// (UseDatagram(false)), the same writes go on the stream.
func TestDatagramWrites(t *testing.T) {
	tc := startCluster(t, 2, func(c *config.Config) { c.Metrics.Listen = fmt.Sprintf("127.0.0.1:%d", freePort(t)) })
	nd := tc.nodes[1]
	addr := nd.cfg.Metrics.Listen
	fi := waitDgramSocket(t, nd.cfg.Paths.Socket)
	require.Equal(t, os.ModeSocket, fi.Mode().Type())
	sfi, err := os.Stat(nd.cfg.Paths.Socket)
	require.NoError(t, err)
	require.Equal(t, sfi.Mode().Perm(), fi.Mode().Perm(), "the stream socket's mode")

	c := nd.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	registerOnceMaster(t, ctx, c, "svc/dgram")
	before := dgramCount(t, addr, "submitted")

	res, err := c.Raise(ctx, "svc/dgram", "disk", client.SevMajor)
	require.NoError(t, err)
	require.Equal(t, "raise", res.Verdict)
	// Acknowledged: in this node's table (read your writes) and memory.
	got, err := c.Get(ctx, "svc/dgram")
	require.NoError(t, err)
	require.Len(t, got.Alarms, 1)
	_, e := nd.state("svc/dgram")
	require.NotNil(t, e)
	_, ok := e.FindAlarm([]byte("disk"))
	require.True(t, ok, "the raised alarm in shared memory when Raise returned")

	res, err = c.Clear(ctx, "svc/dgram", "disk")
	require.NoError(t, err)
	require.Equal(t, "clear", res.Verdict)
	answered := dgramCount(t, addr, "answered")
	_, err = c.Clear(ctx, "svc/dgram", "disk")
	require.ErrorIs(t, err, api.ErrNotFound, "a failed check is answered as on the stream")
	require.Equal(t, answered+1, dgramCount(t, addr, "answered"))

	res, err = c.Report(ctx, "svc/dgram", "", "")
	require.NoError(t, err)
	require.NotZero(t, res.Seq)
	res, err = c.SetState(ctx, "svc/dgram", client.StateDown)
	require.NoError(t, err)
	require.Equal(t, "down", res.Verdict)
	st, _ := nd.state("svc/dgram")
	require.Equal(t, wire.StateDown, st, "down in shared memory when SetState returned")
	require.Equal(t, before+4, dgramCount(t, addr, "submitted"), "raise, clear, report and set_state on the datagram socket")

	// A permission check that fails is sent to the stream (the stream's
	// supplementary groups may grant it), which answers it.
	c1 := tc.nodes[0].client(t)
	_, err = c1.Register(ctx, "svc/other", client.KindService)
	require.NoError(t, err)
	waitShm(t, nd, 5*time.Second, "svc/other on node 2", func() bool { st, _ := nd.state("svc/other"); return st == wire.StateUp })
	toStream := dgramCount(t, addr, "to_stream")
	_, err = c.SetState(ctx, "svc/other", client.StateDown)
	require.ErrorIs(t, err, api.ErrPermission)
	require.Equal(t, toStream+1, dgramCount(t, addr, "to_stream"))

	c.UseDatagram(false)
	_, err = c.SetState(ctx, "svc/dgram", client.StateUp)
	require.NoError(t, err)
	require.Equal(t, before+4, dgramCount(t, addr, "submitted"), "with the datagram socket off, on the stream")
	st, _ = nd.state("svc/dgram")
	require.Equal(t, wire.StateUp, st)
}

// waitDgramSocket waits for the agent's datagram socket next to socket.
func waitDgramSocket(t *testing.T, socket string) os.FileInfo {
	t.Helper()
	var fi os.FileInfo
	require.Eventually(t, func() bool {
		var err error
		fi, err = os.Stat(api.DatagramPath(socket))
		return err == nil
	}, 5*time.Second, 10*time.Millisecond, "the agent's datagram socket")
	return fi
}

// registerOnceMaster registers the service name through c as soon as the
// cluster has a master.
func registerOnceMaster(t *testing.T, ctx context.Context, c *client.Client, name string) {
	t.Helper()
	require.Eventually(t, func() bool {
		_, err := c.Register(ctx, name, client.KindService)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "a master to register %s with", name)
}

// dgramConn is a raw client socket connected to the agent's datagram
// socket.
func dgramConn(t *testing.T, socket string) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	require.NoError(t, unix.Bind(fd, &unix.SockaddrUnix{}))
	require.NoError(t, unix.Connect(fd, &unix.SockaddrUnix{Name: api.DatagramPath(socket)}))
	tv := unix.NsecToTimeval(int64(5 * time.Second))
	require.NoError(t, unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv))
	return fd
}

// Bad datagrams: one with no request header is dropped and counted; one
// with a header is answered with the error a stream gets; nothing is
// written, and the socket goes on serving.
func TestDatagramBadInput(t *testing.T) {
	tc := startCluster(t, 2, func(c *config.Config) { c.Metrics.Listen = fmt.Sprintf("127.0.0.1:%d", freePort(t)) })
	nd := tc.nodes[0]
	addr := nd.cfg.Metrics.Listen
	waitDgramSocket(t, nd.cfg.Paths.Socket)
	fd := dgramConn(t, nd.cfg.Paths.Socket)

	malformed := dgramCount(t, addr, "malformed")
	for _, junk := range [][]byte{[]byte("hello"), make([]byte, api.HeaderSize), make([]byte, api.MaxDatagram+100)} {
		_, err := unix.Write(fd, junk)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return dgramCount(t, addr, "malformed") == malformed+3 }, 5*time.Second, 10*time.Millisecond)

	ask := func(h api.Header, body string) (api.Header, *api.Error) {
		t.Helper()
		_, err := unix.Write(fd, api.AppendFrame(nil, h, []byte(body)))
		require.NoError(t, err)
		buf := make([]byte, 70000)
		n, err := unix.Read(fd, buf)
		require.NoError(t, err, "a reply")
		rh, err := api.ParseHeader(buf[:n])
		require.NoError(t, err)
		require.Equal(t, h.ID, rh.ID)
		require.Equal(t, h.Op|api.OpReply, rh.Op)
		require.NotZero(t, rh.Flags&api.FlagError, "an error reply: %s", buf[api.HeaderSize:n])
		var e api.Error
		require.NoError(t, json.Unmarshal(buf[api.HeaderSize:n], &e))
		return rh, &e
	}
	v := api.Version
	for i, c := range []struct {
		h    api.Header
		body string
		want *api.Error
	}{
		{api.Header{Version: v, Op: api.OpGet, ID: 1}, `{"name":"x"}`, api.ErrUnknownOp},
		{api.Header{Version: v, Op: api.OpRegister, ID: 2}, `{"name":"x","kind":"service"}`, api.ErrUnknownOp},
		{api.Header{Version: 9, Op: api.OpReport, ID: 3}, `{"name":"x"}`, api.ErrUnsupportedVersion},
		{api.Header{Version: v, Op: api.OpReport, ID: 4}, `{"name":`, api.ErrBadRequest},
		{api.Header{Version: v, Op: api.OpReport, ID: 5}, `{"name":"x","bogus":1}`, api.ErrBadRequest},
		{api.Header{Version: v, Op: api.OpSetState, ID: 6}, `{"name":"x","state":"sideways"}`, api.ErrBadRequest},
		{api.Header{Version: v, Op: api.OpClear, ID: 7}, `{"name":"svc/none","cause":"c"}`, api.ErrNotFound},
	} {
		_, e := ask(c.h, c.body)
		require.ErrorIs(t, e, c.want, "case %d: %s", i, e.Message)
	}
	// A header whose length is not the datagram's.
	b := api.AppendFrame(nil, api.Header{Version: v, Op: api.OpReport, ID: 8}, []byte(`{"name":"x"}`))
	b[15]++
	_, err := unix.Write(fd, b)
	require.NoError(t, err)
	buf := make([]byte, 4096)
	n, err := unix.Read(fd, buf)
	require.NoError(t, err)
	require.Contains(t, string(buf[:n]), api.CodeBadRequest)
	for _, n := range tc.nodes {
		_, e := n.state("x")
		require.Nil(t, e, "nothing written")
	}

	// Still serving.
	c := nd.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	registerOnceMaster(t, ctx, c, "svc/after")
	submitted := dgramCount(t, addr, "submitted")
	_, err = c.Report(ctx, "svc/after", "junk-survived", client.SevMinor)
	require.NoError(t, err)
	require.Equal(t, submitted+1, dgramCount(t, addr, "submitted"))
}

// A write waiting on the datagram socket when its agent is killed fails at
// once with unavailable (its outcome unknown), not after the client's
// longest wait: the client's probes find the agent's socket gone. (The
// agent is stopped first, so the write waits in its socket's queue.)
func TestDatagramAgentKilledMidWrite(t *testing.T) {
	tn := testutil.NewNet(t)
	cfg := newTestConfig(t, 1, tn.Cluster, tn.A, tn.B, tn.Port, t.TempDir())
	proc, _ := startChildAgentProc(t, cfg)
	var c *client.Client
	require.Eventually(t, func() bool {
		if _, err := os.Stat(api.DatagramPath(cfg.Paths.Socket)); err != nil {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var err error
		c, err = client.Dial(ctx, cfg.Paths.Socket)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "the agent's sockets")
	defer c.Close()
	require.NoError(t, proc.Signal(unix.SIGSTOP))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Report(context.Background(), "svc/orphan", "lost", client.SevMajor)
		errc <- err
	}()
	select {
	case err := <-errc:
		t.Fatalf("the write returned from a stopped agent: %v", err)
	case <-time.After(600 * time.Millisecond):
	}
	killed := time.Now()
	require.NoError(t, proc.Signal(unix.SIGKILL))
	select {
	case err := <-errc:
		require.ErrorIs(t, err, api.ErrUnavailable)
		t.Logf("the write failed %v after the kill: %v", time.Since(killed), err)
		require.Less(t, time.Since(killed), 4*time.Second, "failed by the probe, not the client's 10 s wait")
	case <-time.After(15 * time.Second):
		t.Fatal("the write never returned")
	}
}

// A client in another network namespace than its agent's (a container given
// the agent's socket by a bind mount) reaches the datagram socket by its
// path, but the agent's answers go to an abstract address the kernel
// resolves in the agent's namespace, and never arrive. The client's ping
// at its first write finds it out, and its writes go on the stream.
func TestDatagramClientInOtherNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test unshares a network namespace and needs root (make test runs as root)")
	}
	tc := startCluster(t, 2, func(c *config.Config) { c.Metrics.Listen = fmt.Sprintf("127.0.0.1:%d", freePort(t)) })
	nd := tc.nodes[1]
	addr := nd.cfg.Metrics.Listen
	waitDgramSocket(t, nd.cfg.Paths.Socket)
	registerOnceMaster(t, context.Background(), nd.client(t), "svc/netns")
	submitted := dgramCount(t, addr, "submitted")

	type result struct {
		took time.Duration
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// This thread's network namespace: a new one. The thread is
		// never unlocked, so it ends with the goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- result{err: fmt.Errorf("unshare: %w", err)}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := client.Dial(ctx, nd.cfg.Paths.Socket)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		start := time.Now()
		_, err = c.Raise(ctx, "svc/netns", "from-a-container", client.SevMajor)
		done <- result{time.Since(start), err}
	}()
	r := <-done
	require.NoError(t, r.err)
	t.Logf("the write from another network namespace answered in %v", r.took)
	require.Less(t, r.took, 2*time.Second, "not after the datagram socket's wait")
	require.Equal(t, submitted, dgramCount(t, addr, "submitted"), "on the stream")
	_, e := nd.state("svc/netns")
	require.NotNil(t, e)
	_, ok := e.FindAlarm([]byte("from-a-container"))
	require.True(t, ok)
}

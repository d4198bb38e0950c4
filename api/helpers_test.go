package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/api/apitest"
)

// testServer is a real api.Server on a unix socket in a temp directory.
type testServer struct {
	*api.Server
	Fake *apitest.Handler
	Path string
	done chan error // Serve's result
}

func startServer(t *testing.T, configure func(*api.Server)) *testServer {
	t.Helper()
	fake := apitest.NewHandler()
	s := &api.Server{Handler: fake}
	if configure != nil {
		configure(s)
	}
	path := filepath.Join(t.TempDir(), "fmagent.sock")
	ln, err := api.Listen(path, 0o660)
	require.NoError(t, err)
	ts := &testServer{Server: s, Fake: fake, Path: path, done: make(chan error, 1)}
	go func() { ts.done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return ts
}

// rawConn speaks frames by hand, to test the wire format itself.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, path string) *rawConn {
	t.Helper()
	nc, err := net.Dial("unix", path)
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (c *rawConn) writeBytes(b []byte) {
	c.t.Helper()
	_, err := c.nc.Write(b)
	require.NoError(c.t, err)
}

func (c *rawConn) send(op api.Op, id uint32, body string) {
	c.t.Helper()
	c.writeBytes(api.AppendFrame(nil, api.Header{Version: api.Version, Op: op, ID: id}, []byte(body)))
}

// read reads one frame, failing the test after 5 s.
func (c *rawConn) read() (api.Header, []byte) {
	c.t.Helper()
	h, body, err := c.readErr()
	require.NoError(c.t, err)
	require.Equal(c.t, api.Version, h.Version)
	require.NotZero(c.t, h.Op&api.OpReply, "server frame without the reply bit")
	return h, body
}

func (c *rawConn) readErr() (api.Header, []byte, error) {
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.nc.SetReadDeadline(time.Time{})
	return api.ReadFrame(c.br)
}

// do sends a request and reads its single reply, which must be a success;
// the body is decoded into out (if not nil).
func (c *rawConn) do(op api.Op, id uint32, body string, out any) {
	c.t.Helper()
	c.send(op, id, body)
	h, b := c.read()
	require.Equal(c.t, op|api.OpReply, h.Op)
	require.Equal(c.t, id, h.ID)
	require.Zero(c.t, h.Flags&api.FlagError, "error reply: %s", b)
	require.Zero(c.t, h.Flags&api.FlagMore)
	if out != nil {
		require.NoError(c.t, json.Unmarshal(b, out), "%s", b)
	}
}

// doErr sends a request and reads its reply, which must be an error.
func (c *rawConn) doErr(op api.Op, id uint32, body string) *api.Error {
	c.t.Helper()
	c.send(op, id, body)
	return c.readError(op|api.OpReply, id)
}

func (c *rawConn) readError(op api.Op, id uint32) *api.Error {
	c.t.Helper()
	h, b := c.read()
	require.Equal(c.t, op, h.Op)
	require.Equal(c.t, id, h.ID)
	require.NotZero(c.t, h.Flags&api.FlagError, "want an error, got %s", b)
	var e api.Error
	require.NoError(c.t, json.Unmarshal(b, &e))
	require.NotEmpty(c.t, e.Code)
	return &e
}

// expectClosed checks that the server closes the connection.
func (c *rawConn) expectClosed() {
	c.t.Helper()
	_, _, err := c.readErr()
	require.Error(c.t, err)
	require.False(c.t, errors.Is(err, os.ErrDeadlineExceeded), "connection still open")
	require.True(c.t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), "%v", err)
}

func (c *rawConn) decodeError(b []byte) *api.Error {
	c.t.Helper()
	var e api.Error
	require.NoError(c.t, json.Unmarshal(b, &e))
	return &e
}

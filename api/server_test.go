package api_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/api"
)

// TestRoundTripEveryOp drives every op with hand-made frames and checks the
// reply op, ID, flags and the JSON field names of the results.
func TestRoundTripEveryOp(t *testing.T) {
	ts := startServer(t, nil)
	ts.Fake.SetVice(2)
	c := dialRaw(t, ts.Path)

	var raw map[string]any
	c.do(api.OpRegister, 1, `{"name":"svc/billing","kind":"service"}`, &raw)
	for _, k := range []string{"id", "name", "kind", "owner", "state", "incarnation", "changed_at", "changed_seq", "changed_by", "alarms"} {
		assert.Contains(t, raw, k)
	}
	assert.Regexp(t, `^0x[0-9a-f]{16}$`, raw["id"])
	assert.Equal(t, []any{}, raw["alarms"], "alarms must be [] when none")
	_, err := time.Parse(time.RFC3339Nano, raw["changed_at"].(string))
	assert.NoError(t, err)

	var e api.Entity
	c.do(api.OpGet, 2, `{"name":"svc/billing"}`, &e)
	assert.Equal(t, "svc/billing", e.Name)
	assert.Equal(t, api.KindService, e.Kind)
	assert.Equal(t, api.StateUp, e.State)
	assert.Equal(t, uint64(1), e.ChangedSeq)

	var rr api.ReportResult
	c.do(api.OpRaise, 3, `{"name":"svc/billing","cause":"cpu-overload","severity":"major"}`, &rr)
	assert.Equal(t, api.ReportResult{Seq: 2, Verdict: "raise"}, rr)
	raw = nil
	c.do(api.OpGet, 4, `{"name":"svc/billing"}`, &raw)
	alarms := raw["alarms"].([]any)
	require.Len(t, alarms, 1)
	a := alarms[0].(map[string]any)
	assert.Equal(t, "cpu-overload", a["cause"])
	assert.Equal(t, "major", a["severity"])
	assert.Contains(t, a, "raised_at")
	assert.Contains(t, a, "raised_by")

	c.do(api.OpClear, 5, `{"name":"svc/billing","cause":"cpu-overload"}`, &rr)
	assert.Equal(t, api.ReportResult{Seq: 3, Verdict: "clear"}, rr)

	var rawResult map[string]any
	c.do(api.OpReport, 6, `{"name":"svc/billing","cause":"rpc-timeout"}`, &rawResult)
	assert.Equal(t, map[string]any{"seq": float64(4), "verdict": "raise"}, rawResult)
	c.do(api.OpGet, 7, `{"name":"svc/billing"}`, &e)
	require.Len(t, e.Alarms, 1)
	assert.Equal(t, api.SevIndeterminate, e.Alarms[0].Severity, "report severity defaults to indeterminate")

	c.do(api.OpSetState, 8, `{"name":"svc/billing","state":"down"}`, &rr)
	assert.Equal(t, api.ReportResult{Seq: 5, Verdict: "down"}, rr)

	c.do(api.OpRegister, 9, `{"name":"node/1/proc/sshd","kind":"process","process":true,"txn":true}`, nil)
	var list []api.Entity
	c.do(api.OpList, 10, `{}`, &list)
	assert.Len(t, list, 2)
	c.do(api.OpList, 11, `{"prefix":"node/","kind":"process","state":"up"}`, &list)
	require.Len(t, list, 1)
	assert.Equal(t, "node/1/proc/sshd", list[0].Name)
	c.do(api.OpList, 12, `{"alarmed_only":true}`, &list)
	require.Len(t, list, 1)
	assert.Equal(t, "svc/billing", list[0].Name)
	c.do(api.OpList, 13, `{"state":"down","kind":"process"}`, &list)
	assert.Empty(t, list)

	var st map[string]any
	c.do(api.OpStatus, 14, ``, &st)
	for _, k := range []string{"node", "cluster", "role", "epoch", "master", "vice", "stale", "table_seq", "digest", "incarnation", "members"} {
		assert.Contains(t, st, k)
	}
	assert.Regexp(t, `^0x[0-9a-f]{16}$`, st["digest"])
	m := st["members"].([]any)[0].(map[string]any)
	for _, k := range []string{"node", "incarnation", "role", "state", "links", "priority", "eligible"} {
		assert.Contains(t, m, k)
	}
	assert.Equal(t, map[string]any{"a": true, "b": true}, m["links"])

	var empty map[string]any
	c.do(api.OpSwitchover, 15, `{}`, &empty)
	assert.Empty(t, empty)
	var status api.Status
	c.do(api.OpStatus, 16, `{}`, &status)
	assert.Equal(t, api.RoleVice, status.Role)

	c.do(api.OpUnregister, 17, `{"name":"svc/billing"}`, &rr)
	assert.Equal(t, "unregister", rr.Verdict)
	ae := c.doErr(api.OpGet, 18, `{"name":"svc/billing"}`)
	assert.ErrorIs(t, ae, api.ErrNotFound)
	assert.Contains(t, ae.Message, "svc/billing")

	ae = c.doErr(api.OpRegister, 19, `{"name":"node/1/proc/sshd","kind":"service"}`)
	assert.ErrorIs(t, ae, api.ErrCollision)

	// The process registration carried the caller's PID to the handler.
	var pidSeen int32
	for _, call := range ts.Fake.Calls() {
		if call.Name == "node/1/proc/sshd" && call.Process != 0 {
			pidSeen = call.Process
		}
	}
	assert.Equal(t, int32(os.Getpid()), pidSeen)
}

// TestPeerCredentials checks that the handler gets the caller's credentials
// as the kernel reports them.
func TestPeerCredentials(t *testing.T) {
	ts := startServer(t, nil)
	c := dialRaw(t, ts.Path)
	c.do(api.OpRegister, 1, `{"name":"x","kind":"custom"}`, nil)
	calls := ts.Fake.Calls()
	require.Len(t, calls, 1)
	assert.Equal(t, int32(os.Getpid()), calls[0].Cred.PID)
	assert.Equal(t, uint32(os.Getuid()), calls[0].Cred.UID)
	assert.Equal(t, uint32(os.Getgid()), calls[0].Cred.GID)
	groups, err := os.Getgroups()
	require.NoError(t, err)
	var want []uint32
	for _, g := range groups {
		want = append(want, uint32(g))
	}
	assert.ElementsMatch(t, want, calls[0].Cred.Groups)
}

func TestMalformedBodyConnectionSurvives(t *testing.T) {
	ts := startServer(t, nil)
	c := dialRaw(t, ts.Path)
	cases := []struct{ body, msg string }{
		{`{"name":`, "unexpected EOF"},
		{`{"name":"a","kind":"service"`, "unexpected EOF"},
		{`{"name":42,"kind":"service"}`, "cannot unmarshal number"},
		{`{"name":"a","kind":"service","colour":"red"}`, `unknown field "colour"`},
		{`{"name":"a","kind":"service"} {}`, "data after"},
		{`[1,2]`, "cannot unmarshal array"},
		{"\xff\xfe", "invalid character"},
	}
	for i, tc := range cases {
		e := c.doErr(api.OpRegister, uint32(100+i), tc.body)
		assert.Equal(t, api.CodeBadRequest, e.Code, tc.body)
		assert.Contains(t, e.Message, tc.msg, tc.body)
		// The next good request on the same connection works.
		var ent api.Entity
		c.do(api.OpRegister, uint32(200+i), `{"name":"a","kind":"service"}`, &ent)
		assert.Equal(t, "a", ent.Name)
	}
}

func TestValidation(t *testing.T) {
	ts := startServer(t, nil)
	c := dialRaw(t, ts.Path)
	long := strings.Repeat("n", 201)
	cases := []struct {
		op   api.Op
		body string
		msg  string
	}{
		{api.OpRegister, `{"kind":"service"}`, "name is required"},
		{api.OpRegister, `{"name":"` + long + `","kind":"service"}`, "limit is 200"},
		{api.OpRegister, `{"name":"a","kind":"toaster"}`, `kind "toaster"`},
		{api.OpRegister, `{"name":"a"}`, `kind ""`},
		{api.OpRegister, `{"name":"a\u0000b","kind":"node"}`, "control character"},
		{api.OpRegister, `{"name":"a\nb","kind":"node"}`, "control character"},
		{api.OpRaise, `{"name":"a","severity":"major"}`, "cause is required"},
		{api.OpRaise, `{"name":"a","cause":"c"}`, `severity ""`},
		{api.OpRaise, `{"name":"a","cause":"` + strings.Repeat("c", 65) + `","severity":"minor"}`, "limit is 64"},
		{api.OpReport, `{"name":"a","severity":"fatal"}`, `severity "fatal"`},
		{api.OpClear, `{"name":"a"}`, "cause is required"},
		{api.OpSetState, `{"name":"a","state":"faulted"}`, `state "faulted"`},
		{api.OpGet, `{}`, "name is required"},
		{api.OpUnregister, `{}`, "name is required"},
		{api.OpList, `{"kind":"x"}`, `kind "x"`},
		{api.OpList, `{"state":"x"}`, `state "x"`},
		{api.OpWatch, `{"prefix":"` + long + `"}`, "limit is 200"},
		{api.OpStatus, `{"x":1}`, "unknown field"},
	}
	for i, tc := range cases {
		e := c.doErr(tc.op, uint32(i), tc.body)
		assert.Equal(t, api.CodeBadRequest, e.Code, "%v %s", tc.op, tc.body)
		assert.Contains(t, e.Message, tc.msg, "%v %s", tc.op, tc.body)
	}
	// A 200-byte name is fine, and nothing invalid reached the handler.
	c.do(api.OpRegister, 99, `{"name":"`+long[:200]+`","kind":"service"}`, nil)
	assert.Len(t, ts.Fake.Calls(), 1)
}

func TestUnknownOpAndVersionConnectionSurvives(t *testing.T) {
	ts := startServer(t, nil)
	c := dialRaw(t, ts.Path)

	for _, op := range []api.Op{0x00, 0x0f, 0x55, api.OpEvent, api.OpGet | api.OpReply} {
		e := c.doErr(op, 7, `{}`)
		assert.Equal(t, api.CodeUnknownOp, e.Code, "op %#x", uint8(op))
		c.do(api.OpStatus, 8, ``, nil)
	}

	for _, v := range []uint8{0, 2, 255} {
		c.writeBytes(api.AppendFrame(nil, api.Header{Version: v, Op: api.OpGet, ID: 9}, []byte(`{"name":"x","future":true}`)))
		e := c.readError(api.OpGet|api.OpReply, 9)
		assert.Equal(t, api.CodeUnsupportedVersion, e.Code)
		assert.Contains(t, e.Message, "version 1")
		// The body was skipped: the next frame is read correctly.
		c.do(api.OpStatus, 10, ``, nil)
	}
}

func TestOversizeFrameClosesConnection(t *testing.T) {
	ts := startServer(t, nil)
	c := dialRaw(t, ts.Path)
	c.do(api.OpStatus, 1, ``, nil)
	hdr := make([]byte, api.HeaderSize)
	api.PutHeader(hdr, api.Header{Version: 1, Op: api.OpRegister, ID: 77, Length: api.MaxBody + 1})
	c.writeBytes(hdr)
	e := c.readError(api.OpRegister|api.OpReply, 77)
	assert.Equal(t, api.CodeFrameTooLarge, e.Code)
	c.expectClosed()
}

func TestBadMagicClosesConnection(t *testing.T) {
	ts := startServer(t, nil)
	c := dialRaw(t, ts.Path)
	c.writeBytes([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	h, b := c.read()
	assert.NotZero(t, h.Flags&api.FlagError)
	var e api.Error
	require.NoError(t, json.Unmarshal(b, &e))
	assert.Equal(t, api.CodeBadMagic, e.Code)
	c.expectClosed()
}

func TestMaxBodyAccepted(t *testing.T) {
	ts := startServer(t, nil)
	c := dialRaw(t, ts.Path)
	body := `{"name":"padded","kind":"custom"}`
	body += strings.Repeat(" ", api.MaxBody-len(body))
	require.Len(t, body, api.MaxBody)
	c.do(api.OpRegister, 1, body, nil)
}

// TestRepliesOutOfOrder checks that requests on one connection are served
// concurrently and replies matched by ID: a request blocked in the handler
// does not hold up the next one.
func TestRepliesOutOfOrder(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	ts := startServer(t, nil)
	ts.Fake.Hook = func(ctx context.Context, m string) error {
		if m == "status" {
			once.Do(func() { <-release })
		}
		return nil
	}
	c := dialRaw(t, ts.Path)
	c.send(api.OpStatus, 1, ``)
	c.send(api.OpRegister, 2, `{"name":"a","kind":"node"}`)
	h, _ := c.read()
	assert.Equal(t, uint32(2), h.ID, "the unblocked request answers first")
	close(release)
	h, _ = c.read()
	assert.Equal(t, uint32(1), h.ID)
	assert.Equal(t, api.OpStatus|api.OpReply, h.Op)
}

func TestHandlerErrorsAndPanics(t *testing.T) {
	ts := startServer(t, nil)
	ts.Fake.Hook = func(ctx context.Context, m string) error {
		switch m {
		case "report":
			return fmt.Errorf("forwarding: %w", api.ErrNoMaster)
		case "raise":
			return context.DeadlineExceeded
		case "clear":
			return errors.New("disk on fire")
		case "get":
			panic("boom")
		}
		return nil
	}
	c := dialRaw(t, ts.Path)
	e := c.doErr(api.OpReport, 1, `{"name":"a"}`)
	assert.Equal(t, api.CodeNoMaster, e.Code)
	assert.Equal(t, "forwarding: no master", e.Message)
	assert.Equal(t, api.CodeTimeout, c.doErr(api.OpRaise, 2, `{"name":"a","cause":"c","severity":"minor"}`).Code)
	e = c.doErr(api.OpClear, 3, `{"name":"a","cause":"c"}`)
	assert.Equal(t, api.CodeInternal, e.Code)
	assert.Equal(t, "disk on fire", e.Message)
	e = c.doErr(api.OpGet, 4, `{"name":"a"}`)
	assert.Equal(t, api.CodeInternal, e.Code)
	assert.Contains(t, e.Message, "boom")
	c.do(api.OpStatus, 5, ``, nil) // still alive
}

// TestListChunked checks that a list longer than one frame is split into
// several, each within MaxBody, all but the last flagged FlagMore.
func TestListChunked(t *testing.T) {
	ts := startServer(t, nil)
	c := dialRaw(t, ts.Path)
	const n = 1000
	for i := range n {
		name := fmt.Sprintf("svc/%04d/%s", i, strings.Repeat("x", 150))
		c.do(api.OpRegister, uint32(i), `{"name":"`+name+`","kind":"service"}`, nil)
	}
	c.send(api.OpList, 5000, `{"prefix":"svc/"}`)
	var all []api.Entity
	frames := 0
	for {
		h, b := c.read()
		require.Equal(t, api.OpList|api.OpReply, h.Op)
		require.Equal(t, uint32(5000), h.ID)
		require.Zero(t, h.Flags&api.FlagError)
		require.LessOrEqual(t, len(b), api.MaxBody)
		var chunk []api.Entity
		require.NoError(t, json.Unmarshal(b, &chunk))
		all = append(all, chunk...)
		frames++
		if h.Flags&api.FlagMore == 0 {
			break
		}
	}
	assert.Greater(t, frames, 3)
	require.Len(t, all, n)
	for i := range all {
		assert.True(t, strings.HasPrefix(all[i].Name, fmt.Sprintf("svc/%04d/", i)))
	}
	c.do(api.OpStatus, 5001, ``, nil)
}

func TestWatchStreamsAndStopsOnClose(t *testing.T) {
	ts := startServer(t, nil)
	w := dialRaw(t, ts.Path)
	w.send(api.OpWatch, 3, `{"prefix":"node/2/"}`)
	h, b := w.read()
	require.Equal(t, api.OpWatch|api.OpReply, h.Op, "%s", b)
	require.Equal(t, api.FlagMore, h.Flags, "the ack says a stream follows")
	assert.Equal(t, 1, ts.Fake.WatcherCount())

	c := dialRaw(t, ts.Path)
	c.do(api.OpRegister, 1, `{"name":"node/1/link/a","kind":"link"}`, nil) // filtered out
	c.do(api.OpRegister, 2, `{"name":"node/2/link/a","kind":"link"}`, nil)
	c.do(api.OpRaise, 3, `{"name":"node/2/link/a","cause":"link-down","severity":"major"}`, nil)
	c.do(api.OpSetState, 4, `{"name":"node/2/link/a","state":"down"}`, nil)
	c.do(api.OpUnregister, 5, `{"name":"node/2/link/a"}`, nil)

	want := []api.EventKind{api.EventRegister, api.EventRaise, api.EventState, api.EventUnregister}
	var lastSeq uint64
	for i, k := range want {
		h, b := w.read()
		require.Equal(t, api.OpEvent|api.OpReply, h.Op)
		require.Equal(t, uint32(3), h.ID)
		require.Equal(t, api.FlagMore, h.Flags)
		var raw map[string]any
		require.NoError(t, json.Unmarshal(b, &raw))
		assert.Contains(t, raw, "seq")
		assert.Contains(t, raw, "kind")
		assert.Contains(t, raw, "entity")
		var ev api.Event
		require.NoError(t, json.Unmarshal(b, &ev))
		assert.Equal(t, k, ev.Kind, "event %d", i)
		assert.Equal(t, "node/2/link/a", ev.Entity.Name)
		assert.Greater(t, ev.Seq, lastSeq)
		lastSeq = ev.Seq
		if k == api.EventRaise {
			assert.Equal(t, "link-down", ev.Cause)
		}
	}
	// The client goes away: the handler's Watch must end.
	w.nc.Close()
	require.Eventually(t, func() bool { return ts.Fake.WatcherCount() == 0 }, 5*time.Second, time.Millisecond)
}

func TestWatchEndsOnShutdown(t *testing.T) {
	ts := startServer(t, nil)
	w := dialRaw(t, ts.Path)
	w.send(api.OpWatch, 1, ``)
	h, _ := w.read()
	require.Equal(t, api.OpWatch|api.OpReply, h.Op)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, ts.Shutdown(ctx))
	e := w.readError(api.OpEvent|api.OpReply, 1)
	assert.Equal(t, api.CodeUnavailable, e.Code)
	w.expectClosed()
	assert.ErrorIs(t, <-ts.done, api.ErrServerClosed)
	_, err := os.Lstat(ts.Path)
	assert.ErrorIs(t, err, os.ErrNotExist, "Shutdown removes the socket file")
}

// TestSlowWatcherDisconnected checks that a watcher that does not read is
// disconnected after the write timeout, and its Watch ends.
func TestSlowWatcherDisconnected(t *testing.T) {
	ts := startServer(t, func(s *api.Server) {
		s.WriteTimeout = 200 * time.Millisecond
		s.Limits.WriteRate, s.Limits.WriteBurst = 1e6, 1e6 // this test floods on purpose
	})
	w := dialRaw(t, ts.Path)
	w.send(api.OpWatch, 1, ``)
	h, _ := w.read()
	require.Equal(t, api.OpWatch|api.OpReply, h.Op)
	c := dialRaw(t, ts.Path)
	c.do(api.OpRegister, 1, `{"name":"`+strings.Repeat("n", 200)+`","kind":"custom"}`, nil)
	// Fill the socket buffers: w never reads.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ts.Fake.WatcherCount() > 0; i++ {
		require.True(t, time.Now().Before(deadline), "slow watcher never disconnected")
		c.do(api.OpSetState, uint32(i), fmt.Sprintf(`{"name":"%s","state":"%s"}`, strings.Repeat("n", 200), []string{"down", "up"}[i%2]), nil)
	}
}

func TestShutdownCancelsInFlight(t *testing.T) {
	started := make(chan struct{})
	ts := startServer(t, nil)
	ts.Fake.Hook = func(ctx context.Context, m string) error {
		if m == "report" {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	c := dialRaw(t, ts.Path)
	c.send(api.OpReport, 1, `{"name":"a"}`)
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, ts.Shutdown(ctx))
	e := c.readError(api.OpReport|api.OpReply, 1)
	assert.Equal(t, api.CodeUnavailable, e.Code)
	c.expectClosed()
	assert.ErrorIs(t, <-ts.done, api.ErrServerClosed)
}

func TestListenStaleAndLive(t *testing.T) {
	ts := startServer(t, nil)
	fi, err := os.Lstat(ts.Path)
	require.NoError(t, err)
	assert.Equal(t, os.ModeSocket, fi.Mode().Type())
	assert.Equal(t, os.FileMode(0o660), fi.Mode().Perm())

	// A live agent's socket is not taken over.
	_, err = api.Listen(ts.Path, 0o660)
	assert.ErrorIs(t, err, syscall.EADDRINUSE)
	dialRaw(t, ts.Path).do(api.OpStatus, 1, ``, nil)

	// A stale socket (its listener gone without unlinking) is replaced.
	dir := t.TempDir()
	stale := dir + "/s.sock"
	ln, err := api.Listen(stale, 0o600)
	require.NoError(t, err)
	ln.Close()
	_, err = os.Lstat(stale)
	require.NoError(t, err, "the stale socket file is still there")
	ln2, err := api.Listen(stale, 0o666)
	require.NoError(t, err)
	defer ln2.Close()
	fi, err = os.Lstat(stale)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o666), fi.Mode().Perm())

	// A regular file is never removed.
	reg := dir + "/file"
	require.NoError(t, os.WriteFile(reg, []byte("keep me"), 0o644))
	_, err = api.Listen(reg, 0o660)
	assert.Error(t, err)
	b, err := os.ReadFile(reg)
	require.NoError(t, err)
	assert.Equal(t, "keep me", string(b))

	// No temporary directory is left behind.
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, ents, 2)

	// The parent directory is created.
	nested := dir + "/run/fmagent/fmagent.sock"
	ln3, err := api.Listen(nested, 0o660)
	require.NoError(t, err)
	ln3.Close()
}

func TestServeAfterShutdown(t *testing.T) {
	ts := startServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, ts.Shutdown(ctx))
	ln, err := api.Listen(t.TempDir()+"/x.sock", 0o600)
	require.NoError(t, err)
	defer ln.Close()
	assert.ErrorIs(t, ts.Serve(ln), api.ErrServerClosed)
}

func TestHeaderLayout(t *testing.T) {
	b := api.AppendFrame(nil, api.Header{Version: 1, Op: api.OpRaise, Flags: 0x0102, ID: 0xdeadbeef}, []byte("{}"))
	want := []byte{'F', 'M', 'A', 'P', 1, 0x04, 0x01, 0x02, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 2, '{', '}'}
	assert.Equal(t, want, b)
	h, err := api.ParseHeader(b)
	require.NoError(t, err)
	assert.Equal(t, api.Header{Version: 1, Op: api.OpRaise, Flags: 0x0102, ID: 0xdeadbeef, Length: 2}, h)
	binary.BigEndian.PutUint32(b[12:], api.MaxBody+1)
	_, err = api.ParseHeader(b)
	assert.ErrorIs(t, err, api.ErrFrameTooLarge)
	b[0] = 'X'
	_, err = api.ParseHeader(b)
	assert.ErrorIs(t, err, api.ErrBadMagic)
}

// TestWatchLimitPerConnection: watches do not take the in-flight slots (70
// of them must not stall the connection's reader), and past 16 on one
// connection the server answers busy and keeps the connection.
func TestWatchLimitPerConnection(t *testing.T) {
	ts := startServer(t, func(s *api.Server) { s.MaxInFlight = 4 })
	c := dialRaw(t, ts.Path)
	for i := range 70 {
		c.send(api.OpWatch, uint32(i), `{}`)
	}
	acks, busy := 0, 0
	for range 70 {
		h, b := c.read()
		if h.Flags&api.FlagError != 0 {
			var e api.Error
			require.NoError(t, json.Unmarshal(b, &e))
			require.Equal(t, api.CodeBusy, e.Code)
			busy++
			continue
		}
		require.Equal(t, api.OpWatch|api.OpReply, h.Op)
		acks++
	}
	assert.Equal(t, 16, acks)
	assert.Equal(t, 54, busy)
	c.do(api.OpStatus, 1000, ``, nil)
	assert.Equal(t, 16, ts.Fake.WatcherCount())
	c.nc.Close()
	require.Eventually(t, func() bool { return ts.Fake.WatcherCount() == 0 }, 5*time.Second, time.Millisecond)
}

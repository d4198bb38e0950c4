package api_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/api"
)

func datagram(op api.Op, body string) []byte {
	return api.AppendFrame(nil, api.Header{Version: api.Version, Op: op, ID: 9}, []byte(body))
}

func TestParseDatagram(t *testing.T) {
	h, req, ok, err := api.ParseDatagram(datagram(api.OpReport, `{"name":"svc/a","cause":"disk","severity":"major"}`))
	require.True(t, ok)
	require.NoError(t, err)
	require.Equal(t, uint32(9), h.ID)
	require.Equal(t, &api.ReportRequest{Name: "svc/a", Cause: "disk", Severity: api.SevMajor}, req)
	_, req, _, err = api.ParseDatagram(datagram(api.OpSetState, `{"name":"svc/a","state":"down"}`))
	require.NoError(t, err)
	require.Equal(t, &api.SetStateRequest{Name: "svc/a", State: api.StateDown}, req)

	h, req, ok, err = api.ParseDatagram(api.AppendPing(nil, 5))
	require.True(t, ok)
	require.NoError(t, err)
	require.Nil(t, req, "a ping")
	require.Equal(t, api.OpStatus, h.Op)
	_, _, _, err = api.ParseDatagram(datagram(api.OpStatus, `{}`))
	require.ErrorIs(t, err, api.ErrUnknownOp, "a status with a body is no ping")

	for _, b := range [][]byte{nil, []byte("short"), append([]byte("XXXX"), make([]byte, 20)...)} {
		_, _, ok, _ := api.ParseDatagram(b)
		require.False(t, ok, "%q: nothing to answer", b)
	}
	for _, c := range []struct {
		b    []byte
		want error
	}{
		{datagram(api.OpGet, `{"name":"a"}`), api.ErrUnknownOp},
		{datagram(api.OpWatch, `{}`), api.ErrUnknownOp},
		{datagram(api.OpRaise, `{"name":"a"}`), api.ErrBadRequest}, // no cause
		{datagram(api.OpClear, `{"name":"a","cause":"c","x":1}`), api.ErrBadRequest},
		{datagram(api.OpReport, `{"name":""}`), api.ErrBadRequest},
		{datagram(api.OpReport, `[`), api.ErrBadRequest},
		{datagram(api.OpReport, `{"name":"a"}`)[:api.HeaderSize+3], api.ErrBadRequest}, // cut
		{api.AppendFrame(nil, api.Header{Version: 2, Op: api.OpReport}, []byte(`{"name":"a"}`)), api.ErrUnsupportedVersion},
	} {
		_, _, ok, err := api.ParseDatagram(c.b)
		require.True(t, ok)
		require.ErrorIs(t, err, c.want, "%q", c.b)
	}
}

func TestAppendReply(t *testing.T) {
	h := api.Header{Version: api.Version, Op: api.OpRaise, ID: 3}
	b := api.AppendReply(nil, h, &api.ReportResult{Seq: 4, Verdict: "raise"}, nil)
	rh, err := api.ParseHeader(b)
	require.NoError(t, err)
	require.Equal(t, api.OpRaise|api.OpReply, rh.Op)
	require.Equal(t, uint32(3), rh.ID)
	require.Zero(t, rh.Flags)
	var r api.ReportResult
	require.NoError(t, json.Unmarshal(b[api.HeaderSize:], &r))
	require.Equal(t, uint64(4), r.Seq)

	b = api.AppendReply(nil, h, nil, api.Errorf(api.ErrNotFound, "no %q", "x"))
	rh, err = api.ParseHeader(b)
	require.NoError(t, err)
	require.Equal(t, api.FlagError, rh.Flags)
	var e api.Error
	require.NoError(t, json.Unmarshal(b[api.HeaderSize:], &e))
	require.ErrorIs(t, &e, api.ErrNotFound)
}

// The datagram socket admits as the stream does, but a caller refused on
// uid and gid is sent to the stream (its supplementary groups may allow
// it), and the write rate is the uid's on both.
func TestAdmitDatagram(t *testing.T) {
	auth, err := api.NewAuthorizer([]string{"4242"}, []string{"4343"})
	require.NoError(t, err)
	s := &api.Server{Authorizer: auth, Limits: api.Limits{WriteRate: 1, WriteBurst: 2}}
	now := time.Now()
	require.NoError(t, s.AdmitDatagram(api.Cred{UID: 4242, GID: 1}, api.OpReport, now))
	require.NoError(t, s.AdmitDatagram(api.Cred{UID: 1000, GID: 4343}, api.OpReport, now))
	err = s.AdmitDatagram(api.Cred{UID: 1000, GID: 1000}, api.OpReport, now)
	require.ErrorIs(t, err, api.ErrUseStream)
	err = s.AdmitDatagram(api.Cred{UID: 4242, GID: 1}, api.OpReport, now)
	require.NoError(t, err)
	err = s.AdmitDatagram(api.Cred{UID: 4242, GID: 1}, api.OpReport, now)
	var e *api.Error
	require.True(t, errors.As(err, &e))
	require.Equal(t, api.CodeThrottled, e.Code, "the uid's burst of 2 is spent")
	require.Positive(t, e.RetryAfterMs)
}

// The socket file has the mode it is given from the start, carries the
// sender's credentials, and replaces a stale socket but not another file.
func TestListenDatagram(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock.dgram")
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	_, err := api.ListenDatagram(path, 0o640, -1, -1)
	require.Error(t, err, "not a socket: kept")
	require.NoError(t, os.Remove(path))

	fd, err := api.ListenDatagram(path, 0o640, -1, -1)
	require.NoError(t, err)
	unix.Close(fd) // the file stays: stale
	fd, err = api.ListenDatagram(path, 0o640, -1, -1)
	require.NoError(t, err, "a stale socket is replaced")
	defer unix.Close(fd)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), fi.Mode().Perm())

	cl, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	require.NoError(t, err)
	defer unix.Close(cl)
	require.NoError(t, unix.Sendto(cl, []byte("x"), 0, &unix.SockaddrUnix{Name: path}))
	buf, oob := make([]byte, 16), make([]byte, api.CredSpace)
	var n, oobn int
	require.Eventually(t, func() bool {
		n, oobn, _, _, err = unix.Recvmsg(fd, buf, oob, unix.MSG_DONTWAIT)
		return err == nil
	}, 5*time.Second, time.Millisecond)
	require.Equal(t, 1, n)
	cred, ok := api.ReadCred(oob[:oobn])
	require.True(t, ok)
	require.Equal(t, int32(os.Getpid()), cred.PID)
	require.Equal(t, uint32(os.Geteuid()), cred.UID)
	_, ok = api.ReadCred(oob[:3])
	require.False(t, ok)
	odd := make([]byte, 1+oobn)
	copy(odd[1:], oob[:oobn])
	moved, ok := api.ReadCred(odd[1:])
	require.True(t, ok, "at an odd address")
	require.Equal(t, cred, moved)
}

// FuzzParseDatagram: any datagram is either not a request (nothing to
// answer), an error reply, or a valid fault write; never a panic.
func FuzzParseDatagram(f *testing.F) {
	f.Add(datagram(api.OpReport, `{"name":"svc/a","cause":"c"}`))
	f.Add(datagram(api.OpSetState, `{"name":"a","state":"up"}`))
	f.Add(datagram(api.OpClear, `{"name":"a","cause":"\u00e9"}`))
	f.Add([]byte("FMAP"))
	f.Add(api.AppendPing(nil, 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, req, ok, err := api.ParseDatagram(b)
		if !ok {
			return
		}
		if err != nil {
			_ = api.AppendReply(nil, h, nil, err)
			return
		}
		if req == nil && (h.Op != api.OpStatus || len(b) != api.HeaderSize) {
			t.Fatalf("a ping that is not one: %x", b)
		}
		if req != nil && !api.IsDatagramOp(h.Op) {
			t.Fatalf("accepted op %v with %T", h.Op, req)
		}
	})
}

package api_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/api/apitest"
)

// memConn is a net.Conn whose input is a fixed byte string and whose output
// is collected in memory.
type memConn struct {
	in  *bytes.Reader
	mu  sync.Mutex
	out bytes.Buffer
}

func (c *memConn) Read(b []byte) (int, error) { return c.in.Read(b) }
func (c *memConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(b)
}
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.UnixAddr{Name: "mem", Net: "unix"} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.UnixAddr{Name: "mem", Net: "unix"} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

var knownCodes = map[string]bool{
	api.CodeBadRequest: true, api.CodePermission: true, api.CodeNotFound: true,
	api.CodeCollision: true, api.CodeNoMaster: true, api.CodeTimeout: true,
	api.CodeUnsupported: true, api.CodeUnavailable: true, api.CodeUnsupportedVersion: true,
	api.CodeUnknownOp: true, api.CodeFrameTooLarge: true, api.CodeBadMagic: true,
	api.CodeBusy: true, api.CodeInternal: true, api.CodeLimit: true, api.CodeRefused: true, api.CodeThrottled: true,
}

// FuzzServerFrame feeds arbitrary bytes to the server as one connection's
// input, through the real frame reader, request decoder and a fake handler,
// and checks that every reply is a well-formed frame and that every complete
// request frame gets exactly one final reply (plus one error reply for a
// frame that breaks the framing).
func FuzzServerFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, input []byte) {
		// What the server must answer: the complete frames up to the first
		// framing error, whose request IDs each get one final reply.
		want := map[uint32]int{}
		r := bytes.NewReader(input)
		for {
			h, _, err := api.ReadFrame(r)
			if err == nil {
				want[h.ID]++
				continue
			}
			var ae *api.Error
			if errors.As(err, &ae) {
				want[h.ID]++ // framing error: one error reply, then close
			}
			break
		}

		s := &api.Server{Handler: apitest.NewHandler()}
		c := &memConn{in: bytes.NewReader(input)}
		api.ServeConn(s, c, api.Cred{PID: 1, UID: 0, GID: 0})

		got := map[uint32]int{}
		out := bytes.NewReader(c.out.Bytes())
		for {
			h, body, err := api.ReadFrame(out)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("malformed reply stream: %v", err)
			}
			if h.Version != api.Version {
				t.Fatalf("reply version %d", h.Version)
			}
			if h.Op&api.OpReply == 0 {
				t.Fatalf("reply op %#x without the reply bit", uint8(h.Op))
			}
			if h.Flags&^(api.FlagError|api.FlagMore) != 0 {
				t.Fatalf("reply with unknown flags %#x", h.Flags)
			}
			if !json.Valid(body) {
				t.Fatalf("reply body is not JSON: %q", body)
			}
			switch {
			case h.Flags&api.FlagError != 0:
				if h.Flags&api.FlagMore != 0 {
					t.Fatalf("error reply with FlagMore")
				}
				var e api.Error
				if err := json.Unmarshal(body, &e); err != nil || !knownCodes[e.Code] {
					t.Fatalf("bad error body %q", body)
				}
			case h.Op == api.OpEvent|api.OpReply && h.Flags&api.FlagMore != 0:
				var ev api.Event
				if err := json.Unmarshal(body, &ev); err != nil || ev.Seq == 0 || ev.Entity.Name == "" {
					t.Fatalf("bad event %q", body)
				}
			}
			if h.Flags&api.FlagMore == 0 {
				got[h.ID]++
			}
		}
		if len(got) != len(want) {
			t.Fatalf("final replies per request ID: got %v, want %v", got, want)
		}
		for id, n := range want {
			if got[id] != n {
				t.Fatalf("final replies per request ID: got %v, want %v", got, want)
			}
		}
	})
}

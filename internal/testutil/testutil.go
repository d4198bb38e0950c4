// Package testutil holds the helpers that fmagent's tests in several
// packages need, once: a buffer a logger and a test may share, waiting for a
// condition, a context bound to the test, free ports and multicast groups
// of a test's own, an agent's configuration on lo.
//
// Of this module it imports only config (and internal/freeport), so the tests of every package but
// config and the pure packages config imports may use it (those may from
// an external _test package). agenttest, beside it, starts agents and fake
// agents; package agent's own tests cannot import that one.
package testutil

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fmagent/fmagent/internal/freeport"
)

// SyncBuffer is a bytes.Buffer that a writer (a logger, a child process's
// output) and the test reading it may use at the same time.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Lines returns what was written so far as lines, without the last
// newline; none when nothing was written.
func (s *SyncBuffer) Lines() []string {
	out := strings.TrimRight(s.String(), "\n")
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

// JSONLines returns the JSON log lines (slog's JSON handler) whose "msg"
// contains substr, decoded. Lines that are not JSON objects with a string
// "msg" are passed over.
func (s *SyncBuffer) JSONLines(substr string) []map[string]any {
	var out []map[string]any
	for _, ln := range s.Lines() {
		var m map[string]any
		if json.Unmarshal([]byte(ln), &m) != nil {
			continue
		}
		if msg, ok := m["msg"].(string); ok && strings.Contains(msg, substr) {
			out = append(out, m)
		}
	}
	return out
}

// PollInterval is how often WaitFor asks again.
const PollInterval = 20 * time.Millisecond

// WaitFor polls cond until it is true, and fails the test, saying what it
// waited for, if that takes longer than d.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Within(d, cond) {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// Within polls cond until it is true or d has passed, and says which.
// cond is always asked at least once, and once more after the deadline.
func Within(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return cond()
		}
		time.Sleep(PollInterval)
	}
	return true
}

// Context returns a context that ends after d or when the test ends,
// whichever is first.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// FreeUDPPort returns a UDP port that was free on 127.0.0.1 a moment ago
// (and so, very likely, for a multicast group on lo too).
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free UDP port: %v", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// FreeTCPPort returns a TCP port that was free on 127.0.0.1 a moment ago,
// below the ephemeral range (freeport.TCP says why).
func FreeTCPPort(t testing.TB) int {
	t.Helper()
	p, err := freeport.TCP("127.0.0.1")
	if err != nil {
		t.Fatalf("finding a free TCP port: %v", err)
	}
	return p
}

// FreeTCPAddr is 127.0.0.1 at FreeTCPPort (for a metrics listener).
func FreeTCPAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreeTCPPort(t)))
}

// MulticastNet picks two multicast groups (one per network) and a port for
// one test, so that test binaries running at the same time (other
// packages' tests, other developers') never hear each other's datagrams.
// The groups are 239.255.x.y and 239.255.x+1.y: administratively scoped,
// and distinct from the defaults (239.192.77.1 and .2).
func MulticastNet(t testing.TB) (a, b netip.Addr, port int) {
	t.Helper()
	x := byte(rand.IntN(200) + 20)
	y := byte(rand.IntN(250) + 1)
	a = netip.AddrFrom4([4]byte{239, 255, x, y})
	b = netip.AddrFrom4([4]byte{239, 255, x + 1, y})
	return a, b, FreeUDPPort(t)
}

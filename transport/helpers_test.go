package transport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/internal/testutil"
	"github.com/fmagent/fmagent/wire"
)

// testGroups picks two multicast groups and a group port for one test, so
// that concurrently running test binaries (other packages' tests may use the
// default groups and port) never see each other's datagrams.
func testGroups(t testing.TB) (a, b netip.Addr, port int) {
	t.Helper()
	return testutil.MulticastNet(t)
}

func loConfig(a, b netip.Addr, port int) Config {
	return Config{
		Port: port,
		Nets: [wire.NumNets]NetConfig{
			{Interface: "lo", Group: a, Loopback: true},
			{Interface: "lo", Group: b, Loopback: true},
		},
	}
}

// openLo opens a transport on lo. If joining a group fails and lo lacks the
// MULTICAST flag, it turns the flag on when running as root and tries again;
// otherwise the failure says what to do.
func openLo(t *testing.T, cfg Config) *Transport {
	t.Helper()
	tr, err := Open(cfg)
	if err != nil && strings.Contains(err.Error(), "joining") {
		lo, lerr := net.InterfaceByName("lo")
		require.NoError(t, lerr)
		if lo.Flags&net.FlagMulticast == 0 && os.Geteuid() == 0 {
			out, cerr := exec.Command("ip", "link", "set", "lo", "multicast", "on").CombinedOutput()
			t.Logf("joining a group on lo failed (%v); lo lacks MULTICAST, ran `ip link set lo multicast on`: %v %s", err, cerr, out)
			tr, err = Open(cfg)
		}
		if err != nil {
			t.Fatalf("multicast on lo does not work here: %v (lo flags: %v). Multicast tests need the MULTICAST flag on lo: run `ip link set lo multicast on` as root", err, lo.Flags)
		}
	}
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close() })
	require.NoError(t, tr.SetReadDeadline(time.Now().Add(5*time.Second)))
	return tr
}

func loIndex(t *testing.T) int {
	t.Helper()
	lo, err := net.InterfaceByName("lo")
	require.NoError(t, err)
	return lo.Index
}

func newMsgs(n, size int) []Message {
	msgs := make([]Message, n)
	for i := range msgs {
		msgs[i].Buf = make([]byte, size)
	}
	return msgs
}

// readN reads exactly n datagrams from network nt (group or unicast) and
// returns their payloads and the number of ReadBatch calls it took.
func readN(t *testing.T, tr *Transport, nt wire.Net, unicast bool, n int) ([]Message, int) {
	t.Helper()
	var got []Message
	calls := 0
	msgs := newMsgs(MaxBatch, wire.MaxDatagram)
	for len(got) < n {
		var k int
		var err error
		if unicast {
			k, err = tr.ReadUnicastBatch(nt, msgs[:min(len(msgs), n-len(got))])
		} else {
			k, err = tr.ReadBatch(nt, msgs[:min(len(msgs), n-len(got))])
		}
		require.NoError(t, err, "after %d of %d datagrams", len(got), n)
		calls++
		for _, m := range msgs[:k] {
			c := m
			c.Buf = append([]byte(nil), m.Buf[:m.N]...)
			got = append(got, c)
		}
	}
	return got, calls
}

// expectNothing checks that network nt's group socket has nothing for d.
func expectNothing(t *testing.T, tr *Transport, nt wire.Net, unicast bool, d time.Duration) {
	t.Helper()
	require.NoError(t, tr.SetReadDeadline(time.Now().Add(d)))
	defer tr.SetReadDeadline(time.Now().Add(5 * time.Second))
	msgs := newMsgs(4, wire.MaxDatagram)
	var k int
	var err error
	if unicast {
		k, err = tr.ReadUnicastBatch(nt, msgs)
	} else {
		k, err = tr.ReadBatch(nt, msgs)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("expected no datagram on net %d, got %d (%q), err %v", nt, k, fmt.Sprint(string(msgs[0].Buf[:msgs[0].N])), err)
	}
}

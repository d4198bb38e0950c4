package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"testing"

	"github.com/stretchr/testify/require"
)

// The heartbeat and update paths run for every packet of every peer; they
// must not allocate. These tests pin that down (run them with -run Alloc).

const allocRuns = 200

func TestAllocHMACSum(t *testing.T) {
	// The premise of Codec: crypto/hmac restores its keyed states without
	// allocating once the first Reset saved them, and Sum appends into a
	// buffer with capacity.
	mac := hmac.New(sha256.New, testKey)
	mac.Reset()
	msg := make([]byte, MaxDatagram)
	var sum [sha256.Size]byte
	allocs := testing.AllocsPerRun(allocRuns, func() {
		mac.Reset()
		mac.Write(msg)
		mac.Sum(sum[:0])
	})
	require.Zero(t, allocs)
}

func TestAllocHeartbeatEncode(t *testing.T) {
	c := newTestCodec()
	h := testHeader()
	m := fullHeartbeat()
	buf := make([]byte, 0, MaxDatagram)
	allocs := testing.AllocsPerRun(allocRuns, func() {
		h.Seq++
		if _, err := c.AppendHeartbeat(buf[:0], &h, m); err != nil {
			panic(err)
		}
	})
	require.Zero(t, allocs)
}

func TestAllocHeartbeatOpenDecode(t *testing.T) {
	c := newTestCodec()
	h := testHeader()
	pkt, err := c.AppendHeartbeat(nil, &h, fullHeartbeat())
	require.NoError(t, err)
	var m Heartbeat
	allocs := testing.AllocsPerRun(allocRuns, func() {
		_, body, err := c.Open(pkt)
		if err != nil {
			panic(err)
		}
		if err := DecodeHeartbeat(body, &m); err != nil {
			panic(err)
		}
	})
	require.Zero(t, allocs)
}

func TestAllocUpdateEncode(t *testing.T) {
	c := newTestCodec()
	h := testHeader()
	cs := testChanges(40, 60, 20)
	buf := make([]byte, 0, MaxDatagram)
	allocs := testing.AllocsPerRun(allocRuns, func() {
		for rest := cs; len(rest) > 0; {
			h.Seq++
			_, n, err := c.AppendUpdate(buf[:0], &h, rest)
			if err != nil {
				panic(err)
			}
			rest = rest[n:]
		}
	})
	require.Zero(t, allocs)
}

func TestAllocUpdateOpenDecode(t *testing.T) {
	c := newTestCodec()
	h := testHeader()
	pkt, n, err := c.AppendUpdate(nil, &h, testChanges(40, 60, 20))
	require.NoError(t, err)
	require.Greater(t, n, 5)
	var m Update
	allocs := testing.AllocsPerRun(allocRuns, func() {
		_, body, err := c.Open(pkt)
		if err != nil {
			panic(err)
		}
		if err := DecodeUpdate(body, &m); err != nil {
			panic(err)
		}
	})
	require.Zero(t, allocs)
}

func TestAllocReplayAdmit(t *testing.T) {
	var w ReplayWindow
	var seq uint64
	allocs := testing.AllocsPerRun(allocRuns, func() {
		seq += 3
		if err := w.Admit(7, seq); err != nil {
			panic(err)
		}
		_ = w.Admit(7, seq-1)
		_ = w.Admit(7, seq) // duplicate: rejected, still no allocation
		_ = w.Admit(6, seq) // old incarnation
	})
	require.Zero(t, allocs)
}

// Rejecting garbage must not allocate either: a flood of bad packets should
// cost CPU only, not garbage-collector work.
func TestAllocReject(t *testing.T) {
	c := newTestCodec()
	h := testHeader()
	pkt, err := c.AppendHeartbeat(nil, &h, fullHeartbeat())
	require.NoError(t, err)
	forged := append([]byte(nil), pkt...)
	forged[HeaderSize] ^= 1
	var m Update
	empty := []byte{0}
	allocs := testing.AllocsPerRun(allocRuns, func() {
		if _, _, err := c.Open(forged); err == nil {
			panic("forged packet opened")
		}
		if _, _, err := c.Open(pkt[:20]); err == nil {
			panic("short packet opened")
		}
		if err := DecodeUpdate(empty, &m); err == nil {
			panic("empty update decoded")
		}
	})
	require.Zero(t, allocs)
}

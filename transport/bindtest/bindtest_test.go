package bindtest

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/transport"
	"github.com/fmagent/fmagent/wire"
)

func msgs(k int) []transport.Message {
	m := make([]transport.Message, k)
	for i := range m {
		m[i].Buf = make([]byte, wire.MaxDatagram)
	}
	return m
}

// The real transport's rules: group datagrams reach every other node on
// that network and never the sender, unicast reaches one node's unicast
// queue, the source is the sender's LocalAddr, priority carries the TOS.
func TestGroupAndUnicast(t *testing.T) {
	nw := NewNetwork()
	b1, b2, b3 := nw.Open(1), nw.Open(2), nw.Open(3)
	s1 := b1.NewSender()
	require.NoError(t, s1.Send(wire.NetB, []byte("hb"), true))
	m := msgs(4)
	for _, b := range []*Bind{b2, b3} {
		k, err := b.TryReadBatch(wire.NetB, false, m)
		require.NoError(t, err)
		require.Equal(t, 1, k)
		assert.Equal(t, "hb", string(m[0].Buf[:m[0].N]))
		assert.Equal(t, b1.LocalAddr(wire.NetB), m[0].From)
		assert.Equal(t, wire.NetB, m[0].Net)
		assert.False(t, m[0].Unicast)
		assert.Equal(t, uint8(transport.PriorityTOS), m[0].TOS)
		k, _ = b.TryReadBatch(wire.NetA, false, m)
		assert.Zero(t, k, "not on the other network")
	}
	k, _ := b1.TryReadBatch(wire.NetB, false, m)
	assert.Zero(t, k, "never to the sender")

	n, err := b2.NewSender().WriteBatchTo(wire.NetA, b3.LocalAddr(wire.NetA), [][]byte{[]byte("s1"), []byte("s2")}, false)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	k, _ = b3.TryReadBatch(wire.NetA, true, m)
	require.Equal(t, 2, k)
	assert.Equal(t, "s2", string(m[1].Buf[:m[1].N]))
	assert.True(t, m[1].Unicast)
	k, _ = b1.TryReadBatch(wire.NetA, true, m)
	assert.Zero(t, k, "unicast reaches one node")
	assert.Equal(t, uint64(3), b1.Stats().Nets[wire.NetB].SentPackets+b2.Stats().Nets[wire.NetA].SentPackets)
	assert.Equal(t, uint64(4), nw.Delivered())
}

func TestCutAndClose(t *testing.T) {
	nw := NewNetwork()
	b1, b2 := nw.Open(1), nw.Open(2)
	nw.Cut(wire.NetA, 2, true)
	require.NoError(t, b1.NewSender().Send(wire.NetA, []byte("lost"), false))
	require.NoError(t, b1.NewSender().Send(wire.NetB, []byte("heard"), false))
	m := msgs(2)
	k, _ := b2.TryReadBatch(wire.NetA, false, m)
	assert.Zero(t, k, "node 2's link on a is cut")
	k, _ = b2.TryReadBatch(wire.NetB, false, m)
	assert.Equal(t, 1, k)
	nw.Cut(wire.NetA, 2, false)
	require.NoError(t, b1.NewSender().Send(wire.NetA, []byte("again"), false))
	k, _ = b2.TryReadBatch(wire.NetA, false, m)
	assert.Equal(t, 1, k, "restored")

	require.NoError(t, b2.Close())
	_, err := b2.TryReadBatch(wire.NetA, false, m)
	assert.True(t, errors.Is(err, net.ErrClosed))
	assert.True(t, errors.Is(b2.NewSender().Send(wire.NetA, []byte("x"), false), net.ErrClosed))
}

// The waiter: readable sockets, the deadline, Wake and Stop, as the real
// one reports them.
func TestWaiter(t *testing.T) {
	nw := NewNetwork()
	b1, b2 := nw.Open(1), nw.Open(2)
	w, err := b2.NewWaiter()
	require.NoError(t, err)
	defer w.Close()

	start := time.Now()
	ev, err := w.Wait(start.Add(20 * time.Millisecond))
	require.NoError(t, err)
	assert.Equal(t, transport.EvTimer, ev)
	assert.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond)

	go func() {
		time.Sleep(10 * time.Millisecond)
		_ = b1.NewSender().SendTo(wire.NetB, b2.LocalAddr(wire.NetB), []byte("nack"), false)
	}()
	ev, err = w.Wait(time.Now().Add(10 * time.Second))
	require.NoError(t, err)
	assert.Equal(t, transport.Readable(wire.NetB, true), ev)

	k, _ := b2.TryReadBatch(wire.NetB, true, msgs(1))
	require.Equal(t, 1, k)
	go func() {
		time.Sleep(10 * time.Millisecond)
		w.Wake()
	}()
	ev, err = w.Wait(time.Now().Add(10 * time.Second))
	require.NoError(t, err)
	assert.Equal(t, transport.EvWoken, ev)

	go func() {
		time.Sleep(10 * time.Millisecond)
		w.Stop()
	}()
	_, err = w.Wait(time.Now().Add(10 * time.Second))
	assert.ErrorIs(t, err, transport.ErrStopped)
	_, err = w.Wait(time.Now().Add(10 * time.Second))
	assert.ErrorIs(t, err, transport.ErrStopped, "and every later Wait")
}

func TestTruncatedAndFull(t *testing.T) {
	nw := NewNetwork()
	b1, b2 := nw.Open(1), nw.Open(2)
	s := b1.NewSender()
	require.NoError(t, s.Send(wire.NetA, make([]byte, 100), false))
	small := []transport.Message{{Buf: make([]byte, 10)}}
	k, _ := b2.TryReadBatch(wire.NetA, false, small)
	assert.Zero(t, k)
	assert.Equal(t, uint64(1), b2.Stats().Nets[wire.NetA].DroppedTruncated)
	assert.ErrorIs(t, s.Send(wire.NetA, make([]byte, wire.MaxDatagram+1), false), transport.ErrTooLarge)

	for range QueueLen + 5 {
		require.NoError(t, s.Send(wire.NetA, []byte("flood"), false))
	}
	assert.Equal(t, uint64(5), b2.Drops(), "a full queue drops and counts")
}

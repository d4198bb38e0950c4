package transport

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/wire"
)

// The waiter wakes for a deadline (absolute: not before it), for a datagram
// on the right socket, for Wake, and for good after Stop.
func TestWaiter(t *testing.T) {
	a, b, port := testGroups(t)
	t1 := openLo(t, loConfig(a, b, port))
	t2 := openLo(t, loConfig(a, b, port))
	w, err := t2.NewWaiter()
	require.NoError(t, err)
	defer w.Close()
	msgs := newMsgs(4, wire.MaxDatagram)

	// The deadline.
	at := time.Now().Add(20 * time.Millisecond)
	ev, err := w.Wait(at)
	require.NoError(t, err)
	require.NotZero(t, ev&EvTimer, "events %b", ev)
	require.False(t, time.Now().Before(at), "woke before the deadline")

	// A datagram on network b's group socket, read without waiting.
	require.NoError(t, t1.Send(wire.NetB, []byte("hello"), false))
	ev, err = w.Wait(time.Now().Add(5 * time.Second))
	require.NoError(t, err)
	require.NotZero(t, ev&Readable(wire.NetB, false), "events %b", ev)
	require.Zero(t, ev&EvTimer)
	n, err := t2.TryReadBatch(wire.NetB, false, msgs)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, "hello", string(msgs[0].Buf[:msgs[0].N]))
	n, err = t2.TryReadBatch(wire.NetB, false, msgs)
	require.NoError(t, err)
	require.Zero(t, n, "nothing queued: TryReadBatch returns at once")

	// Wake from another goroutine.
	go func() {
		time.Sleep(10 * time.Millisecond)
		w.Wake()
	}()
	ev, err = w.Wait(time.Now().Add(5 * time.Second))
	require.NoError(t, err)
	require.NotZero(t, ev&EvWoken, "events %b", ev)

	// Stop ends this and every later Wait.
	go func() {
		time.Sleep(10 * time.Millisecond)
		w.Stop()
	}()
	_, err = w.Wait(time.Now().Add(5 * time.Second))
	require.True(t, errors.Is(err, ErrStopped), "%v", err)
	_, err = w.Wait(time.Now().Add(5 * time.Second))
	require.True(t, errors.Is(err, ErrStopped), "%v", err)
}

// Waiting and reading without waiting allocate nothing.
func TestWaiterAllocs(t *testing.T) {
	a, b, port := testGroups(t)
	t1 := openLo(t, loConfig(a, b, port))
	t2 := openLo(t, loConfig(a, b, port))
	w, err := t2.NewWaiter()
	require.NoError(t, err)
	defer w.Close()
	msgs := newMsgs(4, wire.MaxDatagram)
	pkt := make([]byte, 100)
	f := func() {
		if err := t1.Send(wire.NetA, pkt, false); err != nil {
			panic(err)
		}
		for got := 0; got == 0; {
			if _, err := w.Wait(time.Now().Add(time.Second)); err != nil {
				panic(err)
			}
			n, err := t2.TryReadBatch(wire.NetA, false, msgs)
			if err != nil {
				panic(err)
			}
			got += n
		}
		w.Wake()
		if _, err := w.Wait(time.Now().Add(time.Second)); err != nil {
			panic(err)
		}
	}
	f()
	if n := testing.AllocsPerRun(100, f); n != 0 {
		t.Errorf("Waiter.Wait + TryReadBatch + Wake: %v allocations per run, want 0", n)
	}
}

package transport

import (
	"errors"
	"runtime"
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

	// The timer is not read after it fired: arming it again clears it,
	// so the next deadline is waited for, also when it is the same
	// deadline again (already past: it fires at once, once).
	ev, err = w.Wait(at)
	require.NoError(t, err)
	require.NotZero(t, ev&EvTimer, "events %b", ev)
	for range 3 {
		at = time.Now().Add(15 * time.Millisecond)
		ev, err = w.Wait(at)
		require.NoError(t, err)
		require.NotZero(t, ev&EvTimer, "events %b", ev)
		require.False(t, time.Now().Before(at), "woke before the deadline: the timer that fired before is still readable")
	}

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

// With HoldP the waiting goroutine keeps its P through the system call; a
// stop-the-world (here a forced GC) must still get it: the preemption
// signal interrupts the wait, which returns with no event so the goroutine
// reaches a safe point. Without that the GC would wait for the deadline.
func TestWaiterHoldPLetsTheWorldStop(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Fatalf("HoldP needs GOMAXPROCS >= 2, have %d", runtime.GOMAXPROCS(0))
	}
	a, b, port := testGroups(t)
	t1 := openLo(t, loConfig(a, b, port))
	w, err := t1.NewWaiter()
	require.NoError(t, err)
	defer w.Close()
	w.HoldP = true
	deadline := time.Now().Add(10 * time.Second)
	type result struct {
		spurious, woken int
		err             error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var r result
		for {
			ev, err := w.Wait(deadline)
			if err != nil {
				r.err = err
				break
			}
			if ev == 0 {
				r.spurious++ // a signal: Go's preemption
			}
			if ev&EvWoken != 0 {
				r.woken++
				break
			}
		}
		res <- r
	}()
	time.Sleep(20 * time.Millisecond) // the goroutine is in its wait
	for range 3 {
		start := time.Now()
		runtime.GC()
		require.Less(t, time.Since(start), 2*time.Second, "a GC waited for the held P")
	}
	w.Wake()
	select {
	case r := <-res:
		require.NoError(t, r.err)
		require.Equal(t, 1, r.woken)
		t.Logf("interrupted %d times by the runtime's signals before the wake", r.spurious)
	case <-time.After(5 * time.Second):
		t.Fatal("Wake did not end the held wait")
	}
}

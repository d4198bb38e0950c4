package ring_test

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fmagent/fmagent/ring"
)

func region(capacity, rec int) []byte {
	b := make([]uint64, (ring.BroadcastSize(capacity, rec)+7)/8) // 8-aligned
	return unsafeBytes(b)
}

func rec(pos uint64, n int) []byte {
	b := make([]byte, n)
	for k := 0; k < n; k += 8 {
		binary.LittleEndian.PutUint64(b[k:], pos*1000+uint64(k))
	}
	return b
}

func checkRec(t *testing.T, b []byte, pos uint64) {
	t.Helper()
	for k := 0; k < len(b); k += 8 {
		if v := binary.LittleEndian.Uint64(b[k:]); v != pos*1000+uint64(k) {
			t.Fatalf("record %d word %d = %d: torn", pos, k/8, v)
		}
	}
}

func TestBroadcastBasic(t *testing.T) {
	mem := region(8, 24)
	w, err := ring.NewBroadcaster(mem, 8, 24)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ring.NewReceiver(mem)
	if err != nil {
		t.Fatal(err)
	}
	if r.RecordSize() != 24 || r.Capacity() != 8 {
		t.Fatal("geometry")
	}
	dst := make([]byte, 24)
	if _, _, ok := r.Next(dst); ok {
		t.Fatal("record in an empty ring")
	}
	for i := uint64(0); i < 5; i++ {
		if p := w.Publish(rec(i, 24)); p != i {
			t.Fatalf("pos %d", p)
		}
	}
	for i := uint64(0); i < 5; i++ {
		pos, lost, ok := r.Next(dst)
		if !ok || lost != 0 || pos != i {
			t.Fatalf("next: %d %d %v", pos, lost, ok)
		}
		checkRec(t, dst, i)
	}
	// Lapped: 20 more records into 8 slots.
	for i := uint64(5); i < 25; i++ {
		w.Publish(rec(i, 24))
	}
	pos, lost, ok := r.Next(dst)
	if !ok || lost == 0 || pos != 5+lost {
		t.Fatalf("after lap: pos %d lost %d ok %v", pos, lost, ok)
	}
	checkRec(t, dst, pos)
	n := 1
	for {
		p, l, ok := r.Next(dst)
		if l != 0 {
			t.Fatalf("lost again %d", l)
		}
		if !ok {
			break
		}
		checkRec(t, dst, p)
		n++
	}
	if uint64(n)+lost != 20 {
		t.Fatalf("got %d + lost %d != 20", n, lost)
	}
	// A new receiver starts at the tail; SeekOldest goes back a ring.
	r2, _ := ring.NewReceiver(mem)
	if _, _, ok := r2.Next(dst); ok {
		t.Fatal("new receiver saw an old record")
	}
	r2.SeekOldest()
	if p, _, ok := r2.Next(dst); !ok || p != 25-8 {
		t.Fatalf("oldest %d", p)
	}
}

func TestBroadcastErrors(t *testing.T) {
	mem := region(8, 24)
	for _, g := range [][2]int{{0, 24}, {6, 24}, {8, 0}, {8, 12}} {
		if _, err := ring.NewBroadcaster(mem, g[0], g[1]); !errors.Is(err, ring.ErrBadGeometry) {
			t.Errorf("%v: %v", g, err)
		}
	}
	if _, err := ring.NewBroadcaster(mem[:100], 8, 24); !errors.Is(err, ring.ErrShortRegion) {
		t.Error(err)
	}
	if _, err := ring.NewBroadcaster(mem[1:], 4, 8); !errors.Is(err, ring.ErrMisaligned) {
		t.Error(err)
	}
	if _, err := ring.NewReceiver(make([]byte, 256)); !errors.Is(err, ring.ErrBadGeometry) {
		t.Error(err)
	}
}

// TestBroadcastConcurrent: one writer, three receivers, under -race. Every
// record a receiver returns is whole, and positions advance by exactly
// 1 + lost.
func TestBroadcastConcurrent(t *testing.T) {
	const capacity, size, total = 64, 40, 200_000
	mem := region(capacity, size)
	w, err := ring.NewBroadcaster(mem, capacity, size)
	if err != nil {
		t.Fatal(err)
	}
	var done atomic.Bool
	var wg sync.WaitGroup
	for k := 0; k < 3; k++ {
		r, err := ring.NewReceiver(mem)
		if err != nil {
			t.Fatal(err)
		}
		r.SeekOldest()
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]byte, size)
			next, got, lostTotal := r.Cursor(), uint64(0), uint64(0)
			for {
				fin := done.Load()
				pos, lost, ok := r.Next(dst)
				lostTotal += lost
				if ok {
					if pos != next+lost {
						t.Errorf("pos %d, want %d+%d", pos, next, lost)
						return
					}
					for j := 0; j < size; j += 8 {
						if v := binary.LittleEndian.Uint64(dst[j:]); v != pos*1000+uint64(j) {
							t.Errorf("torn record %d", pos)
							return
						}
					}
					next = pos + 1
					got++
				} else {
					next += lost
					if fin && r.Cursor() == r.Tail() {
						break
					}
				}
			}
			if got+lostTotal != total {
				t.Errorf("got %d + lost %d != %d", got, lostTotal, total)
			}
		}()
	}
	b := make([]byte, size)
	for i := uint64(0); i < total; i++ {
		for j := 0; j < size; j += 8 {
			binary.LittleEndian.PutUint64(b[j:], i*1000+uint64(j))
		}
		w.Publish(b)
	}
	done.Store(true)
	wg.Wait()
}

func TestBroadcastAllocs(t *testing.T) {
	mem := region(16, 24)
	w, _ := ring.NewBroadcaster(mem, 16, 24)
	r, _ := ring.NewReceiver(mem)
	src, dst := rec(1, 24), make([]byte, 24)
	if n := testing.AllocsPerRun(1000, func() { w.Publish(src); r.Next(dst) }); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

func BenchmarkPublish(b *testing.B) {
	mem := region(4096, 24)
	w, _ := ring.NewBroadcaster(mem, 4096, 24)
	src := rec(1, 24)
	b.ReportAllocs()
	for b.Loop() {
		w.Publish(src)
	}
}

func BenchmarkPublishNext(b *testing.B) {
	mem := region(4096, 24)
	w, _ := ring.NewBroadcaster(mem, 4096, 24)
	r, _ := ring.NewReceiver(mem)
	src, dst := rec(1, 24), make([]byte, 24)
	b.ReportAllocs()
	for b.Loop() {
		w.Publish(src)
		r.Next(dst)
	}
}

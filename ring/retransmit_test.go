package ring_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/fmagent/fmagent/ring"
)

func TestRetransmit(t *testing.T) {
	r := ring.NewRetransmit(4, 16)
	if _, ok := r.Oldest(); ok {
		t.Fatal("empty ring has an oldest")
	}
	if _, ok := r.Get(1); ok {
		t.Fatal("get from empty")
	}
	if r.Range(1, 2, func(uint64, []byte) bool { return true }) {
		t.Fatal("range on empty is complete")
	}
	for s := uint64(100); s < 103; s++ {
		if err := r.Put(s, []byte(fmt.Sprint("change-", s))); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Put(105, nil); !errors.Is(err, ring.ErrNotNext) {
		t.Fatal(err)
	}
	if err := r.Put(103, make([]byte, 17)); !errors.Is(err, ring.ErrTooLarge) {
		t.Fatal(err)
	}
	if o, _ := r.Oldest(); o != 100 {
		t.Fatal(o)
	}
	if b, ok := r.Get(101); !ok || string(b) != "change-101" {
		t.Fatalf("%q", b)
	}
	// Fill and overwrite the oldest.
	buf := []byte("change-103")
	if err := r.Put(103, buf); err != nil {
		t.Fatal(err)
	}
	buf[0] = 'X' // Put copied
	if err := r.Put(104, []byte("change-104")); err != nil {
		t.Fatal(err)
	}
	o, _ := r.Oldest()
	n, _ := r.Newest()
	if o != 101 || n != 104 || r.Len() != 4 {
		t.Fatalf("oldest %d newest %d len %d", o, n, r.Len())
	}
	if _, ok := r.Get(100); ok {
		t.Fatal("100 not evicted")
	}
	if b, _ := r.Get(103); string(b) != "change-103" {
		t.Fatalf("%q", b)
	}
	var got []string
	complete := r.Range(99, 102, func(s uint64, b []byte) bool { got = append(got, string(b)); return true })
	if complete || len(got) != 2 || got[0] != "change-101" {
		t.Fatalf("%v %v", complete, got)
	}
	got = got[:0]
	complete = r.Range(102, 104, func(s uint64, b []byte) bool { got = append(got, string(b)); return s < 103 })
	if !complete || len(got) != 2 {
		t.Fatalf("%v %v", complete, got)
	}
	if r.Range(103, 110, func(uint64, []byte) bool { return true }) {
		t.Fatal("range past newest is complete")
	}
	r.Reset()
	if r.Len() != 0 || r.Put(7, []byte("x")) != nil {
		t.Fatal("reset")
	}
}

func TestRetransmitWrapsMany(t *testing.T) {
	r := ring.NewRetransmit(5, 8)
	for s := uint64(1); s <= 1000; s++ {
		if err := r.Put(s, []byte{byte(s), byte(s >> 8)}); err != nil {
			t.Fatal(err)
		}
		o, _ := r.Oldest()
		if want := max(1, int(s)-4); o != uint64(want) {
			t.Fatalf("after %d: oldest %d", s, o)
		}
		for q := o; q <= s; q++ {
			b, ok := r.Get(q)
			if !ok || !bytes.Equal(b, []byte{byte(q), byte(q >> 8)}) {
				t.Fatalf("get %d after %d: %v %v", q, s, b, ok)
			}
		}
	}
}

func TestRetransmitAllocs(t *testing.T) {
	r := ring.NewRetransmit(64, 1400)
	b := make([]byte, 1000)
	s := uint64(0)
	n := testing.AllocsPerRun(1000, func() {
		s++
		_ = r.Put(s, b)
		r.Get(s)
		r.Range(s-1, s, func(uint64, []byte) bool { return true })
	})
	if n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

func BenchmarkRetransmitPutGet(b *testing.B) {
	r := ring.NewRetransmit(4096, 1400)
	rec := make([]byte, 200)
	s := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		s++
		_ = r.Put(s, rec)
		if _, ok := r.Get(s - s%2); !ok && s > 1 {
			b.Fatal("get")
		}
	}
}

package shmem_test

import (
	"testing"

	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/shmem/internal/testpattern"
)

const benchN = 1024

// benchSegment is a /dev/shm segment with 1024 entities of the test pattern
// (version 1: one alarm), the same data as the C benchmark reads, and a
// reader on its own read-only mapping.
func benchSegment(b *testing.B) (*shmem.Writer, *shmem.Reader, *testpattern.Set) {
	b.Helper()
	p := shmPath(b)
	w, err := shmem.Create(p, shmem.Options{Capacity: 4096})
	check(b, err)
	b.Cleanup(func() { w.Close() })
	set := testpattern.NewSet(benchN)
	var e shmem.Entity
	w.Begin()
	for i := range benchN {
		set.Fill(&e, i, 1)
		check(b, w.Put(&e))
	}
	w.Commit()
	r, err := shmem.Open(p)
	check(b, err)
	b.Cleanup(func() { r.Close() })
	return w, r, set
}

// BenchmarkReadByID is the headline figure: lookup and consistent read of
// one entity by ID, from a read-only mapping of a /dev/shm segment.
func BenchmarkReadByID(b *testing.B) {
	_, r, set := benchSegment(b)
	var e shmem.Entity
	id := set.IDs[7]
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Read(id, &e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadByIDCycle(b *testing.B) {
	_, r, set := benchSegment(b)
	var e shmem.Entity
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := r.Read(set.IDs[i&(benchN-1)], &e); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkLookup(b *testing.B) {
	_, r, set := benchSegment(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := r.Lookup(set.IDs[i&(benchN-1)]); !ok {
			b.Fatal("missing")
		}
		i++
	}
}

func BenchmarkReadSlot(b *testing.B) {
	_, r, set := benchSegment(b)
	s, _ := r.Lookup(set.IDs[7])
	var e shmem.Entity
	b.ReportAllocs()
	for b.Loop() {
		if err := r.ReadSlot(s, &e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadByName(b *testing.B) {
	_, r, set := benchSegment(b)
	var e shmem.Entity
	name := set.Names[7]
	b.ReportAllocs()
	for b.Loop() {
		if err := r.ReadByName(name, &e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadByIDHeap(b *testing.B) {
	w, err := shmem.NewHeap(shmem.Options{Capacity: 4096})
	check(b, err)
	set := testpattern.NewSet(benchN)
	var e shmem.Entity
	for i := range benchN {
		set.Fill(&e, i, 1)
		check(b, w.Put(&e))
	}
	r, err := w.Reader()
	check(b, err)
	id := set.IDs[7]
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Read(id, &e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSnapshot1024(b *testing.B) {
	_, r, _ := benchSegment(b)
	dst := make([]shmem.Entity, 0, r.Capacity())
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := r.Snapshot(dst); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommit1 is the writer: one entity changed and published (slot
// write, event, table seq, futex wake).
func BenchmarkCommit1(b *testing.B) {
	w, _, set := benchSegment(b)
	var e shmem.Entity
	b.ReportAllocs()
	v := uint64(2)
	for b.Loop() {
		set.Fill(&e, 7, v)
		if err := w.Put(&e); err != nil {
			b.Fatal(err)
		}
		v++
	}
}

func BenchmarkEventNext(b *testing.B) {
	w, r, set := benchSegment(b)
	f, err := r.Follow()
	check(b, err)
	var e shmem.Entity
	set.Fill(&e, 7, 2)
	check(b, w.Put(&e))
	var ev shmem.Event
	b.ReportAllocs()
	for b.Loop() {
		f.SeekOldest()
		if _, ok := f.Next(&ev); !ok {
			b.Fatal("no event")
		}
	}
}

// BenchmarkFirstBigCommit is a new writer's first transaction of 4,096
// entities, as an agent publishes the whole table the first time it is
// replaced by a snapshot (a node joining, or rejoining after it was
// declared down, a cluster of thousands of entities): on the real-time
// loop, so the staging's growth is on it too.
func BenchmarkFirstBigCommit(b *testing.B) {
	const n = 4096
	set := testpattern.NewSet(n)
	var e shmem.Entity
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		w, err := shmem.Create(shmPath(b), shmem.Options{Capacity: n})
		check(b, err)
		b.StartTimer()
		w.Begin()
		for i := range n {
			set.Fill(&e, i, 1)
			check(b, w.Put(&e))
		}
		w.Commit()
		b.StopTimer()
		w.Close()
		b.StartTimer()
	}
}

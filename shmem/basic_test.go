package shmem_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/wire"
)

// shmPath returns a fresh segment path under /dev/shm (or the temp dir if
// there is no /dev/shm), removed at the end of the test.
func shmPath(t testing.TB) string {
	t.Helper()
	dir := "/dev/shm"
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		dir = t.TempDir()
	}
	p := filepath.Join(dir, fmt.Sprintf("fmshm-test-%d-%s", os.Getpid(), strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())))
	os.Remove(p)
	t.Cleanup(func() { os.Remove(p) })
	return p
}

func ent(t testing.TB, name string, st wire.State) *shmem.Entity {
	t.Helper()
	e := &shmem.Entity{Kind: wire.KindService, State: st, Owner: 3, Incarnation: 1, ChangedAt: 42, ChangedSeq: 7, ChangedBy: 2}
	if err := e.SetName(name); err != nil {
		t.Fatal(err)
	}
	return e
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func checkIs(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want %v", err, target)
	}
}

// both runs f against a heap segment and a file segment.
func both(t *testing.T, opts shmem.Options, f func(t *testing.T, w *shmem.Writer, r *shmem.Reader)) {
	t.Run("heap", func(t *testing.T) {
		w, err := shmem.NewHeap(opts)
		check(t, err)
		defer w.Close()
		r, err := w.Reader()
		check(t, err)
		f(t, w, r)
	})
	t.Run("file", func(t *testing.T) {
		p := shmPath(t)
		w, err := shmem.Create(p, opts)
		check(t, err)
		defer w.Close()
		r, err := shmem.Open(p)
		check(t, err)
		defer r.Close()
		f(t, w, r)
	})
}

func TestPutReadDelete(t *testing.T) {
	both(t, shmem.Options{Capacity: 16}, func(t *testing.T, w *shmem.Writer, r *shmem.Reader) {
		e := ent(t, "node/3/proc/sshd", wire.StateUp)
		check(t, e.RaiseAlarm("link-lost", wire.SevMajor, 100, 3))
		check(t, e.RaiseAlarm("disk-full", wire.SevCritical, 101, 4))
		check(t, w.Put(e))
		var got shmem.Entity
		check(t, r.Read(e.ID, &got))
		if !got.Equal(e) {
			t.Fatalf("read %+v, want %+v", got, e)
		}
		check(t, r.ReadByName("node/3/proc/sshd", &got))
		if got.NameString() != "node/3/proc/sshd" || got.NAlarms != 2 || string(got.Alarms[1].CauseBytes()) != "disk-full" {
			t.Fatalf("by name: %+v", got)
		}
		checkIs(t, r.ReadByName("node/3/proc/nope", &got), shmem.ErrNotFound)
		checkIs(t, r.Read(12345, &got), shmem.ErrNotFound)

		s, ok := r.Lookup(e.ID)
		if !ok {
			t.Fatal("lookup failed")
		}
		check(t, r.ReadSlot(s, &got))

		// Overwrite.
		e.State = wire.StateDown
		e.ClearAlarm("link-lost")
		check(t, w.Put(e))
		check(t, r.Read(e.ID, &got))
		if got.State != wire.StateDown || got.NAlarms != 1 || !got.Equal(e) {
			t.Fatalf("after overwrite: %+v", got)
		}

		w.Delete(e.ID)
		checkIs(t, r.Read(e.ID, &got), shmem.ErrNotFound)
		checkIs(t, r.ReadSlot(s, &got), shmem.ErrNotFound)
		if w.Len() != 0 || r.Header().Count != 0 {
			t.Fatalf("count %d / %d", w.Len(), r.Header().Count)
		}
	})
}

// TestWrittenAt: each row carries the writer's clock when it wrote the row
// as it is. A Put of the same values keeps the time (nothing was written),
// a change writes a new one, and what the caller puts in WrittenAt is not
// what the segment says.
func TestWrittenAt(t *testing.T) {
	both(t, shmem.Options{Capacity: 16}, func(t *testing.T, w *shmem.Writer, r *shmem.Reader) {
		if h := r.Header(); h.Major != 2 || h.Minor != 1 {
			t.Fatalf("layout %d.%d, want 2.1", h.Major, h.Minor)
		}
		e := ent(t, "node/3/proc/sshd", wire.StateUp)
		e.WrittenAt = 12345 // ignored
		before := time.Now().UnixNano()
		check(t, w.Put(e))
		after := time.Now().UnixNano()
		var got shmem.Entity
		check(t, r.Read(e.ID, &got))
		if got.WrittenAt < before || got.WrittenAt > after {
			t.Fatalf("written at %d, not within the Put [%d, %d]", got.WrittenAt, before, after)
		}
		first := got.WrittenAt

		time.Sleep(time.Millisecond)
		check(t, w.Put(e)) // the same values: the row is not written
		check(t, r.Read(e.ID, &got))
		if got.WrittenAt != first {
			t.Fatalf("an unchanged Put moved written_at %d -> %d", first, got.WrittenAt)
		}

		e.State = wire.StateDown
		before = time.Now().UnixNano()
		check(t, w.Put(e))
		after = time.Now().UnixNano()
		check(t, r.Read(e.ID, &got))
		if got.WrittenAt < before || got.WrittenAt > after || got.WrittenAt <= first {
			t.Fatalf("after a change written at %d, not within [%d, %d] (first %d)", got.WrittenAt, before, after, first)
		}
	})
}

func TestInvalid(t *testing.T) {
	w, err := shmem.NewHeap(shmem.Options{Capacity: 2})
	check(t, err)
	e := ent(t, "a", wire.StateUp)
	e.ID++
	checkIs(t, w.Put(e), shmem.ErrInvalid)
	checkIs(t, w.Put(&shmem.Entity{}), shmem.ErrInvalid)
	e = ent(t, "a", wire.StateUp)
	e.NAlarms = shmem.MaxAlarms + 1
	checkIs(t, w.Put(e), shmem.ErrInvalid)
	checkIs(t, e.SetName(strings.Repeat("x", wire.MaxName+1)), shmem.ErrInvalid)
	e = ent(t, "a", wire.StateUp)
	for i := 0; i < shmem.MaxAlarms; i++ {
		check(t, e.RaiseAlarm(fmt.Sprint("c", i), wire.SevMinor, 1, 1))
	}
	checkIs(t, e.RaiseAlarm("one-more", wire.SevMinor, 1, 1), shmem.ErrTooManyAlarms)
	check(t, e.RaiseAlarm("c3", wire.SevCritical, 2, 1)) // refresh, not a new one
	check(t, w.Put(e))
	check(t, w.Put(ent(t, "b", wire.StateUp)))
	checkIs(t, w.Put(ent(t, "c", wire.StateUp)), shmem.ErrFull)
	// Delete then insert in one transaction fits.
	w.Begin()
	w.Delete(shmem.IDOf("a"))
	check(t, w.Put(ent(t, "c", wire.StateUp)))
	checkIs(t, w.Put(ent(t, "d", wire.StateUp)), shmem.ErrFull)
	w.Commit()
	r, err := w.Reader()
	check(t, err)
	var got shmem.Entity
	check(t, r.ReadByName("c", &got))
	checkIs(t, r.ReadByName("a", &got), shmem.ErrNotFound)
}

func TestTransactionVisibleAtCommit(t *testing.T) {
	both(t, shmem.Options{Capacity: 64}, func(t *testing.T, w *shmem.Writer, r *shmem.Reader) {
		w.Begin()
		for i := 0; i < 10; i++ {
			check(t, w.Put(ent(t, fmt.Sprint("svc/", i), wire.StateUp)))
		}
		w.SetMaster(5, 9)
		var got shmem.Entity
		checkIs(t, r.Read(shmem.IDOf("svc/3"), &got), shmem.ErrNotFound)
		if r.Seq() != 0 {
			t.Fatal("seq moved before commit")
		}
		seq := w.Commit()
		if seq != 2 || r.Seq() != 2 {
			t.Fatalf("seq %d / %d", seq, r.Seq())
		}
		check(t, r.Read(shmem.IDOf("svc/3"), &got))
		h := r.Header()
		if h.Master != 5 || h.Epoch != 9 || h.Count != 10 || h.Stale || h.Seq != 2 || !h.WriterAlive {
			t.Fatalf("header %+v", h)
		}
		w.SetStale(true)
		if h := r.Header(); !h.Stale || h.Seq != 4 {
			t.Fatalf("header %+v", h)
		}
		snap, sseq, err := r.Snapshot(nil)
		check(t, err)
		if len(snap) != 10 || sseq != 4 {
			t.Fatalf("snapshot %d entities at %d", len(snap), sseq)
		}
		var names []string
		check(t, r.Range(func(e *shmem.Entity) bool { names = append(names, e.NameString()); return true }))
		sort.Strings(names)
		if len(names) != 10 || names[0] != "svc/0" {
			t.Fatalf("range %v", names)
		}
		// Abort drops staged changes.
		w.Begin()
		w.Delete(shmem.IDOf("svc/1"))
		w.Abort()
		check(t, r.Read(shmem.IDOf("svc/1"), &got))
	})
}

func TestEvents(t *testing.T) {
	both(t, shmem.Options{Capacity: 32, EventRingSize: 8}, func(t *testing.T, w *shmem.Writer, r *shmem.Reader) {
		f, err := r.Follow()
		check(t, err)
		e := ent(t, "node/1", wire.StateUp)
		check(t, w.Put(e)) // put
		e.State = wire.StateDown
		check(t, e.RaiseAlarm("x", wire.SevMajor, 1, 1))
		check(t, w.Put(e)) // state + raised
		e.ClearAlarm("x")
		check(t, w.Put(e)) // cleared
		e.Owner = 9
		check(t, w.Put(e)) // put (other field)
		check(t, w.Put(e)) // identical: no event
		w.Delete(e.ID)     // delete
		want := []shmem.EventKind{shmem.EventPut, shmem.EventStateChanged, shmem.EventAlarmRaised,
			shmem.EventAlarmCleared, shmem.EventPut, shmem.EventDelete}
		var ev shmem.Event
		for i, k := range want {
			lost, ok := f.Next(&ev)
			if !ok || lost != 0 || ev.Kind != k || ev.EntityID != e.ID || ev.TableSeq%2 != 0 {
				t.Fatalf("event %d: %+v ok=%v lost=%d, want %v", i, ev, ok, lost, k)
			}
		}
		if _, ok := f.Next(&ev); ok {
			t.Fatalf("extra event %+v", ev)
		}
		// Overflow the 8-event ring: the follower learns what it lost.
		for i := 0; i < 20; i++ {
			check(t, w.Put(ent(t, fmt.Sprint("e", i), wire.StateUp)))
		}
		total, got := uint64(0), 0
		for {
			lost, ok := f.Next(&ev)
			total += lost
			if !ok {
				break
			}
			got++
		}
		if total+uint64(got) != 20 || total == 0 {
			t.Fatalf("lost %d + got %d != 20", total, got)
		}
	})
}

func TestTombstonesAndRebuild(t *testing.T) {
	w, err := shmem.NewHeap(shmem.Options{Capacity: 32})
	check(t, err)
	r, err := w.Reader()
	check(t, err)
	var got shmem.Entity
	// Churn many distinct names through a small table: tombstones pile up
	// and the index is rebuilt; everything stays findable.
	for round := 0; round < 200; round++ {
		w.Begin()
		for i := 0; i < 10; i++ {
			check(t, w.Put(ent(t, fmt.Sprintf("p/%d/%d", round, i), wire.StateUp)))
		}
		w.Commit()
		for i := 0; i < 10; i++ {
			check(t, r.ReadByName(fmt.Sprintf("p/%d/%d", round, i), &got))
		}
		if round > 0 {
			w.Begin()
			for i := 0; i < 10; i++ {
				w.Delete(shmem.IDOf(fmt.Sprintf("p/%d/%d", round-1, i)))
			}
			w.Commit()
			for i := 0; i < 10; i++ {
				checkIs(t, r.ReadByName(fmt.Sprintf("p/%d/%d", round-1, i), &got), shmem.ErrNotFound)
			}
		}
	}
	if w.Len() != 10 {
		t.Fatalf("len %d", w.Len())
	}
}

func TestWait(t *testing.T) {
	both(t, shmem.Options{Capacity: 16}, func(t *testing.T, w *shmem.Writer, r *shmem.Reader) {
		_, err := r.WaitTimeout(r.Seq(), 20*time.Millisecond)
		checkIs(t, err, shmem.ErrTimeout)
		done := make(chan uint64)
		go func() {
			s, err := r.Wait(context.Background(), 0)
			if err != nil {
				t.Error(err)
			}
			done <- s
		}()
		time.Sleep(20 * time.Millisecond)
		seq := w.Commit() // nothing staged: no publish
		check(t, w.Put(ent(t, "x", wire.StateUp)))
		select {
		case s := <-done:
			if s != seq+2 {
				t.Fatalf("woke at %d, want %d", s, seq+2)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Wait was not woken")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		_, err = r.Wait(ctx, r.Seq())
		checkIs(t, err, context.DeadlineExceeded)

		// Close wakes waiters with ErrClosed.
		go func() { time.Sleep(20 * time.Millisecond); w.Close() }()
		_, err = r.Wait(context.Background(), r.Seq())
		checkIs(t, err, shmem.ErrClosed)
		var got shmem.Entity
		checkIs(t, r.Read(shmem.IDOf("x"), &got), shmem.ErrClosed)
	})
}

func TestReadAllocatesNothing(t *testing.T) {
	both(t, shmem.Options{Capacity: 64}, func(t *testing.T, w *shmem.Writer, r *shmem.Reader) {
		e := ent(t, "node/7/link/a", wire.StateUp)
		check(t, e.RaiseAlarm("loss", wire.SevMinor, 1, 1))
		check(t, w.Put(e))
		id := e.ID
		var got shmem.Entity
		f, err := r.Follow()
		check(t, err)
		var ev shmem.Event
		n := testing.AllocsPerRun(1000, func() {
			if err := r.Read(id, &got); err != nil {
				t.Fatal(err)
			}
			if _, ok := r.Lookup(id); !ok {
				t.Fatal("lookup")
			}
			if err := r.ReadByName("node/7/link/a", &got); err != nil {
				t.Fatal(err)
			}
			if r.Read(99, &got) != shmem.ErrNotFound {
				t.Fatal("miss")
			}
			f.Next(&ev)
		})
		if n != 0 {
			t.Fatalf("%v allocations per read", n)
		}
		dst := make([]shmem.Entity, 0, r.Capacity())
		n = testing.AllocsPerRun(100, func() {
			if _, _, err := r.Snapshot(dst); err != nil {
				t.Fatal(err)
			}
		})
		if n != 0 {
			t.Fatalf("%v allocations per snapshot", n)
		}
	})
}

func TestOpenErrors(t *testing.T) {
	p := shmPath(t)
	_, err := shmem.Open(p)
	if err == nil {
		t.Fatal("opened a missing file")
	}
	check(t, os.WriteFile(p, make([]byte, 8192), 0o600))
	_, err = shmem.Open(p)
	checkIs(t, err, shmem.ErrBadMagic)
	check(t, os.WriteFile(p, []byte("short"), 0o600))
	_, err = shmem.Open(p)
	checkIs(t, err, shmem.ErrLayout)
	// A file that is not a segment is replaced by Create.
	w, err := shmem.Create(p, shmem.Options{Capacity: 8})
	check(t, err)
	defer w.Close()
	// A live writer's segment is not.
	_, err = shmem.Create(p, shmem.Options{Capacity: 8})
	checkIs(t, err, shmem.ErrInUse)
	// Version check: patch the major version in a copy.
	b, err := os.ReadFile(p)
	check(t, err)
	b[8] = 99
	p2 := p + ".v99"
	check(t, os.WriteFile(p2, b, 0o600))
	defer os.Remove(p2)
	_, err = shmem.Open(p2)
	checkIs(t, err, shmem.ErrVersion)
}

package shmem_test

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/shmem/internal/testpattern"
)

const (
	tornEntities = 64
	tornGroup    = 8
)

// tornRun has a writer rewrite entities with the known pattern, in group
// transactions (with some deletes), while one reader reads single entities
// (at least reads of them, each verified field by field: zero torn reads)
// and another takes snapshots (each group must be all of one version: zero
// half transactions).
func tornRun(t *testing.T, w *shmem.Writer, r *shmem.Reader, reads int) {
	set := testpattern.NewSet(tornEntities)
	var e shmem.Entity
	for g := 0; g < testpattern.Groups(tornEntities, tornGroup); g++ {
		check(t, set.CommitGroup(w, &e, g, tornGroup, 1, nil))
	}

	var stop atomic.Bool
	var commits atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // writer
		defer wg.Done()
		rng := rand.New(rand.NewPCG(3, 4))
		var e shmem.Entity
		del := func() bool { return rng.IntN(16) == 0 }
		lastBeat := time.Now()
		for v := uint64(2); !stop.Load(); v++ {
			if time.Since(lastBeat) > 50*time.Millisecond {
				w.Beat()
				lastBeat = time.Now()
			}
			if err := set.CommitGroup(w, &e, int(v)%testpattern.Groups(tornEntities, tornGroup), tornGroup, v, del); err != nil {
				t.Error(err)
				return
			}
			commits.Add(1)
			// Pause up to 20µs, busy: the writer keeps its processor,
			// as a writer in its own process would.
			d := time.Duration(rng.IntN(20_000))
			for t0 := time.Now(); time.Since(t0) < d; {
			}
		}
	}()

	var snaps, snapRetries atomic.Int64
	wg.Add(1)
	go func() { // snapshot reader
		defer wg.Done()
		dst := make([]shmem.Entity, 0, w.Capacity())
		idx := make(map[uint64]int, tornEntities)
		for i, id := range set.IDs {
			idx[id] = i
		}
		var vers [tornEntities / tornGroup]uint64
		for !stop.Load() {
			snap, seq, err := r.Snapshot(dst)
			if err != nil {
				snapRetries.Add(1)
				continue
			}
			if seq%2 != 0 {
				t.Errorf("snapshot at odd seq %d", seq)
			}
			clear(vers[:])
			for k := range snap {
				i, ok := idx[snap[k].ID]
				if !ok {
					continue // a static entity
				}
				if err := set.Verify(&snap[k], i); err != nil {
					t.Errorf("snapshot: %v", err)
					stop.Store(true)
					return
				}
				g := i / tornGroup
				if vers[g] == 0 {
					vers[g] = snap[k].Incarnation
				} else if vers[g] != snap[k].Incarnation {
					t.Errorf("snapshot at seq %d: half a transaction: group %d has versions %d and %d",
						seq, g, vers[g], snap[k].Incarnation)
					stop.Store(true)
					return
				}
			}
			snaps.Add(1)
		}
	}()

	// Single-entity reader, on this goroutine.
	rng := rand.New(rand.NewPCG(5, 6))
	var got shmem.Entity
	var last [tornEntities]uint64
	ok, missing, changed, gaveUp := 0, 0, 0, 0
	start := time.Now()
	for n := 0; n < reads && !stop.Load(); n++ {
		i := rng.IntN(tornEntities)
		err := r.Read(set.IDs[i], &got)
		if err == shmem.ErrNotFound {
			missing++
			continue
		}
		if errors.Is(err, shmem.ErrTorn) && gaveUp < reads/100 {
			// The writer was descheduled mid-write for longer than
			// MaxWait (a loaded machine): the reader refused to return
			// data, which is not a torn read. Try again.
			gaveUp++
			n--
			continue
		}
		if err != nil {
			t.Errorf("read %d: %v", n, err)
			break
		}
		if err := set.Verify(&got, i); err != nil {
			t.Errorf("read %d: %v", n, err)
			break
		}
		if got.Incarnation != last[i] {
			changed++
			last[i] = got.Incarnation
		}
		ok++
	}
	// Let the snapshot reader get some in if the reads were quick.
	for deadline := time.Now().Add(2 * time.Second); snaps.Load() < 100 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d reads in %v: %d verified, %d not found (deleted), %d saw a new version, %d gave up (ErrTorn) and were retried; %d commits; %d snapshots verified (%d gave up)",
		reads, time.Since(start).Round(time.Millisecond), ok, missing, changed, gaveUp, commits.Load(), snaps.Load(), snapRetries.Load())
	if ok+missing != reads {
		t.Fatalf("only %d of %d reads completed", ok+missing, reads)
	}
	if commits.Load() < 100 || changed < 100 {
		t.Fatalf("the writer made too little progress (%d commits, %d changes seen) for the test to mean anything", commits.Load(), changed)
	}
	if snaps.Load() == 0 {
		t.Fatal("no snapshot succeeded")
	}
}

// TestTornHeap is the torn-read test on a heap segment, which the race
// detector can see: run it with -race.
func TestTornHeap(t *testing.T) {
	w, err := shmem.NewHeap(shmem.Options{Capacity: 256})
	check(t, err)
	r, err := w.Reader()
	check(t, err)
	tornRun(t, w, r, 1_000_000)
}

// TestTornFile is the same on a real /dev/shm segment read through its own
// read-only mapping.
func TestTornFile(t *testing.T) {
	p := shmPath(t)
	w, err := shmem.Create(p, shmem.Options{Capacity: 256})
	check(t, err)
	defer w.Close()
	r, err := shmem.Open(p)
	check(t, err)
	defer r.Close()
	reads := 1_000_000
	if raceEnabled {
		reads = 200_000 // the race detector cannot see the mapping anyway
	}
	tornRun(t, w, r, reads)
}

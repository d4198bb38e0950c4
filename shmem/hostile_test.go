package shmem_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/wire"
)

// scribble maps the segment file as another process with write access
// (root) would, and lets f change its bytes.
func scribble(t *testing.T, path string, f func(mem []byte)) {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDWR, 0)
	check(t, err)
	defer unix.Close(fd)
	var st unix.Stat_t
	check(t, unix.Fstat(fd, &st))
	mem, err := unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	check(t, err)
	defer unix.Munmap(mem)
	f(mem)
}

// Root writing into the segment's index (0xFFFFFFFF slot references, IDs
// and references of garbage) does not crash the writer: it never follows a
// reference it reads back, repairs the index from its own record, and the
// readers find every entity again.
func TestWriterSurvivesScribbledIndex(t *testing.T) {
	for _, mode := range []string{"ref 0xFFFFFFFF", "ref max", "garbage"} {
		t.Run(mode, func(t *testing.T) {
			path := shmPath(t)
			w, err := shmem.Create(path, shmem.Options{Capacity: 64})
			check(t, err)
			defer w.Close()
			const n = 40
			for i := range n {
				check(t, w.Put(ent(t, fmt.Sprintf("svc/%d", i), wire.StateUp)))
			}
			scribble(t, path, func(mem []byte) {
				indexOff := binary.LittleEndian.Uint64(mem[24:])
				indexSize := binary.LittleEndian.Uint64(mem[32:])
				idx := mem[indexOff : indexOff+indexSize]
				for b := 0; b+16 <= len(idx); b += 16 {
					switch mode {
					case "ref 0xFFFFFFFF":
						if binary.LittleEndian.Uint64(idx[b:]) != 0 {
							binary.LittleEndian.PutUint64(idx[b+8:], 0xFFFFFFFF)
						}
					case "ref max":
						binary.LittleEndian.PutUint64(idx[b+8:], ^uint64(0))
					case "garbage":
						binary.LittleEndian.PutUint64(idx[b:], uint64(b)*0x9E3779B97F4A7C15+1)
						binary.LittleEndian.PutUint64(idx[b+8:], uint64(b)<<40|0xFFFFFFFF)
					}
				}
			})
			// Updates, deletes and inserts after the scribble.
			for i := range n {
				check(t, w.Put(ent(t, fmt.Sprintf("svc/%d", i), wire.StateDown)))
			}
			for i := 0; i < n; i += 2 {
				w.Delete(shmem.IDOf(fmt.Sprintf("svc/%d", i)))
			}
			for i := n; i < n+10; i++ {
				check(t, w.Put(ent(t, fmt.Sprintf("svc/%d", i), wire.StateUp)))
			}
			if w.Len() != n/2+10 {
				t.Fatalf("writer counts %d entities, want %d", w.Len(), n/2+10)
			}
			r, err := shmem.Open(path)
			check(t, err)
			defer r.Close()
			var e shmem.Entity
			for i := 1; i < n; i += 2 {
				check(t, r.ReadByName(fmt.Sprintf("svc/%d", i), &e))
				if e.State != wire.StateDown {
					t.Fatalf("svc/%d: state %v, want down", i, e.State)
				}
			}
			for i := n; i < n+10; i++ {
				check(t, r.ReadByName(fmt.Sprintf("svc/%d", i), &e))
			}
		})
	}
}

// Names that share one index bucket cannot be computed in advance: 300 of
// them found by brute force against one segment's seed (as an attacker
// reading that segment could) make a probe sequence 300 long there, and
// spread out in the next segment, whose seed is new.
func TestIndexSeedDefeatsPrecomputedCollisions(t *testing.T) {
	const n, capacity = 300, 512
	opts := shmem.Options{Capacity: capacity}
	w1, err := shmem.NewHeap(opts)
	check(t, err)
	defer w1.Close()
	w2, err := shmem.NewHeap(opts)
	check(t, err)
	defer w2.Close()
	if shmem.IndexSeed(w1) == shmem.IndexSeed(w2) {
		t.Fatalf("two segments have the same index seed %#x", shmem.IndexSeed(w1))
	}
	buckets := uint32(2 * capacity)
	seed := shmem.IndexSeed(w1)
	var names []string
	for i := 0; len(names) < n; i++ {
		name := fmt.Sprintf("svc/c%d", i)
		if shmem.BucketOf(shmem.IDOf(name), seed, buckets) == 0 {
			names = append(names, name)
		}
	}
	for _, name := range names {
		check(t, w1.Put(ent(t, name, wire.StateUp)))
		check(t, w2.Put(ent(t, name, wire.StateUp)))
	}
	p1, p2 := shmem.MaxProbe(w1), shmem.MaxProbe(w2)
	t.Logf("%d names in one bucket of the first segment: longest probe %d there, %d in a new segment", n, p1, p2)
	if p1 < n {
		t.Fatalf("the colliding names probe at most %d buckets in the segment they were made for, want %d", p1, n)
	}
	if p2 > 20 {
		t.Fatalf("the names computed for another segment still probe %d buckets in a new one", p2)
	}
	r, err := w2.Reader()
	check(t, err)
	var e shmem.Entity
	for _, name := range names {
		check(t, r.ReadByName(name, &e))
	}
}

// plant puts at path what a local user other than the agent could: a copy
// of a real segment owned by nobody (65534), with its own writer's lock held.
func plant(t *testing.T, path string) (fd int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("planting another user's file needs root (to chown)")
	}
	src := path + ".src"
	w, err := shmem.Create(src, shmem.Options{Capacity: 16})
	check(t, err)
	check(t, w.Put(ent(t, "svc/planted", wire.StateDown)))
	w.Close()
	check(t, os.Rename(src, path))
	check(t, os.Chown(path, 65534, 65534))
	fd, err = unix.Open(path, unix.O_RDONLY, 0)
	check(t, err)
	check(t, unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB))
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// A segment another user planted at the agent's path, held by a "live"
// writer of its own, neither stops the agent's writer nor is trusted: Create
// replaces it without opening it as a segment (the planted file is not
// marked replaced, its lock does not count) and says what it replaced; the
// readers then see the agent's segment.
func TestCreateReplacesPlantedSegment(t *testing.T) {
	path := shmPath(t)
	fd := plant(t, path)
	w, err := shmem.Create(path, shmem.Options{Capacity: 16})
	check(t, err)
	defer w.Close()
	if why := w.ReplacedForeign(); !strings.Contains(why, "uid 65534") {
		t.Fatalf("ReplacedForeign = %q, want it to name the owner uid 65534", why)
	}
	var st unix.Stat_t
	check(t, unix.Stat(path, &st))
	if st.Uid != uint32(os.Geteuid()) || st.Mode&0o777 != 0o644 {
		t.Fatalf("segment at the path: uid %d mode %#o", st.Uid, st.Mode&0o777)
	}
	var planted [4]byte
	_, err = unix.Pread(fd, planted[:], 128) // the planted file's ready word: untouched
	check(t, err)
	if binary.LittleEndian.Uint32(planted[:]) != 2 { // closed by its writer, not marked replaced (3)
		t.Fatalf("the planted file's ready word is %d: the writer wrote into it", binary.LittleEndian.Uint32(planted[:]))
	}
	check(t, w.Put(ent(t, "svc/real", wire.StateUp)))
	r, err := shmem.Open(path)
	check(t, err)
	defer r.Close()
	var e shmem.Entity
	check(t, r.ReadByName("svc/real", &e))
	if err := r.ReadByName("svc/planted", &e); !errors.Is(err, shmem.ErrNotFound) {
		t.Fatalf("the planted entity reads back: %v", err)
	}
}

// Other things at the path are replaced the same way: a symlink (its target
// untouched), a file of the agent's own UID that others may write.
func TestCreateReplacesSymlinkAndWritableFile(t *testing.T) {
	for _, kind := range []string{"symlink", "mode 0666"} {
		t.Run(kind, func(t *testing.T) {
			path := shmPath(t)
			target := path + ".target"
			check(t, os.WriteFile(target, []byte("not a segment"), 0o600))
			defer os.Remove(target)
			if kind == "symlink" {
				check(t, os.Symlink(target, path))
			} else {
				check(t, os.WriteFile(path, []byte("not a segment"), 0o666))
				check(t, os.Chmod(path, 0o666))
			}
			w, err := shmem.Create(path, shmem.Options{Capacity: 16})
			check(t, err)
			defer w.Close()
			if w.ReplacedForeign() == "" {
				t.Fatal("ReplacedForeign is empty")
			}
			if b, _ := os.ReadFile(target); string(b) != "not a segment" {
				t.Fatalf("the symlink's target was changed: %q", b)
			}
			r, err := shmem.Open(path)
			check(t, err)
			r.Close()
		})
	}
}

// Readers refuse a segment the agent did not create: owned by another user
// (unless that user is named as the agent's), or writable by group or
// others, or reached through a symlink.
func TestReaderRefusesForeignSegment(t *testing.T) {
	path := shmPath(t)
	w, err := shmem.Create(path, shmem.Options{Capacity: 16})
	check(t, err)
	defer w.Close()
	open := func(o shmem.ReaderOptions) error {
		r, err := shmem.OpenWith(path, o)
		if err == nil {
			r.Close()
		}
		return err
	}
	check(t, open(shmem.ReaderOptions{}))
	check(t, os.Chmod(path, 0o666))
	if err := open(shmem.ReaderOptions{}); !errors.Is(err, shmem.ErrForeign) {
		t.Fatalf("mode 0666: %v, want ErrForeign", err)
	}
	check(t, os.Chmod(path, 0o644))
	link := path + ".link"
	check(t, os.Symlink(path, link))
	defer os.Remove(link)
	if r, err := shmem.Open(link); err == nil {
		r.Close()
		t.Fatal("a segment opened through a symlink")
	}
	if os.Geteuid() == 0 {
		check(t, os.Chown(path, 65534, 65534))
		if err := open(shmem.ReaderOptions{}); !errors.Is(err, shmem.ErrForeign) || !strings.Contains(err.Error(), "uid 65534") {
			t.Fatalf("owned by 65534: %v, want ErrForeign naming the uid", err)
		}
		check(t, open(shmem.ReaderOptions{OwnerUID: 65534}))
	}
}

package shmem_test

import (
	"encoding/binary"
	"fmt"
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

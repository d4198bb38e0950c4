// The index: open addressing with linear probing from a seeded home
// bucket (docs/shm-layout.md, Index). The reader probes it; the writer
// keeps its own record of where each entity is and never follows a
// reference it reads back from the shared segment.

package shmem

import (
	"unsafe"

	L "github.com/fmagent/fmagent/shmem/internal/layout"
)

// lookup probes the index for id. A hit is only a hint (the caller verifies
// the ID in the slot); a miss counts only if the index seq was even and
// unchanged around the probe. err is non-nil only if the index stayed
// mid-rebuild beyond the retry bound.
func (r *Reader) lookup(id uint64, op string) (slot uint32, found bool, err error) {
	if id == 0 {
		return 0, false, nil
	}
	var rt retry
	for {
		is := ld64(r.base, L.HdrIndexSeq)
		if is&1 == 0 {
			b := uint32(L.Mix(id^r.seed) >> r.shift)
			for n := uint32(0); n <= r.mask; n++ {
				bp := unsafe.Add(r.index, uintptr(b)*L.BucketSize)
				k := ld64(bp, L.BucketID)
				if k == id {
					ref := ld64(bp, L.BucketRef)
					if ref != 0 && ref <= uint64(r.capacity) {
						return uint32(ref - 1), true, nil
					}
					break
				}
				if k == 0 {
					break
				}
				b = (b + 1) & r.mask
			}
			if ld64(r.base, L.HdrIndexSeq) == is {
				return 0, false, nil
			}
		}
		if err := r.again(&rt, op, id, func() string { return "index rebuild" }); err != nil {
			return 0, false, err
		}
	}
}

// Lookup finds the slot of entity id. It allocates nothing.
func (r *Reader) Lookup(id uint64) (Slot, bool) {
	i, found, _ := r.lookup(id, "lookup")
	if !found {
		return Slot{}, false
	}
	return Slot{Index: i, ID: id}, true
}

// home is id's home bucket (layout.BucketOf with the segment's seed).
func (w *Writer) home(id uint64) uint32 { return uint32(L.Mix(id^w.seed) >> w.shift) }

func (w *Writer) bucket(b uint32) unsafe.Pointer {
	return unsafe.Add(w.index, uintptr(b)*L.BucketSize)
}

// find probes the index for id: the bucket holding it (live or tombstone),
// its slot, and whether it is live.
func (w *Writer) find(id uint64) (slot uint32, live bool) {
	slot, live = w.own[id]
	return slot, live
}

// bucketOf returns the index bucket that refers id to slot, rebuilding
// the index from the writer's own record first if the segment's index does
// not have it (someone wrote into the segment).
func (w *Writer) bucketOf(id uint64, slot uint32) uint32 {
	if b, ok := w.probe(id, slot); ok {
		return b
	}
	w.rebuild()
	b, _ := w.probe(id, slot)
	return b
}

// probe walks id's probe sequence for the bucket holding id → slot. Every
// step is bounded by the index size the writer computed, never by what it
// reads.
func (w *Writer) probe(id uint64, slot uint32) (uint32, bool) {
	b := w.home(id)
	for n := uint32(0); n <= w.mask; n++ {
		bp := w.bucket(b)
		k := ld64(bp, L.BucketID)
		if k == 0 {
			return 0, false
		}
		if k == id {
			return b, ld64(bp, L.BucketRef) == uint64(slot)+1
		}
		b = (b + 1) & w.mask
	}
	return 0, false
}

// indexInsert records id -> slot: in id's own tombstone if it has one, else
// in the first tombstone or empty bucket of its probe sequence. The slot
// reference is written before the ID, so a reader that sees the ID sees the
// reference.
func (w *Writer) indexInsert(id uint64, slot uint32) {
	b := w.home(id)
	firstTomb := int64(-1)
	for n := uint32(0); n <= w.mask; n++ {
		bp := w.bucket(b)
		k := ld64(bp, L.BucketID)
		if k == id { // id's own tombstone
			st64(bp, L.BucketRef, uint64(slot)+1)
			w.tombs--
			return
		}
		if k == 0 {
			break
		}
		if firstTomb < 0 && ld64(bp, L.BucketRef) == 0 {
			firstTomb = int64(b)
		}
		b = (b + 1) & w.mask
	}
	if firstTomb >= 0 {
		b = uint32(firstTomb)
		w.tombs--
	}
	bp := w.bucket(b)
	st64(bp, L.BucketRef, uint64(slot)+1)
	st64(bp, L.BucketID, id)
}

// rebuild rewrites the index from the live slots, dropping tombstones, under
// the index seqlock: a reader that misses an ID while the index seq is odd
// or changed retries (a reader that finds one verifies it in the slot).
func (w *Writer) rebuild() {
	p := w.base
	is := ld64(p, L.HdrIndexSeq)
	st64(p, L.HdrIndexSeq, is+1)
	for b := uint32(0); b <= w.mask; b++ {
		bp := w.bucket(b)
		st64(bp, L.BucketID, 0)
		st64(bp, L.BucketRef, 0)
	}
	w.tombs = 0
	for id, slot := range w.own {
		w.indexInsert(id, slot)
	}
	st64(p, L.HdrIndexSeq, is+2)
}

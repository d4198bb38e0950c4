package shmem

import L "github.com/fmagent/fmagent/shmem/internal/layout"

// FreezeMidWrite leaves the slot of id with an odd seq, as a writer that
// died in the middle of writing it would.
func FreezeMidWrite(w *Writer, id uint64) bool {
	s, ok := w.find(id)
	if !ok {
		return false
	}
	p := w.slot(s)
	st64(p, L.SlotSeq, ld64(p, L.SlotSeq)+1)
	return true
}

// SegmentBytes is the writer's segment memory.
func SegmentBytes(w *Writer) []byte { return w.mem }

// MaxProbe is the longest probe sequence in the writer's index: the number
// of buckets a lookup of the worst-placed live entity reads.
func MaxProbe(w *Writer) int {
	worst := 0
	for id := range w.own {
		b := w.home(id)
		for n := 1; ; n++ {
			if ld64(w.bucket(b), L.BucketID) == id {
				worst = max(worst, n)
				break
			}
			b = (b + 1) & w.mask
		}
	}
	return worst
}

// IndexSeed is the segment's index seed as the header publishes it.
func IndexSeed(w *Writer) uint64 { return ld64(w.base, L.HdrIndexSeed) }

// BucketOf is the home bucket of id under seed in an index of buckets.
func BucketOf(id, seed uint64, buckets uint32) uint32 { return L.BucketOf(id, seed, buckets) }

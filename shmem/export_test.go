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

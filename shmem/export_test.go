package shmem

// FreezeMidWrite leaves the slot of id with an odd seq, as a writer that
// died in the middle of writing it would.
func FreezeMidWrite(w *Writer, id uint64) bool { return w.freezeMidWrite(id) }

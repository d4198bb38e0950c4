package ring

import "errors"

// Errors of the retransmit ring.
var (
	ErrTooLarge = errors.New("ring: record larger than the ring's record size")
	ErrNotNext  = errors.New("ring: seq is not the successor of the newest stored seq")
)

// Retransmit is the master's ring of recently issued table changes, each
// stored as its encoded bytes under its seq. Seqs are consecutive: Put takes
// newest+1 (any seq when empty). When full, Put overwrites the oldest. All
// storage is allocated by NewRetransmit; Put copies into it.
//
// Retransmit is not safe for concurrent use (the master's core owns it).
type Retransmit struct {
	buf    []byte
	lens   []uint32
	maxRec int
	n      uint64
	oldest uint64
	count  uint64
}

// NewRetransmit returns a ring of slots records of at most maxRecord bytes.
func NewRetransmit(slots, maxRecord int) *Retransmit {
	if slots <= 0 || maxRecord <= 0 {
		panic("ring: NewRetransmit needs slots > 0 and maxRecord > 0")
	}
	return &Retransmit{
		buf:    make([]byte, slots*maxRecord),
		lens:   make([]uint32, slots),
		maxRec: maxRecord,
		n:      uint64(slots),
	}
}

// Cap is the number of records the ring holds.
func (r *Retransmit) Cap() int { return int(r.n) }

// MaxRecord is the largest record Put accepts.
func (r *Retransmit) MaxRecord() int { return r.maxRec }

// Len is the number of records stored.
func (r *Retransmit) Len() int { return int(r.count) }

// Oldest is the smallest seq stored; ok is false when the ring is empty.
func (r *Retransmit) Oldest() (seq uint64, ok bool) { return r.oldest, r.count > 0 }

// Newest is the largest seq stored; ok is false when the ring is empty.
func (r *Retransmit) Newest() (seq uint64, ok bool) {
	if r.count == 0 {
		return 0, false
	}
	return r.oldest + r.count - 1, true
}

// Reset empties the ring; the next Put may take any seq.
func (r *Retransmit) Reset() { r.oldest, r.count = 0, 0 }

// Put stores a copy of b under seq, which must be newest+1 unless the ring is
// empty. When the ring is full the oldest record is dropped.
func (r *Retransmit) Put(seq uint64, b []byte) error {
	if len(b) > r.maxRec {
		return ErrTooLarge
	}
	if r.count > 0 && seq != r.oldest+r.count {
		return ErrNotNext
	}
	if r.count == 0 {
		r.oldest = seq
	}
	i := seq % r.n
	copy(r.buf[int(i)*r.maxRec:], b)
	r.lens[i] = uint32(len(b))
	if r.count == r.n {
		r.oldest++
	} else {
		r.count++
	}
	return nil
}

// Has reports whether seq is stored.
func (r *Retransmit) Has(seq uint64) bool {
	return r.count > 0 && seq >= r.oldest && seq-r.oldest < r.count
}

// Get returns the record stored under seq. The slice aliases the ring's
// storage: it is valid until the record is overwritten (r.Cap() Puts later)
// and must not be modified.
func (r *Retransmit) Get(seq uint64) ([]byte, bool) {
	if !r.Has(seq) {
		return nil, false
	}
	i := int(seq % r.n)
	off := i * r.maxRec
	return r.buf[off : off+int(r.lens[i]) : off+int(r.lens[i])], true
}

// Range calls fn for every stored seq in [from, to], in order, until fn
// returns false. complete is true when every seq of [from, to] was stored
// (false means the caller must fall back to a snapshot for the rest).
func (r *Retransmit) Range(from, to uint64, fn func(seq uint64, b []byte) bool) (complete bool) {
	if from > to {
		return true
	}
	if r.count == 0 {
		return false
	}
	newest := r.oldest + r.count - 1
	complete = from >= r.oldest && to <= newest
	lo, hi := max(from, r.oldest), min(to, newest)
	for s := lo; s <= hi && lo <= hi; s++ {
		b, _ := r.Get(s)
		if !fn(s, b) {
			break
		}
		if s == ^uint64(0) {
			break
		}
	}
	return complete
}

// Package ring provides the two fixed-size rings of fmagent, both free of
// allocation once created:
//
//   - Broadcaster / Receiver: a lossy single-writer, many-reader broadcast
//     ring of fixed-size records over a byte region that may be shared memory
//     (the event ring of the shared-memory table). The writer never waits for
//     readers; a reader that falls behind by more than the ring holds learns
//     how many records it lost and jumps forward, in the manner of Agrona's
//     broadcast buffer.
//   - Retransmit: the master's in-memory ring of encoded table changes by
//     sequence number, for answering retransmit requests.
package ring

import (
	"encoding/binary"
	"errors"
	"sync/atomic"
	"unsafe"
)

// Layout of a broadcast region (little-endian, every word accessed atomically):
//
//	offset size  field
//	0      8     capacity: number of slots, a power of two
//	8      4     record size: payload bytes per record, a multiple of 8
//	12     4     slot size: 8 + record size
//	16     48    reserved (zero)
//	64     8     tail: position of the next record to be written; records
//	             0..tail-1 have been published (own cache line)
//	72     56    reserved (zero)
//	128    ...   capacity slots of slot size bytes
//
// A slot is a seq word followed by the payload. While the writer writes record
// at position pos into slot pos&(capacity-1), seq is 2*pos+1; when the record
// is complete seq is 2*pos+2. A reader expecting position pos copies the
// payload only if seq == 2*pos+2 before and after the copy.
const (
	BroadcastHeaderSize = 128

	bcCapOff  = 0
	bcRecOff  = 8
	bcTailOff = 64
)

// Errors of the broadcast ring.
var (
	ErrBadGeometry = errors.New("ring: bad geometry (capacity must be a power of two, record size a positive multiple of 8)")
	ErrShortRegion = errors.New("ring: region too small")
	ErrMisaligned  = errors.New("ring: region not 8-byte aligned")
)

// BroadcastSize is the number of bytes a broadcast ring of capacity records
// of recordSize bytes occupies.
func BroadcastSize(capacity, recordSize int) int {
	return BroadcastHeaderSize + capacity*(8+recordSize)
}

func validGeometry(capacity, recordSize uint64) bool {
	return capacity > 0 && capacity&(capacity-1) == 0 && capacity <= 1<<30 &&
		recordSize > 0 && recordSize%8 == 0 && recordSize <= 1<<16
}

func base(mem []byte) (unsafe.Pointer, error) {
	if len(mem) < BroadcastHeaderSize {
		return nil, ErrShortRegion
	}
	p := unsafe.Pointer(&mem[0])
	if uintptr(p)%8 != 0 {
		return nil, ErrMisaligned
	}
	return p, nil
}

func word(p unsafe.Pointer, off uintptr) *uint64 { return (*uint64)(unsafe.Add(p, off)) }

// Broadcaster is the single writer of a broadcast ring. It is not safe for
// concurrent use: exactly one goroutine (of one process) publishes.
type Broadcaster struct {
	mem   []byte // keeps a heap-backed region alive
	p     unsafe.Pointer
	mask  uint64
	rec   uintptr
	slot  uintptr
	slots unsafe.Pointer
	tail  uint64
}

// NewBroadcaster formats mem as an empty broadcast ring of capacity records
// (a power of two) of recordSize bytes (a multiple of 8) and returns its
// writer. mem must hold BroadcastSize(capacity, recordSize) bytes, 8-aligned.
func NewBroadcaster(mem []byte, capacity, recordSize int) (*Broadcaster, error) {
	if !validGeometry(uint64(capacity), uint64(recordSize)) {
		return nil, ErrBadGeometry
	}
	p, err := base(mem)
	if err != nil {
		return nil, err
	}
	if len(mem) < BroadcastSize(capacity, recordSize) {
		return nil, ErrShortRegion
	}
	b := &Broadcaster{mem: mem, p: p, mask: uint64(capacity - 1), rec: uintptr(recordSize),
		slot: uintptr(8 + recordSize), slots: unsafe.Add(p, BroadcastHeaderSize)}
	for off := 0; off < BroadcastSize(capacity, recordSize); off += 8 {
		atomic.StoreUint64(word(p, uintptr(off)), 0)
	}
	atomic.StoreUint64(word(p, bcCapOff), uint64(capacity))
	atomic.StoreUint64(word(p, bcRecOff), uint64(recordSize)|uint64(8+recordSize)<<32)
	return b, nil
}

// Publish appends one record (len(rec) must be the record size; a shorter
// record is zero padded, a longer one truncated) and returns its position.
// It never blocks and never allocates.
func (b *Broadcaster) Publish(rec []byte) uint64 {
	pos := b.tail
	s := unsafe.Add(b.slots, uintptr(pos&b.mask)*b.slot)
	atomic.StoreUint64((*uint64)(s), 2*pos+1)
	for off := uintptr(0); off < b.rec; off += 8 {
		var w uint64
		if int(off)+8 <= len(rec) {
			w = binary.LittleEndian.Uint64(rec[off:])
		} else {
			for i := int(off); i < len(rec) && i < int(off)+8; i++ {
				w |= uint64(rec[i]) << (8 * (i - int(off)))
			}
		}
		atomic.StoreUint64(word(s, 8+off), w)
	}
	atomic.StoreUint64((*uint64)(s), 2*pos+2)
	b.tail = pos + 1
	atomic.StoreUint64(word(b.p, bcTailOff), b.tail)
	return pos
}

// Tail is the position the next Publish will use.
func (b *Broadcaster) Tail() uint64 { return b.tail }

// Capacity is the number of records the ring holds.
func (b *Broadcaster) Capacity() int { return int(b.mask + 1) }

// Receiver follows a broadcast ring. Each Receiver has its own cursor and
// is used by one goroutine at a time; any number of receivers, in any number
// of processes, may follow one ring. It only reads the region.
type Receiver struct {
	mem    []byte
	p      unsafe.Pointer
	mask   uint64
	rec    uintptr
	slot   uintptr
	slots  unsafe.Pointer
	cursor uint64
}

// NewReceiver opens the broadcast ring formatted in mem and positions the
// cursor at the tail: Next returns records published from now on.
func NewReceiver(mem []byte) (*Receiver, error) {
	p, err := base(mem)
	if err != nil {
		return nil, err
	}
	capacity := atomic.LoadUint64(word(p, bcCapOff))
	sizes := atomic.LoadUint64(word(p, bcRecOff))
	rec, slot := sizes&0xffffffff, sizes>>32
	if !validGeometry(capacity, rec) || slot != rec+8 {
		return nil, ErrBadGeometry
	}
	if uint64(len(mem)) < BroadcastHeaderSize+capacity*slot {
		return nil, ErrShortRegion
	}
	r := &Receiver{mem: mem, p: p, mask: capacity - 1, rec: uintptr(rec), slot: uintptr(slot),
		slots: unsafe.Add(p, BroadcastHeaderSize)}
	r.cursor = r.Tail()
	return r, nil
}

// RecordSize is the payload size of a record.
func (r *Receiver) RecordSize() int { return int(r.rec) }

// Capacity is the number of records the ring holds.
func (r *Receiver) Capacity() int { return int(r.mask + 1) }

// Tail is the position of the next record the writer will publish.
func (r *Receiver) Tail() uint64 { return atomic.LoadUint64(word(r.p, bcTailOff)) }

// Cursor is the position of the next record Next will return.
func (r *Receiver) Cursor() uint64 { return r.cursor }

// SeekTail skips every record published so far.
func (r *Receiver) SeekTail() { r.cursor = r.Tail() }

// SeekOldest moves the cursor to the oldest record still in the ring.
func (r *Receiver) SeekOldest() {
	t := r.Tail()
	if t > r.mask+1 {
		r.cursor = t - (r.mask + 1)
	} else {
		r.cursor = 0
	}
}

// Next copies the record at the cursor into dst (which must hold RecordSize
// bytes) and advances. ok is false when no new record is there yet. lost is
// the number of records skipped because the writer overwrote them before
// this receiver read them; after a loss the cursor jumps to half a ring
// behind the tail, leaving room before it could be lapped again.
func (r *Receiver) Next(dst []byte) (pos, lost uint64, ok bool) {
	_ = dst[r.rec-1]
	capacity := r.mask + 1
	for {
		t := atomic.LoadUint64(word(r.p, bcTailOff))
		if r.cursor >= t {
			if r.cursor > t { // the ring was re-formatted behind our back
				r.cursor = t
			}
			return 0, lost, false
		}
		if t-r.cursor > capacity {
			lost += r.jump(t)
			continue
		}
		c := r.cursor
		s := unsafe.Add(r.slots, uintptr(c&r.mask)*r.slot)
		want := 2*c + 2
		s1 := atomic.LoadUint64((*uint64)(s))
		if s1 != want {
			if s1 > want { // overwritten (or being overwritten) by a later lap
				lost += r.jump(atomic.LoadUint64(word(r.p, bcTailOff)))
				continue
			}
			return 0, lost, false // not complete yet (writer mid-publish)
		}
		for off := uintptr(0); off < r.rec; off += 8 {
			binary.LittleEndian.PutUint64(dst[off:], atomic.LoadUint64(word(s, 8+off)))
		}
		if atomic.LoadUint64((*uint64)(s)) != want {
			lost += r.jump(atomic.LoadUint64(word(r.p, bcTailOff)))
			continue
		}
		r.cursor = c + 1
		return c, lost, true
	}
}

// jump moves a lapped cursor to half a ring behind tail t and returns the
// number of records skipped.
func (r *Receiver) jump(t uint64) uint64 {
	half := (r.mask + 1) / 2
	nc := r.cursor + 1
	if t > half && t-half > nc {
		nc = t - half
	}
	lost := nc - r.cursor
	r.cursor = nc
	return lost
}

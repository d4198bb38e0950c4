// The event follower: a reader's cursor in the segment's event ring.

package shmem

import (
	"encoding/binary"

	"github.com/fmagent/fmagent/ring"
	L "github.com/fmagent/fmagent/shmem/internal/layout"
	"github.com/fmagent/fmagent/wire"
)

// EventFollower follows the event ring of a segment. One goroutine at a time.
type EventFollower struct {
	r   *Reader
	rc  *ring.Receiver
	buf [L.EventRecord]byte
}

// Follow returns a follower positioned after the newest event: Next returns
// the events of commits published from now on.
func (r *Reader) Follow() (*EventFollower, error) {
	off := int(ld64(r.base, L.HdrRingOff))
	size := int(ld64(r.base, L.HdrRingSize))
	rc, err := ring.NewReceiver(r.mem[off : off+size])
	if err != nil {
		return nil, &Error{Op: "follow", Path: r.path, Err: ErrLayout, Detail: err.Error()}
	}
	if rc.RecordSize() != L.EventRecord || rc.Capacity() != int(r.ringCap) {
		return nil, &Error{Op: "follow", Path: r.path, Err: ErrLayout, Detail: "event ring geometry"}
	}
	return &EventFollower{r: r, rc: rc}, nil
}

// SeekOldest moves to the oldest event still in the ring.
func (f *EventFollower) SeekOldest() { f.rc.SeekOldest() }

// SeekNewest skips every event published so far.
func (f *EventFollower) SeekNewest() { f.rc.SeekTail() }

// Next reads the next event into ev. ok is false when there is none yet.
// lost is the number of events this follower missed because it fell more
// than the ring's size behind (it then jumps forward). It allocates nothing.
func (f *EventFollower) Next(ev *Event) (lost uint64, ok bool) {
	pos, lost, ok := f.rc.Next(f.buf[:])
	if !ok {
		return lost, false
	}
	b := f.buf[:]
	m := binary.LittleEndian.Uint64(b[16:])
	*ev = Event{
		Pos:      pos,
		TableSeq: binary.LittleEndian.Uint64(b[0:]),
		EntityID: binary.LittleEndian.Uint64(b[8:]),
		Kind:     EventKind(m >> L.EventKindShift),
		State:    wire.State(m >> L.EventStShift),
		Severity: wire.Severity(m >> L.EventSevShift),
	}
	return lost, true
}

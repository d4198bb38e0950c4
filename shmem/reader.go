package shmem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	L "github.com/fmagent/fmagent/shmem/internal/layout"
	"github.com/fmagent/fmagent/wire"
)

// ReaderOptions tune a Reader. The zero value means the defaults.
type ReaderOptions struct {
	// SpinRetries is the number of attempts of one consistent read (of a
	// slot, of the index, or of a snapshot) made back to back before the
	// reader starts yielding the processor between attempts. Default 100.
	SpinRetries int
	// MaxRetries is the number of attempts after which the reader checks
	// the writer: if its process is gone or its heartbeat is old, the read
	// fails with ErrWriterDead at once. Default 10000 (a few milliseconds).
	MaxRetries int
	// MaxWait bounds the time a read keeps retrying while the writer is
	// alive but the data stays mid-write (a writer descheduled in the
	// middle of a commit, or stopped); then it fails with ErrTorn. It is
	// counted from the first failed attempt and is above the ~20 ms stalls
	// of virtual machines. Default 100ms.
	MaxWait time.Duration
	// NoPIDCheck disables the writer-process check (for a reader in another
	// pid namespace); the heartbeat alone then decides whether the writer
	// is alive.
	NoPIDCheck bool
	// OwnerUID is a UID, besides root and the reader's own effective UID,
	// whose segments the reader trusts (0: none besides those two). A file
	// owned by anyone else, or writable by group or others, is refused
	// with ErrForeign: someone else planted it at the agent's path.
	OwnerUID uint32
}

var defaultReaderOptions = ReaderOptions{MaxRetries: 10000, SpinRetries: 100, MaxWait: 100 * time.Millisecond}

func (o ReaderOptions) withDefaults() ReaderOptions {
	if o.MaxRetries <= 0 {
		o.MaxRetries = defaultReaderOptions.MaxRetries
	}
	if o.SpinRetries <= 0 {
		o.SpinRetries = defaultReaderOptions.SpinRetries
	}
	if o.MaxWait <= 0 {
		o.MaxWait = defaultReaderOptions.MaxWait
	}
	return o
}

// Reader reads a segment. It never writes to it (a file segment is mapped
// read-only). Its methods are safe for concurrent use, except that an
// EventFollower belongs to one goroutine at a time.
type Reader struct {
	path   string
	fd     int
	mapped bool
	mem    []byte
	base   unsafe.Pointer
	index  unsafe.Pointer
	slots  unsafe.Pointer
	opts   ReaderOptions

	capacity   uint32
	mask       uint32
	shift      uint
	seed       uint64 // the index seed (static once the segment is ready)
	ringCap    uint32
	gen        uint64
	pid        uint32
	startTicks uint64
	dev, ino   uint64
	closed     bool
}

// Slot is the result of a lookup: where an entity lives. It can be kept and
// read again with ReadSlot, which fails with ErrNotFound once the slot no
// longer holds the entity (then look it up again).
type Slot struct {
	Index uint32
	ID    uint64
}

// Open maps the segment at path read-only.
func Open(path string) (*Reader, error) { return OpenWith(path, ReaderOptions{}) }

// OpenWith is Open with options.
func OpenWith(path string, o ReaderOptions) (*Reader, error) {
	fail := func(err error, detail string) (*Reader, error) {
		return nil, &Error{Op: "open", Path: path, Err: err, Detail: detail}
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fail(err, "")
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return fail(err, "fstat")
	}
	if why := foreign(&st, uint32(unix.Geteuid()), o.OwnerUID); why != "" {
		unix.Close(fd)
		return fail(ErrForeign, why)
	}
	if st.Size < L.HeaderRegion {
		unix.Close(fd)
		return fail(ErrLayout, fmt.Sprintf("file of %d bytes", st.Size))
	}
	mem, err := unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return fail(err, "mmap")
	}
	r := &Reader{path: path, fd: fd, mapped: true, mem: mem, opts: o.withDefaults(), dev: st.Dev, ino: st.Ino}
	if err := r.attach(); err != nil {
		unix.Munmap(mem)
		unix.Close(fd)
		return nil, err
	}
	return r, nil
}

// attach validates the header and caches the geometry.
func (r *Reader) attach() error {
	if r.opts.MaxRetries == 0 {
		r.opts = r.opts.withDefaults()
	}
	fail := func(err error, detail string) error {
		return &Error{Op: "open", Path: r.path, Err: err, Detail: detail}
	}
	if len(r.mem) < L.HeaderRegion {
		return fail(ErrLayout, "short segment")
	}
	p := unsafe.Pointer(&r.mem[0])
	r.base = p
	if ld64(p, L.HdrMagic) != L.Magic {
		return fail(ErrBadMagic, "")
	}
	if v := ld32(p, L.HdrVersion); v&0xffff != L.Major {
		return fail(ErrVersion, fmt.Sprintf("major %d, want %d", v&0xffff, L.Major))
	}
	if ld32(p, L.HdrReady) == L.StatusInit {
		return fail(ErrNotReady, "")
	}
	capacity := ld32(p, L.HdrCapacity)
	buckets := ld32(p, L.HdrIndexBuckets)
	ringCap := ld32(p, L.HdrRingCapacity)
	geo := L.Compute(int(capacity), int(ringCap))
	switch {
	case ld32(p, L.HdrHeaderSize) < L.HeaderSize:
		return fail(ErrLayout, "header size")
	case ld32(p, L.HdrSlotSize) != L.SlotSize || ld32(p, L.HdrMaxAlarms) != L.MaxAlarms ||
		ld32(p, L.HdrRingSlotSize) != L.RingSlotSize:
		return fail(ErrLayout, "slot size")
	case capacity == 0 || capacity > 1<<24 || ringCap == 0 || ringCap&(ringCap-1) != 0 ||
		buckets != uint32(geo.Buckets):
		return fail(ErrLayout, "capacity")
	case ld64(p, L.HdrIndexOff) != uint64(geo.IndexOff) || ld64(p, L.HdrSlotsOff) != uint64(geo.SlotsOff) ||
		ld64(p, L.HdrRingOff) != uint64(geo.RingOff) || ld64(p, L.HdrRingSize) != uint64(geo.RingSize) ||
		ld64(p, L.HdrTotalSize) != uint64(geo.TotalSize) || uint64(len(r.mem)) < uint64(geo.TotalSize):
		return fail(ErrLayout, "offsets")
	}
	r.capacity, r.mask, r.shift, r.ringCap = capacity, buckets-1, L.Shift(buckets), ringCap
	r.seed = ld64(p, L.HdrIndexSeed)
	r.index = unsafe.Add(p, geo.IndexOff)
	r.slots = unsafe.Add(p, geo.SlotsOff)
	r.gen = ld64(p, L.HdrGeneration)
	r.pid = ld32(p, L.HdrWriterPID)
	r.startTicks = ld64(p, L.HdrWriterStartTk)
	return nil
}

// Close unmaps the segment. Using the reader afterwards is an error.
func (r *Reader) Close() error {
	if r.closed || !r.mapped {
		r.closed = true
		return nil
	}
	r.closed = true
	err := unix.Munmap(r.mem)
	if e := unix.Close(r.fd); err == nil {
		err = e
	}
	return err
}

// Generation is the generation of the mapped segment.
func (r *Reader) Generation() uint64 { return r.gen }

// Capacity is the number of entity slots.
func (r *Reader) Capacity() int { return int(r.capacity) }

// Seq is the current table seq (odd while a commit is being published).
func (r *Reader) Seq() uint64 { return ld64(r.base, L.HdrTableSeq) }

func (r *Reader) status() uint32 { return ld32(r.base, L.HdrReady) }

func (r *Reader) statusErr(op string, id uint64, st uint32) error {
	switch st {
	case L.StatusClosed:
		return &Error{Op: op, Path: r.path, ID: id, Err: ErrClosed}
	case L.StatusReplaced:
		return &Error{Op: op, Path: r.path, ID: id, Err: ErrRecreated}
	}
	return &Error{Op: op, Path: r.path, ID: id, Err: ErrNotReady}
}

// writerAlive: the heartbeat is recent and (unless disabled) the writer
// process exists.
func (r *Reader) writerAlive() (bool, string) {
	hb := int64(ld64(r.base, L.HdrHeartbeat))
	to := int64(ld64(r.base, L.HdrHBTimeout))
	if age := monoNow() - hb; to > 0 && age > to {
		return false, fmt.Sprintf("heartbeat %v old", time.Duration(age))
	}
	if !r.opts.NoPIDCheck && !processAlive(r.pid, r.startTicks) {
		return false, fmt.Sprintf("writer pid %d gone", r.pid)
	}
	return true, ""
}

// retry paces the attempts of one consistent read and decides when to give
// up. The zero value is ready; it costs nothing until an attempt fails.
type retry struct {
	n     int
	since time.Time
}

// again is called after a failed attempt. It returns nil to try again
// (after spinning or yielding), or the error to give up with: ErrClosed or
// ErrRecreated if the segment is no longer live, ErrWriterDead once
// MaxRetries attempts failed and the writer is gone, ErrTorn once MaxWait
// passed with the writer alive.
func (r *Reader) again(rt *retry, op string, id uint64, what func() string) error {
	rt.n++
	if rt.n <= r.opts.SpinRetries {
		return nil
	}
	if rt.n == r.opts.SpinRetries+1 {
		rt.since = time.Now()
	}
	if rt.n%r.opts.MaxRetries == 0 {
		if st := r.status(); st != L.StatusReady {
			return r.statusErr(op, id, st)
		}
		if ok, why := r.writerAlive(); !ok {
			return &Error{Op: op, Path: r.path, ID: id, Err: ErrWriterDead, Detail: why + "; " + what()}
		}
	}
	if rt.n%64 == 0 && time.Since(rt.since) > r.opts.MaxWait {
		if st := r.status(); st != L.StatusReady {
			return r.statusErr(op, id, st)
		}
		if ok, why := r.writerAlive(); !ok {
			return &Error{Op: op, Path: r.path, ID: id, Err: ErrWriterDead, Detail: why + "; " + what()}
		}
		return &Error{Op: op, Path: r.path, ID: id, Err: ErrTorn,
			Detail: fmt.Sprintf("%s, %d attempts in %v", what(), rt.n, time.Since(rt.since).Round(time.Microsecond))}
	}
	if rt.n > r.opts.MaxRetries {
		time.Sleep(50 * time.Microsecond) // the writer is alive but slow: stop burning a CPU it may need
	} else {
		runtime.Gosched()
	}
	return nil
}

func (r *Reader) slot(i uint32) unsafe.Pointer {
	return unsafe.Add(r.slots, uintptr(i)*L.SlotSize)
}

var errMoved = errors.New("shmem: slot holds another entity")

// readSlot reads slot i consistently into dst and checks that it holds id
// (errMoved if it holds another entity or none).
func (r *Reader) readSlot(i uint32, id uint64, dst *Entity, op string) error {
	p := r.slot(i)
	var rt retry
	for {
		s1 := ld64(p, L.SlotSeq)
		if s1&1 == 0 {
			got := decodeSlot(p, dst)
			if ld64(p, L.SlotSeq) == s1 {
				if got != id {
					return errMoved
				}
				return nil
			}
		}
		if err := r.again(&rt, op, id, func() string {
			return fmt.Sprintf("slot %d seq %d", i, ld64(p, L.SlotSeq))
		}); err != nil {
			return err
		}
	}
}

// Read reads entity id consistently into dst. On error dst is undefined.
// It allocates nothing (ErrNotFound is returned bare).
func (r *Reader) Read(id uint64, dst *Entity) error {
	if st := r.status(); st != L.StatusReady {
		return r.statusErr("read", id, st)
	}
	var rt retry
	for {
		i, found, err := r.lookup(id, "read")
		if err != nil {
			return err
		}
		if !found {
			return ErrNotFound
		}
		err = r.readSlot(i, id, dst, "read")
		if err != errMoved {
			return err
		}
		// The slot was freed or reused under us: look the ID up again.
		if err := r.again(&rt, "read", id, func() string { return "slot kept moving" }); err != nil {
			return err
		}
	}
}

// ReadSlot reads the entity at a slot found by Lookup. It fails with
// ErrNotFound if the slot no longer holds that entity.
func (r *Reader) ReadSlot(s Slot, dst *Entity) error {
	if st := r.status(); st != L.StatusReady {
		return r.statusErr("read", s.ID, st)
	}
	if s.Index >= r.capacity {
		return ErrNotFound
	}
	err := r.readSlot(s.Index, s.ID, dst, "read")
	if err == errMoved {
		return ErrNotFound
	}
	return err
}

// ReadByName reads the entity called name (its ID is IDOf(name)).
func (r *Reader) ReadByName(name string, dst *Entity) error {
	if err := r.Read(IDOf(name), dst); err != nil {
		return err
	}
	if string(dst.NameBytes()) != name {
		return ErrNotFound // hash collision with another name
	}
	return nil
}

// ReadByNameBytes is ReadByName for a byte slice.
func (r *Reader) ReadByNameBytes(name []byte, dst *Entity) error {
	if err := r.Read(IDOfBytes(name), dst); err != nil {
		return err
	}
	if string(dst.NameBytes()) != string(name) {
		return ErrNotFound
	}
	return nil
}

// Range calls fn with every entity, each read consistently (but not all at
// the same instant: use Snapshot for that), until fn returns false. The
// *Entity passed to fn is reused between calls.
func (r *Reader) Range(fn func(*Entity) bool) error {
	var e Entity
	used := uint32(min(ld64(r.base, L.HdrSlotsUsed), uint64(r.capacity)))
	for i := uint32(0); i < used; i++ {
		if st := r.status(); st != L.StatusReady {
			return r.statusErr("range", 0, st)
		}
		p := r.slot(i)
		var rt retry
		for {
			s1 := ld64(p, L.SlotSeq)
			if s1&1 == 0 {
				decodeSlot(p, &e)
				if ld64(p, L.SlotSeq) == s1 {
					break
				}
			}
			if err := r.again(&rt, "range", 0, func() string { return fmt.Sprintf("slot %d", i) }); err != nil {
				return err
			}
		}
		if e.ID != 0 && !fn(&e) {
			return nil
		}
	}
	return nil
}

// Snapshot reads every entity as of one table seq: no commit is half
// visible in it. It appends to dst[:0] (give it capacity Capacity() to
// allocate nothing) and returns the entities and the table seq. A writer
// that commits continuously can starve it: after MaxRetries attempts it
// fails with ErrTorn (or ErrWriterDead).
func (r *Reader) Snapshot(dst []Entity) ([]Entity, uint64, error) {
	dst = dst[:0]
	var rt retry
	for {
		if st := r.status(); st != L.StatusReady {
			return dst, 0, r.statusErr("snapshot", 0, st)
		}
		s1 := ld64(r.base, L.HdrTableSeq)
		if s1&1 == 0 {
			dst = dst[:0]
			used := uint32(min(ld64(r.base, L.HdrSlotsUsed), uint64(r.capacity)))
			ok := true
			for i := uint32(0); i < used && ok; i++ {
				if len(dst) == cap(dst) {
					dst = append(dst, Entity{})[:len(dst)]
				}
				e := &dst[:len(dst)+1][len(dst)]
				p := r.slot(i)
				q1 := ld64(p, L.SlotSeq)
				if q1&1 != 0 {
					ok = false
					break
				}
				decodeSlot(p, e)
				if ld64(p, L.SlotSeq) != q1 {
					ok = false
					break
				}
				if e.ID != 0 {
					dst = dst[:len(dst)+1]
				}
				if i&63 == 63 && ld64(r.base, L.HdrTableSeq) != s1 {
					ok = false
				}
			}
			if ok && ld64(r.base, L.HdrTableSeq) == s1 {
				return dst, s1, nil
			}
		}
		if err := r.again(&rt, "snapshot", 0, func() string {
			return fmt.Sprintf("table seq %d", ld64(r.base, L.HdrTableSeq))
		}); err != nil {
			return dst[:0], 0, err
		}
	}
}

// decodeSlot copies a slot into dst with atomic loads, without any
// consistency check, and returns the ID it read. Lengths are clamped so a
// torn read can never index out of range.
func decodeSlot(p unsafe.Pointer, dst *Entity) uint64 {
	id := ld64(p, L.SlotID)
	dst.ID = id
	dst.Incarnation = ld64(p, L.SlotIncarn)
	dst.ChangedAt = int64(ld64(p, L.SlotChangedAt))
	dst.ChangedSeq = ld64(p, L.SlotChangedSeq)
	dst.WrittenAt = int64(ld64(p, L.SlotWrittenAt))
	ob := ld64(p, L.SlotOwnerBy)
	dst.Owner = wire.NodeID(ob >> L.OwnerShift)
	dst.ChangedBy = wire.NodeID(ob >> L.ChangedByShift)
	m := ld64(p, L.SlotMeta)
	dst.Kind = wire.EntityKind(m >> L.MetaKindShift)
	dst.State = wire.State(m >> L.MetaStateShift)
	nl := min(uint8(m>>L.MetaNameLenShift), wire.MaxName)
	na := min(uint8(m>>L.MetaNAlarmsShift), MaxAlarms)
	dst.NameLen, dst.NAlarms = nl, na
	loadBytes(p, L.SlotName, dst.Name[:], int(nl))
	for j := 0; j < int(na); j++ {
		ap := unsafe.Add(p, L.SlotAlarms+j*L.AlarmSize)
		a := &dst.Alarms[j]
		a.RaisedAt = int64(ld64(ap, L.AlarmRaisedAt))
		bm := ld64(ap, L.AlarmByMeta)
		a.RaisedBy = wire.NodeID(bm >> L.AlarmByShift)
		a.Severity = wire.Severity(bm >> L.AlarmSevShift)
		cl := min(uint8(bm>>L.AlarmCauseLnShift), wire.MaxCause)
		a.CauseLen = cl
		loadBytes(ap, L.AlarmCause, a.Cause[:], int(cl))
	}
	return id
}

// loadBytes copies the words holding the first n bytes at p+off into b
// (len(b) is a multiple of 8 and >= n).
func loadBytes(p unsafe.Pointer, off uintptr, b []byte, n int) {
	for i := 0; i < n && i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], ld64(p, off+uintptr(i)))
	}
}

// Status of a segment, from its ready word.
type Status uint32

// Status values.
const (
	StatusInit     Status = 0 // being built
	StatusReady    Status = 1 // maintained by a live writer
	StatusClosed   Status = 2 // the writer closed it
	StatusReplaced Status = 3 // a newer segment replaced it: reopen
)

func (s Status) String() string {
	switch s {
	case StatusInit:
		return "init"
	case StatusReady:
		return "ready"
	case StatusClosed:
		return "closed"
	case StatusReplaced:
		return "replaced"
	}
	return "unknown"
}

// HeaderInfo is what the header says about the segment and its writer.
type HeaderInfo struct {
	Major, Minor     int
	Status           Status
	Generation       uint64
	Capacity         int
	EventRingSize    int
	Count            int // live entities
	Seq              uint64
	NodeID           wire.NodeID
	Master           wire.NodeID
	Epoch            uint64
	Stale            bool
	WriterPID        int
	WriterStart      time.Duration // CLOCK_MONOTONIC
	Heartbeat        time.Duration // CLOCK_MONOTONIC of the last beat
	HeartbeatAge     time.Duration
	HeartbeatTimeout time.Duration
	WriterAlive      bool   // ready, recent heartbeat, writer process exists
	WriterDeadReason string // why WriterAlive is false
}

// Header reads the header; master, epoch, stale, count and seq are read
// consistently (as of one table seq). It reads /proc to check the writer.
func (r *Reader) Header() HeaderInfo {
	p := r.base
	v := ld32(p, L.HdrVersion)
	h := HeaderInfo{
		Major: int(v & 0xffff), Minor: int(v >> 16),
		Status:           Status(ld32(p, L.HdrReady)),
		Generation:       ld64(p, L.HdrGeneration),
		Capacity:         int(r.capacity),
		EventRingSize:    int(r.ringCap),
		NodeID:           wire.NodeID(ld32(p, L.HdrNodeID)),
		WriterPID:        int(ld32(p, L.HdrWriterPID)),
		WriterStart:      time.Duration(ld64(p, L.HdrWriterStart)),
		HeartbeatTimeout: time.Duration(ld64(p, L.HdrHBTimeout)),
	}
	for try := 0; try <= r.opts.MaxRetries; try++ {
		if try > r.opts.SpinRetries {
			runtime.Gosched()
		}
		s1 := ld64(p, L.HdrTableSeq)
		h.Master = wire.NodeID(ld32(p, L.HdrMaster))
		h.Epoch = ld64(p, L.HdrEpoch)
		h.Stale = ld32(p, L.HdrStale) != 0
		h.Count = int(ld64(p, L.HdrCount))
		h.Seq = s1
		if s1&1 == 0 && ld64(p, L.HdrTableSeq) == s1 {
			break
		}
	}
	h.Heartbeat = time.Duration(ld64(p, L.HdrHeartbeat))
	h.HeartbeatAge = time.Duration(monoNow()) - h.Heartbeat
	if h.Status == StatusReady {
		h.WriterAlive, h.WriterDeadReason = r.writerAlive()
	} else {
		h.WriterDeadReason = "segment " + h.Status.String()
	}
	return h
}

// Check reports whether the segment is still the live one: nil, or an
// error wrapping ErrClosed, ErrRecreated (the writer replaced the segment,
// or the file at the path is another one: reopen), or ErrWriterDead.
func (r *Reader) Check() error {
	if st := r.status(); st != L.StatusReady {
		return r.statusErr("check", 0, st)
	}
	if r.mapped {
		var st unix.Stat_t
		if err := unix.Stat(r.path, &st); err != nil {
			return &Error{Op: "check", Path: r.path, Err: ErrClosed, Detail: "segment file removed"}
		}
		if st.Dev != r.dev || st.Ino != r.ino {
			detail := "another file at the path"
			if fd, err := unix.Open(r.path, unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
				if g, ok := oldGeneration(fd); ok {
					detail = fmt.Sprintf("generation %d -> %d", r.gen, g)
				}
				unix.Close(fd)
			}
			return &Error{Op: "check", Path: r.path, Err: ErrRecreated, Detail: detail}
		}
	}
	if ok, why := r.writerAlive(); !ok {
		return &Error{Op: "check", Path: r.path, Err: ErrWriterDead, Detail: why}
	}
	return nil
}

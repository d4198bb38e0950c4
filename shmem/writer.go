package shmem

import (
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/ring"
	L "github.com/fmagent/fmagent/shmem/internal/layout"
	"github.com/fmagent/fmagent/wire"
)

// DefaultPath is the segment path the agent uses unless configured otherwise
// (FMSHM_DEFAULT_PATH in fmshm.h).
const DefaultPath = "/dev/shm/fmagent"

// Options configure a segment.
type Options struct {
	// Capacity is the number of entity slots (default 4096). Each slot
	// holds MaxAlarms (8) alarms: that number is fixed by the layout.
	Capacity int
	// EventRingSize is the number of events the event ring holds, rounded
	// up to a power of two (default 4096).
	EventRingSize int
	// NodeID is the local node, published in the header.
	NodeID wire.NodeID
	// HeartbeatTimeout is published in the header: readers consider the
	// writer dead when its last Beat is older (default 3s). Call Beat well
	// within it.
	HeartbeatTimeout time.Duration
	// Mode is the file mode of the segment (default 0644: any local user
	// may read, only the writer writes).
	Mode os.FileMode
}

func (o *Options) defaults() error {
	if o.Capacity == 0 {
		o.Capacity = 4096
	}
	if o.EventRingSize == 0 {
		o.EventRingSize = 4096
	}
	if o.HeartbeatTimeout == 0 {
		o.HeartbeatTimeout = 3 * time.Second
	}
	if o.Mode == 0 {
		o.Mode = 0o644
	}
	if o.Capacity < 1 || o.Capacity > 1<<24 || o.EventRingSize < 1 || o.EventRingSize > 1<<24 || o.HeartbeatTimeout < 0 {
		return fmt.Errorf("shmem: options out of range (capacity 1..%d, event ring 1..%d)", 1<<24, 1<<24)
	}
	o.EventRingSize = L.NextPow2(o.EventRingSize)
	return nil
}

type opKind uint8

const (
	opPut opKind = 1 + iota
	opDelete
)

type op struct {
	kind opKind
	id   uint64
	ent  int // index into Writer.staged for opPut
}

// stageChunk is how many entities one chunk of a writer's staging holds
// (888 bytes each: 57 KB a chunk).
const stageChunk = 64

// staging holds the entities a transaction puts, copied (the caller may
// reuse its Entity at once), in chunks that are kept for the next
// transactions. Chunks, not one slice: a slice grown by append copied every
// entity staged so far at each doubling, and a transaction of thousands
// (the whole table, after a snapshot replaced it) cost tens of
// milliseconds the first time, on the agent's real-time loop
// (BenchmarkFirstBigCommit).
type staging struct {
	chunks [][]Entity
	n      int
}

// add copies e into the staging and returns its index.
func (s *staging) add(e *Entity) int {
	c := s.n / stageChunk
	if c == len(s.chunks) {
		s.chunks = append(s.chunks, make([]Entity, stageChunk))
	}
	s.chunks[c][s.n%stageChunk] = *e
	s.n++
	return s.n - 1
}

// at returns the entity staged at index i.
func (s *staging) at(i int) *Entity { return &s.chunks[i/stageChunk][i%stageChunk] }

// reset empties the staging, keeping its chunks.
func (s *staging) reset() { s.n = 0 }

// Writer is the single writer of a segment. Its methods are not safe for
// concurrent use, with one exception: Beat may run concurrently with any
// method but Close.
//
// Changes are staged between Begin and Commit and become visible to readers
// all at once at Commit. Put, Delete, SetMaster and SetStale called outside
// Begin/Commit are committed at once, each as its own transaction.
type Writer struct {
	closeMu sync.Mutex // makes Close idempotent across goroutines
	path    string
	fd      int
	mapped  bool
	mem     []byte
	base    unsafe.Pointer
	index   unsafe.Pointer
	slots   unsafe.Pointer
	geo     L.Geometry
	mask    uint32
	shift   uint
	seed    uint64 // the index seed: random, so bucket collisions cannot be computed in advance
	dev     uint64
	ino     uint64
	bc      *ring.Broadcaster
	closed  bool
	// replaced says what foreign file Create replaced at path ("" if none).
	replaced string

	seq   uint64 // last published (even) table seq
	count int    // live entities
	used  int    // slots ever allocated (high-water mark)
	tombs int    // tombstones in the index
	free  []uint32
	// own is the writer's private record of where each live entity is
	// (ID → slot). The segment is shared memory that others with write
	// access (root) can change under us: the writer never follows a slot
	// reference read back from it, and rebuilds the index from own when
	// what it reads there disagrees.
	own map[uint64]uint32

	inTxn    bool
	ops      []op
	staged   staging
	txnLive  map[uint64]bool // presence of IDs after the staged ops
	txnCount int             // live count after the staged ops
	ctlDirty bool
	master   wire.NodeID
	epoch    uint64
	stale    bool

	scratch Entity
	evbuf   [L.EventRecord]byte
}

// Create creates the segment file at path (normally under /dev/shm) and
// returns its writer. The new segment is built in a file created with O_EXCL
// under a random name beside path and renamed over path when ready, so a
// reader never opens a half-built segment and nobody can plant the file the
// writer builds in.
//
// What was at path before is never opened as the agent's and trusted: if it
// is a segment this UID created (a regular file it owns, writable by nobody
// else), Create fails with ErrInUse when a live writer holds it, and
// otherwise marks it replaced (its readers get ErrRecreated); anything else
// (a file another user planted, one writable by others, a symlink, a FIFO)
// is left untouched and replaced by the rename, and ReplacedForeign says
// what it was, for the log. If the rename cannot replace it (a user other
// than root cannot replace another user's file in /dev/shm), Create fails
// with ErrForeign.
func Create(path string, opts Options) (*Writer, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	fail := func(err error, detail string) (*Writer, error) {
		return nil, &Error{Op: "create", Path: path, Err: err, Detail: detail}
	}
	gen := uint64(time.Now().UnixNano())

	old, err := inspectOld(path)
	if err != nil {
		return fail(err, "open old segment")
	}
	if old.fd >= 0 {
		defer unix.Close(old.fd)
		if err := unix.Flock(old.fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			return fail(ErrInUse, "flock: "+err.Error())
		}
		if g, ok := oldGeneration(old.fd); ok && g >= gen {
			gen = g + 1
		}
	}

	geo := L.Compute(opts.Capacity, opts.EventRingSize)
	fd, tmp, err := createTemp(path, opts.Mode.Perm())
	if err != nil {
		return fail(err, "create a temporary segment beside it")
	}
	cleanup := func() { unix.Close(fd); unix.Unlink(tmp) }
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		cleanup()
		return fail(err, "flock")
	}
	if err := unix.Fchmod(fd, uint32(opts.Mode.Perm())); err != nil {
		cleanup()
		return fail(err, "fchmod")
	}
	if err := reserve(fd, geo.TotalSize); err != nil {
		cleanup()
		return fail(err, fmt.Sprintf("reserving %d bytes for %d entities and %d events", geo.TotalSize, opts.Capacity, geo.RingCapacity))
	}
	mem, err := unix.Mmap(fd, 0, geo.TotalSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		cleanup()
		return fail(err, "mmap")
	}
	prefault(mem)
	w := &Writer{path: path, fd: fd, mapped: true, mem: mem, replaced: old.foreign}
	if err := w.init(geo, opts, gen); err != nil {
		unix.Munmap(mem)
		cleanup()
		return fail(err, "init")
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err == nil {
		w.dev, w.ino = st.Dev, st.Ino
	}
	if old.fd >= 0 {
		markReplaced(old.fd)
	}
	if err := os.Rename(tmp, path); err != nil {
		unix.Munmap(mem)
		cleanup()
		if old.foreign != "" {
			return fail(ErrForeign, "a file "+old.foreign+" is at the path and cannot be replaced ("+err.Error()+"): remove it")
		}
		return fail(err, "rename")
	}
	return w, nil
}

// ReplacedForeign says what Create found at the segment's path and replaced
// without trusting it ("" if nothing, or an old segment of this UID): the
// agent logs it, since someone else put it there.
func (w *Writer) ReplacedForeign() string { return w.replaced }

// oldSegment is what Create found at the path: fd is an open descriptor
// (read-only) of an old segment of this UID, or -1; foreign says why the
// file there is not trusted ("" if there is none or it is ours).
type oldSegment struct {
	fd      int
	foreign string
}

// inspectOld looks at what is at path without following a symlink or
// blocking on a FIFO, and keeps it open only if it is a segment this UID
// created.
func inspectOld(path string) (oldSegment, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	switch {
	case err == unix.ENOENT:
		return oldSegment{fd: -1}, nil
	case err == unix.ELOOP:
		return oldSegment{fd: -1, foreign: "that is a symbolic link"}, nil
	case err == unix.EACCES || err == unix.EPERM:
		return oldSegment{fd: -1, foreign: "this user cannot read"}, nil
	case err != nil:
		return oldSegment{fd: -1}, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return oldSegment{fd: -1}, err
	}
	self := uint32(unix.Geteuid())
	why := foreign(&st, self, 0)
	if why == "" && st.Uid != self {
		why = fmt.Sprintf("owned by uid %d, not this agent's uid %d", st.Uid, self)
	}
	if why != "" {
		unix.Close(fd)
		return oldSegment{fd: -1, foreign: why}, nil
	}
	return oldSegment{fd: fd}, nil
}

// createTemp creates, with O_EXCL, a file under a random name in path's
// directory: a name nobody can guess, so nobody can plant it.
func createTemp(path string, perm os.FileMode) (int, string, error) {
	var err error
	for range 8 {
		var b [8]byte
		if _, err = crand.Read(b[:]); err != nil {
			return -1, "", err
		}
		tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.tmp.%d.%x", filepath.Base(path), os.Getpid(), b))
		var fd int
		fd, err = unix.Open(tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm))
		if err == nil {
			return fd, tmp, nil
		}
		if err != unix.EEXIST {
			break
		}
	}
	return -1, "", err
}

// oldGeneration reads the generation of an existing segment, if valid.
func oldGeneration(fd int) (uint64, bool) {
	var b [L.HeaderSize]byte
	n, err := unix.Pread(fd, b[:], 0)
	if err != nil || n < L.HeaderSize || binary.LittleEndian.Uint64(b[L.HdrMagic:]) != L.Magic {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[L.HdrGeneration:]), true
}

// markReplaced sets the ready word of an old segment to StatusReplaced and
// wakes its waiters, so that readers still mapping it learn at once.
func markReplaced(fd int) {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Size < L.HeaderRegion {
		return
	}
	// fd is read-only; the same file opened again through it, to write.
	wfd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(wfd)
	m, err := unix.Mmap(wfd, 0, L.HeaderRegion, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return
	}
	p := unsafe.Pointer(&m[0])
	if ld64(p, L.HdrMagic) == L.Magic {
		st32(p, L.HdrReady, L.StatusReplaced)
		wake(unsafe.Add(p, L.HdrTableSeq))
	}
	unix.Munmap(m)
}

// reserve gives the segment file its size with every page allocated
// (fallocate), where the filesystem can (tmpfs, /dev/shm, can), and Create
// then maps every page in (prefault). Two reasons, both about the table's
// first writes, which the agent makes on its real-time loop:
//
//   - A sparse file's page is allocated, zeroed and (under the agent's
//     mlockall, MCL_ONFAULT) locked by the fault of the first store to it:
//     every fourth new entity's slot, each new index page, every 128th
//     event of the ring's first lap. Measured: a new segment's first
//     commit of 4,096 entities (BenchmarkFirstBigCommit) took 21 ms
//     sparse, 11 ms reserved and populated.
//   - On a full tmpfs such a fault is a SIGBUS, which kills the agent the
//     day its table grows; reserved, a segment that cannot fit fails here,
//     at start, with ENOSPC.
//
// The price is memory: the whole segment is resident from the start (4.2
// MiB at the default 4,096 entities and 4,096 events) instead of growing
// with the table.
func reserve(fd, size int) error {
	err := unix.Fallocate(fd, 0, 0, int64(size))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS):
		// Not on this filesystem (a test directory elsewhere than tmpfs):
		// sparse, as before.
		if err := unix.Ftruncate(fd, int64(size)); err != nil {
			return fmt.Errorf("ftruncate: %w", err)
		}
		return nil
	}
	return fmt.Errorf("fallocate: %w", err)
}

// prefault maps every page of a new segment into the writer's page tables
// writable, before anything is published in it (see reserve).
// MADV_POPULATE_WRITE (Linux 5.14) does it in one call; MAP_POPULATE
// would not: under the agent's mlockall(MCL_FUTURE|MCL_ONFAULT) the kernel
// skips populating a new mapping (the resident set showed 172 KiB of the
// segment's 4 MiB). Where the call is refused, each page is written (a
// zero onto a zero: nothing is published yet).
func prefault(mem []byte) {
	if len(mem) == 0 || unix.Madvise(mem, unix.MADV_POPULATE_WRITE) == nil {
		return
	}
	for off := 0; off < len(mem); off += os.Getpagesize() {
		mem[off] = 0
	}
}

// NewHeap returns a writer whose segment lives in a Go byte slice instead of
// a file: the same layout and code, visible to the race detector (which
// cannot see mmap'd memory). Read it with (*Writer).Reader.
func NewHeap(opts Options) (*Writer, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	geo := L.Compute(opts.Capacity, opts.EventRingSize)
	raw := make([]byte, geo.TotalSize+L.CacheLine)
	off := 0
	if r := int(uintptr(unsafe.Pointer(&raw[0])) % L.CacheLine); r != 0 {
		off = L.CacheLine - r
	}
	w := &Writer{fd: -1, mem: raw[off : off+geo.TotalSize : off+geo.TotalSize]}
	if err := w.init(geo, opts, uint64(time.Now().UnixNano())); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) init(geo L.Geometry, opts Options, gen uint64) error {
	w.geo = geo
	w.base = unsafe.Pointer(&w.mem[0])
	w.index = unsafe.Add(w.base, geo.IndexOff)
	w.slots = unsafe.Add(w.base, geo.SlotsOff)
	w.mask = uint32(geo.Buckets - 1)
	w.shift = L.Shift(uint32(geo.Buckets))
	var sb [8]byte
	if _, err := crand.Read(sb[:]); err != nil {
		return fmt.Errorf("index seed: %w", err)
	}
	w.seed = binary.LittleEndian.Uint64(sb[:])
	w.free = make([]uint32, 0, geo.Capacity)
	w.own = make(map[uint64]uint32, geo.Capacity) // sized once: Put never grows it
	w.txnLive = make(map[uint64]bool)
	w.ops = make([]op, 0, 64)
	bc, err := ring.NewBroadcaster(w.mem[geo.RingOff:geo.RingOff+geo.RingSize], geo.RingCapacity, L.EventRecord)
	if err != nil {
		return err
	}
	w.bc = bc
	p := w.base
	var ticks uint64
	if _, t, err := procStat(os.Getpid()); err == nil {
		ticks = t
	}
	st64(p, L.HdrMagic, L.Magic)
	st32(p, L.HdrVersion, L.Major|L.Minor<<16)
	st32(p, L.HdrHeaderSize, L.HeaderSize)
	st64(p, L.HdrTotalSize, uint64(geo.TotalSize))
	st64(p, L.HdrIndexOff, uint64(geo.IndexOff))
	st64(p, L.HdrIndexSize, uint64(geo.IndexSize))
	st64(p, L.HdrSlotsOff, uint64(geo.SlotsOff))
	st64(p, L.HdrSlotsSize, uint64(geo.SlotsSize))
	st64(p, L.HdrRingOff, uint64(geo.RingOff))
	st64(p, L.HdrRingSize, uint64(geo.RingSize))
	st32(p, L.HdrCapacity, uint32(geo.Capacity))
	st32(p, L.HdrSlotSize, L.SlotSize)
	st32(p, L.HdrMaxAlarms, L.MaxAlarms)
	st32(p, L.HdrIndexBuckets, uint32(geo.Buckets))
	st32(p, L.HdrRingCapacity, uint32(geo.RingCapacity))
	st32(p, L.HdrRingSlotSize, L.RingSlotSize)
	st64(p, L.HdrGeneration, gen)
	st32(p, L.HdrWriterPID, uint32(os.Getpid()))
	st32(p, L.HdrNodeID, uint32(opts.NodeID))
	now := monoNow()
	st64(p, L.HdrWriterStart, uint64(now))
	st64(p, L.HdrWriterStartTk, ticks)
	st64(p, L.HdrHBTimeout, uint64(opts.HeartbeatTimeout))
	st64(p, L.HdrIndexSeed, w.seed)
	st64(p, L.HdrHeartbeat, uint64(now))
	// The index, slots and the rest of the header are zero (fresh file or
	// fresh slice). The ready word is written last.
	st32(p, L.HdrReady, L.StatusReady)
	return nil
}

// Path is the segment's path ("" for a heap segment).
func (w *Writer) Path() string { return w.path }

// Seq is the last published table seq (even; 0 before the first commit).
func (w *Writer) Seq() uint64 { return w.seq }

// Len is the number of live entities.
func (w *Writer) Len() int { return w.count }

// Capacity is the number of entity slots.
func (w *Writer) Capacity() int { return w.geo.Capacity }

// Generation is the segment's generation.
func (w *Writer) Generation() uint64 { return ld64(w.base, L.HdrGeneration) }

// Begin starts a transaction: the changes staged until Commit are published
// together. Begin inside an open transaction does nothing.
func (w *Writer) Begin() {
	if w.inTxn {
		return
	}
	w.inTxn = true
	w.txnCount = w.count
}

// Abort drops the staged changes of the open transaction.
func (w *Writer) Abort() { w.resetTxn() }

func (w *Writer) resetTxn() {
	w.inTxn = false
	w.ops = w.ops[:0]
	w.staged.reset()
	clear(w.txnLive)
	w.ctlDirty = false
}

func validate(e *Entity) error {
	if e.ID == 0 || int(e.NameLen) > wire.MaxName || int(e.NAlarms) > MaxAlarms {
		return ErrInvalid
	}
	if e.NameLen > 0 && IDOfBytes(e.NameBytes()) != e.ID {
		return ErrInvalid
	}
	for i := range e.AlarmList() {
		if int(e.Alarms[i].CauseLen) > wire.MaxCause {
			return ErrInvalid
		}
	}
	return nil
}

// live reports whether id is present once the staged ops are applied.
func (w *Writer) live(id uint64) bool {
	if v, ok := w.txnLive[id]; ok {
		return v
	}
	_, found := w.find(id)
	return found
}

// Put inserts e, or overwrites the entity with e.ID. It fails with
// ErrInvalid (zero ID, ID not IDOf(name), a field too long) or ErrFull.
// The entity is copied; e may be reused at once.
func (w *Writer) Put(e *Entity) error {
	if w.closed {
		return &Error{Op: "put", Path: w.path, ID: e.ID, Err: ErrClosed}
	}
	if err := validate(e); err != nil {
		return &Error{Op: "put", Path: w.path, ID: e.ID, Err: err}
	}
	auto := !w.inTxn
	w.Begin()
	if !w.live(e.ID) {
		if w.txnCount >= w.geo.Capacity {
			if auto {
				w.resetTxn()
			}
			return &Error{Op: "put", Path: w.path, ID: e.ID, Err: ErrFull}
		}
		w.txnCount++
		w.txnLive[e.ID] = true
	}
	w.ops = append(w.ops, op{kind: opPut, id: e.ID, ent: w.staged.add(e)})
	if auto {
		w.Commit()
	}
	return nil
}

// Delete removes the entity id (a no-op if absent).
func (w *Writer) Delete(id uint64) {
	if w.closed || id == 0 {
		return
	}
	auto := !w.inTxn
	w.Begin()
	if w.live(id) {
		w.txnCount--
		w.txnLive[id] = false
		w.ops = append(w.ops, op{kind: opDelete, id: id})
	}
	if auto {
		w.Commit()
	}
}

// SetMaster publishes the master the node follows and the election epoch.
func (w *Writer) SetMaster(master wire.NodeID, epoch uint64) {
	if w.closed {
		return
	}
	auto := !w.inTxn
	w.Begin()
	w.master, w.epoch, w.ctlDirty = master, epoch, true
	if auto {
		w.Commit()
	}
}

// SetStale publishes whether the table is stale (no word from the master for
// longer than the stale timeout).
func (w *Writer) SetStale(stale bool) {
	if w.closed {
		return
	}
	auto := !w.inTxn
	w.Begin()
	w.stale, w.ctlDirty = stale, true
	if auto {
		w.Commit()
	}
}

// Beat publishes the writer's heartbeat (CLOCK_MONOTONIC now). Call it well
// within Options.HeartbeatTimeout. Safe to call concurrently with any method
// but Close.
func (w *Writer) Beat() {
	st64(w.base, L.HdrHeartbeat, uint64(monoNow()))
}

// Commit publishes the staged changes: the table seq goes odd, every change
// is written (each slot under its own seqlock), the events are appended,
// the table seq goes even, and waiters are woken. It returns the new table
// seq (the current one if nothing was staged).
func (w *Writer) Commit() uint64 {
	if !w.inTxn || w.closed {
		return w.seq
	}
	if len(w.ops) == 0 && !w.ctlDirty {
		w.resetTxn()
		return w.seq
	}
	p := w.base
	next := w.seq + 2
	st64(p, L.HdrTableSeq, w.seq+1)
	for i := range w.ops {
		o := &w.ops[i]
		switch o.kind {
		case opPut:
			w.applyPut(w.staged.at(o.ent), next)
		case opDelete:
			w.applyDelete(o.id, next)
		}
	}
	if w.ctlDirty {
		st64(p, L.HdrEpoch, w.epoch)
		st32(p, L.HdrMaster, uint32(w.master))
		var s uint32
		if w.stale {
			s = 1
		}
		st32(p, L.HdrStale, s)
	}
	st64(p, L.HdrCount, uint64(w.count))
	st64(p, L.HdrSlotsUsed, uint64(w.used))
	st64(p, L.HdrTableSeq, next)
	w.seq = next
	wake(unsafe.Add(p, L.HdrTableSeq))
	w.resetTxn()
	return next
}

func (w *Writer) slot(i uint32) unsafe.Pointer {
	return unsafe.Add(w.slots, uintptr(i)*L.SlotSize)
}

func (w *Writer) publish(kind EventKind, id uint64, st wire.State, sev wire.Severity, seq uint64) {
	b := w.evbuf[:]
	binary.LittleEndian.PutUint64(b[0:], seq)
	binary.LittleEndian.PutUint64(b[8:], id)
	binary.LittleEndian.PutUint64(b[16:], uint64(kind)<<L.EventKindShift|uint64(st)<<L.EventStShift|uint64(sev)<<L.EventSevShift)
	w.bc.Publish(b)
}

func (w *Writer) applyPut(e *Entity, seq uint64) {
	s, found := w.find(e.ID)
	if found {
		old := &w.scratch
		decodeSlot(w.slot(s), old)
		if old.Equal(e) {
			return
		}
		w.writeSlot(s, e)
		evs := 0
		if old.State != e.State {
			w.publish(EventStateChanged, e.ID, e.State, 0, seq)
			evs++
		}
		for i := range e.AlarmList() {
			a := &e.Alarms[i]
			oa, ok := old.FindAlarm(a.CauseBytes())
			if !ok || oa.Severity != a.Severity || oa.RaisedAt != a.RaisedAt || oa.RaisedBy != a.RaisedBy {
				w.publish(EventAlarmRaised, e.ID, e.State, a.Severity, seq)
				evs++
			}
		}
		for i := range old.AlarmList() {
			oa := &old.Alarms[i]
			if _, ok := e.FindAlarm(oa.CauseBytes()); !ok {
				w.publish(EventAlarmCleared, e.ID, e.State, oa.Severity, seq)
				evs++
			}
		}
		if evs == 0 {
			w.publish(EventPut, e.ID, e.State, 0, seq)
		}
		return
	}
	var s2 uint32
	if n := len(w.free); n > 0 {
		s2 = w.free[n-1]
		w.free = w.free[:n-1]
	} else {
		s2 = uint32(w.used)
		w.used++
	}
	w.writeSlot(s2, e)
	w.own[e.ID] = s2
	w.indexInsert(e.ID, s2)
	w.count++
	w.publish(EventPut, e.ID, e.State, 0, seq)
	for i := range e.AlarmList() {
		w.publish(EventAlarmRaised, e.ID, e.State, e.Alarms[i].Severity, seq)
	}
}

func (w *Writer) applyDelete(id uint64, seq uint64) {
	s, found := w.find(id)
	if !found {
		return
	}
	b := w.bucketOf(id, s)
	delete(w.own, id)
	st := wire.State(ld64(w.slot(s), L.SlotMeta) >> L.MetaStateShift)
	// Tombstone first, then free the slot: a reader holding the old slot
	// reference sees either the entity or an empty/reused slot, which it
	// detects by the ID.
	st64(w.bucket(b), L.BucketRef, 0)
	w.tombs++
	sp := w.slot(s)
	sq := ld64(sp, L.SlotSeq)
	st64(sp, L.SlotSeq, sq+1)
	st64(sp, L.SlotID, 0)
	st64(sp, L.SlotMeta, 0)
	st64(sp, L.SlotSeq, sq+2)
	w.free = append(w.free, s)
	w.count--
	w.publish(EventDelete, id, st, 0, seq)
	if w.count+w.tombs > int(w.mask+1)*3/4 {
		w.rebuild()
	}
}

// writeSlot writes e into slot i under the slot's seqlock: seq odd, data,
// seq even, every word with an atomic store.
func (w *Writer) writeSlot(i uint32, e *Entity) {
	p := w.slot(i)
	// Read before the seqlock opens; the row is readable a few stores later.
	now := time.Now().UnixNano()
	sq := ld64(p, L.SlotSeq)
	st64(p, L.SlotSeq, sq+1)
	st64(p, L.SlotID, e.ID)
	st64(p, L.SlotIncarn, e.Incarnation)
	st64(p, L.SlotChangedAt, uint64(e.ChangedAt))
	st64(p, L.SlotChangedSeq, e.ChangedSeq)
	st64(p, L.SlotWrittenAt, uint64(now))
	st64(p, L.SlotOwnerBy, uint64(e.Owner)<<L.OwnerShift|uint64(e.ChangedBy)<<L.ChangedByShift)
	st64(p, L.SlotMeta, uint64(e.Kind)<<L.MetaKindShift|uint64(e.State)<<L.MetaStateShift|
		uint64(e.NameLen)<<L.MetaNameLenShift|uint64(e.NAlarms)<<L.MetaNAlarmsShift)
	storeBytes(p, L.SlotName, e.Name[:], int(e.NameLen))
	for j := range e.AlarmList() {
		a := &e.Alarms[j]
		ap := unsafe.Add(p, L.SlotAlarms+j*L.AlarmSize)
		st64(ap, L.AlarmRaisedAt, uint64(a.RaisedAt))
		st64(ap, L.AlarmByMeta, uint64(a.RaisedBy)<<L.AlarmByShift|uint64(a.Severity)<<L.AlarmSevShift|
			uint64(a.CauseLen)<<L.AlarmCauseLnShift)
		storeBytes(ap, L.AlarmCause, a.Cause[:], int(a.CauseLen))
	}
	st64(p, L.SlotSeq, sq+2)
}

// storeBytes stores the first n bytes of b at p+off as little-endian words,
// the last one zero padded.
func storeBytes(p unsafe.Pointer, off uintptr, b []byte, n int) {
	for i := 0; i < n; i += 8 {
		var v uint64
		if i+8 <= n {
			v = binary.LittleEndian.Uint64(b[i:])
		} else {
			for k := i; k < n; k++ {
				v |= uint64(b[k]) << (8 * (k - i))
			}
		}
		st64(p, off+uintptr(i), v)
	}
}

// Reader returns a reader over the writer's own memory: the way to read a
// heap segment (it stays readable after Close, which readers see as
// ErrClosed). For a file segment Open is the usual way; a reader from this
// method shares the writer's mapping and must not be used after Close.
func (w *Writer) Reader() (*Reader, error) {
	r := &Reader{path: w.path, fd: -1, mem: w.mem, opts: defaultReaderOptions}
	if err := r.attach(); err != nil {
		return nil, err
	}
	return r, nil
}

// Close marks the segment closed (readers get ErrClosed), wakes waiters and
// releases the mapping and the lock. The file stays, with the last state;
// call Unlink to remove it.
//
// Close may be called more than once and from any goroutine (a test or a
// shutdown path closing while a deferred Close is pending): the second call
// does nothing.
func (w *Writer) Close() error {
	w.closeMu.Lock()
	defer w.closeMu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	st32(w.base, L.HdrReady, L.StatusClosed)
	wake(unsafe.Add(w.base, L.HdrTableSeq))
	if !w.mapped {
		return nil // heap: the memory stays valid for in-process readers
	}
	err := unix.Munmap(w.mem)
	w.mem, w.base = nil, nil
	if e := unix.Close(w.fd); err == nil {
		err = e
	}
	return err
}

// Unlink removes the segment file if it is still this writer's (a newer
// writer may have replaced it).
func (w *Writer) Unlink() error {
	if w.path == "" {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Stat(w.path, &st); err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return err
	}
	if st.Dev != w.dev || st.Ino != w.ino {
		return nil
	}
	return unix.Unlink(w.path)
}

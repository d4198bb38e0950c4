// Package layout holds the byte offsets of the fmagent shared-memory segment,
// version 2. It is the Go side of the contract that shmem/fmshm.h states for
// C and docs/shm-layout.md states for people; shmem's layout test compiles the
// C header and compares every offset and size printed by C with these.
//
// All multi-byte fields are little-endian. Every field that can change after
// the segment is marked ready is a naturally aligned 64-bit word, written and
// read only with atomic operations; the static header fields (written before
// the ready word) are 32- or 64-bit words, also accessed atomically.
package layout

// Magic is the first word of a segment: the bytes "FMSHMTAB".
const Magic uint64 = 0x4241544d48534d46

// Version of the layout. A reader accepts any minor version of the major it
// knows: a minor version only adds fields in reserved space.
const (
	Major = 2 // 2: the index home bucket is seeded (HdrIndexSeed)
	Minor = 1 // 1: each slot says when this node wrote it (SlotWrittenAt)
)

// Fixed limits that shape the layout.
const (
	MaxAlarms = 8   // alarms per entity slot
	MaxName   = 200 // wire.MaxName
	MaxCause  = 64  // wire.MaxCause
	CacheLine = 64
	PageSize  = 4096
)

// Values of the ready word.
const (
	StatusInit     = 0 // being built; not yet valid
	StatusReady    = 1 // valid, a writer maintains it
	StatusClosed   = 2 // the writer closed it cleanly; contents are the last state
	StatusReplaced = 3 // a newer segment (higher generation) replaced it at the same path
)

// Header: 256 bytes defined at offset 0; the region is HeaderRegion bytes
// (the rest is reserved, zero).
const (
	HeaderSize   = 256
	HeaderRegion = PageSize

	// line 0: identity and geometry (static)
	HdrMagic      = 0  // u64
	HdrVersion    = 8  // u32: major in bits 0..15, minor in bits 16..31
	HdrHeaderSize = 12 // u32
	HdrTotalSize  = 16 // u64: size of the file
	HdrIndexOff   = 24 // u64
	HdrIndexSize  = 32 // u64
	HdrSlotsOff   = 40 // u64
	HdrSlotsSize  = 48 // u64
	HdrRingOff    = 56 // u64

	// line 1: geometry and writer identity (static)
	HdrRingSize      = 64  // u64
	HdrCapacity      = 72  // u32: number of entity slots
	HdrSlotSize      = 76  // u32
	HdrMaxAlarms     = 80  // u32
	HdrIndexBuckets  = 84  // u32: power of two
	HdrRingCapacity  = 88  // u32: events, power of two
	HdrRingSlotSize  = 92  // u32
	HdrGeneration    = 96  // u64
	HdrWriterPID     = 104 // u32
	HdrNodeID        = 108 // u32
	HdrWriterStart   = 112 // u64: CLOCK_MONOTONIC ns when the writer created the segment
	HdrWriterStartTk = 120 // u64: writer's start time in clock ticks since boot (/proc/PID/stat field 22)

	// line 2: rarely written
	HdrReady     = 128 // u32: Status*
	HdrReserved2 = 132 // u32
	HdrIndexSeq  = 136 // u64: seqlock of the index (odd while it is rebuilt)
	HdrHBTimeout = 144 // u64: ns; a heartbeat older than this means the writer is dead
	HdrIndexSeed = 152 // u64: random per segment, mixed into the home bucket (static)

	// line 3: written on every commit or beat
	HdrTableSeq  = 192 // u64: table seqlock; futex word is its low 32 bits (offset 192)
	HdrEpoch     = 200 // u64
	HdrMaster    = 208 // u32
	HdrStale     = 212 // u32: 0 or 1
	HdrCount     = 216 // u64: live entities
	HdrSlotsUsed = 224 // u64: high-water mark of allocated slots
	HdrHeartbeat = 232 // u64: CLOCK_MONOTONIC ns of the writer's last beat
)

// Index: an array of buckets, open addressing with linear probing.
const (
	BucketSize = 16
	BucketID   = 0 // u64: entity ID; 0 = empty (never used)
	BucketRef  = 8 // u64: slot index + 1; 0 with a non-zero ID = tombstone
)

// Entity slot: SlotSize bytes, cache-line aligned, all 64-bit words.
const (
	SlotSize       = 960
	SlotSeq        = 0  // u64 seqlock: odd while written
	SlotID         = 8  // u64: 0 = free slot
	SlotIncarn     = 16 // u64
	SlotChangedAt  = 24 // i64 unix ns
	SlotChangedSeq = 32 // u64
	SlotOwnerBy    = 40 // u64 word: owner u32 at 40, changed_by u32 at 44
	SlotMeta       = 48 // u64 word: kind u8 at 48, state u8 at 49, name_len u8 at 50, nalarms u8 at 51
	SlotWrittenAt  = 56 // i64 unix ns (this node's clock) when this node's writer wrote the row (minor 1; 0 before)
	SlotName       = 64 // 200 bytes (MaxName): name, the last used word zero padded
	SlotNameBytes  = 200
	SlotAlarms     = 264 // MaxAlarms alarm records of AlarmSize bytes
	SlotPad        = SlotAlarms + MaxAlarms*AlarmSize

	AlarmSize       = 80
	AlarmRaisedAt   = 0  // i64 unix ns
	AlarmByMeta     = 8  // u64 word: raised_by u32 at 8, severity u8 at 12, cause_len u8 at 13
	AlarmCause      = 16 // 64 bytes
	AlarmCauseBytes = 64
)

// Byte positions of the packed fields inside the words above (shift = 8*(pos-word)).
const (
	MetaKindShift     = 0
	MetaStateShift    = 8
	MetaNameLenShift  = 16
	MetaNAlarmsShift  = 24
	OwnerShift        = 0
	ChangedByShift    = 32
	AlarmByShift      = 0
	AlarmSevShift     = 32
	AlarmCauseLnShift = 40
)

// Event ring region (see package ring): a 128-byte ring header, then slots.
const (
	RingHeaderSize = 128
	RingCapOff     = 0  // u64: slots, power of two
	RingRecOff     = 8  // u64: payload bytes per record (low 32 bits) | bytes per slot, 8 + payload (high 32), stored as one word
	RingTailOff    = 64 // u64: position of the next record to write

	RingSlotSize   = 32
	RingSlotSeq    = 0  // u64: 2*pos+1 while written, 2*pos+2 when record pos is complete
	EventTableSeq  = 8  // u64
	EventEntityID  = 16 // u64
	EventMeta      = 24 // u64 word: kind u8 at 24, state u8 at 25, severity u8 at 26
	EventRecord    = 24 // payload bytes (slot minus its seq word)
	EventKindShift = 0
	EventStShift   = 8
	EventSevShift  = 16
)

// Geometry computes the offsets and sizes of a segment for the given entity
// capacity and event ring capacity (a power of two).
type Geometry struct {
	Capacity     int
	Buckets      int
	RingCapacity int
	IndexOff     int
	IndexSize    int
	SlotsOff     int
	SlotsSize    int
	RingOff      int
	RingSize     int
	TotalSize    int
}

// NextPow2 returns the smallest power of two >= n (and >= 1).
func NextPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

func alignUp(n, a int) int { return (n + a - 1) / a * a }

// Compute returns the geometry for capacity entities and ringCap events.
func Compute(capacity, ringCap int) Geometry {
	g := Geometry{Capacity: capacity, RingCapacity: ringCap}
	g.Buckets = NextPow2(2 * capacity)
	if g.Buckets < 16 {
		g.Buckets = 16
	}
	g.IndexOff = HeaderRegion
	g.IndexSize = g.Buckets * BucketSize
	g.SlotsOff = alignUp(g.IndexOff+g.IndexSize, PageSize)
	g.SlotsSize = capacity * SlotSize
	g.RingOff = alignUp(g.SlotsOff+g.SlotsSize, PageSize)
	g.RingSize = RingHeaderSize + ringCap*RingSlotSize
	g.TotalSize = alignUp(g.RingOff+g.RingSize, PageSize)
	return g
}

// BucketOf is the home bucket of an entity ID in an index of buckets
// buckets seeded with seed: the ID (an xxhash64 of the name, which anyone
// can compute) XOR the segment's random seed, through the 64-bit finalizer of
// MurmurHash3, top bits. Without the seed, names that share a bucket cannot
// be found in advance; the seed changes with every segment.
func BucketOf(id, seed uint64, buckets uint32) uint32 {
	return uint32(Mix(id^seed) >> (64 - log2(buckets)))
}

// Mix is MurmurHash3's fmix64: every input bit changes every output bit with
// probability one half.
func Mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

func log2(n uint32) uint {
	var l uint
	for (uint32(1) << l) < n {
		l++
	}
	return l
}

// Shift returns 64 - log2(buckets), the shift BucketOf uses.
func Shift(buckets uint32) uint { return 64 - log2(buckets) }

// Package persist keeps the little state an agent must not lose across a
// restart: its incarnation (boot-unique: peers tell a restarted node from a
// delayed packet of its previous life), the membership generation and the
// last persisted membership (the amnesia guard's quorum rule, DESIGN §2), and
// a ceiling on the election epochs it held (a restarted node never claims an
// epoch it used before, so a (master, epoch) pair names one reign; the agent
// writes an epoch with a reserve past it, core.DefaultEpochReserve, and at a
// clean stop the exact epoch, flagged as such: State.EpochExact).
//
// The state is one file, <dir>/state, of two slots of SlotSize bytes; each
// holds one record, in a fixed big-endian binary layout with a CRC-32C
// trailer, the rest of the slot zero:
//
//	offset  size  field
//	0       4     magic "FMST"
//	4       2     version (3)
//	6       2     flags (bit 0: the epoch is exact, State.EpochExact)
//	8       8     incarnation
//	16      8     generation
//	24      4     number of members n (at most MaxMembers)
//	28      4n    members (node IDs)
//	28+4n   8     epoch
//	36+4n   8     save sequence number
//	44+4n   4     CRC-32C (Castagnoli) of every byte of the record before it
//
// Load takes the valid slot with the higher sequence number. Save
// overwrites the other slot in place (pwrite) and fdatasyncs the file: the
// file's size and blocks never change, so that is one flush of the disk,
// where replacing the file (a temporary file, fsync, rename, fsync of the
// directory) took about five times as long here (150 against 800 µs), and
// the agent makes this save on its real-time loop before it may send a new
// epoch or incarnation. A crash in the middle of a save tears only the slot
// being written, whose checksum then fails: Load returns the state before
// that save, which is what the node had promised nothing beyond. The
// file is created (or a file of an earlier version, or a corrupt one,
// replaced) the old way: a temporary file with the record in slot 0,
// fsync, rename, fsync of the directory; a temporary file left behind by a
// crash is ignored by Load and removed then.
//
// A file of version 1 or 2 (one record the size of the file; version 1
// without the epoch, version 2 without the sequence number) still loads;
// the next Save replaces it. An agent older than version 3 refuses a
// version 3 file as corrupt.
//
// The membership generation and members, which nothing waits on (safe to
// lose in a crash: a node that comes back behind on them is what the
// amnesia guard treats as the safe side), are also written, more often and
// without the flush, to a file of their own, <dir>/members (SaveMembers),
// of the same layout, its incarnation and epoch zero, under its own lock
// <dir>/members.lock. Load takes the generation and members of whichever
// file holds the higher generation (a node's generation only grows). Sharing
// no file and no lock, a membership save that a busy disk keeps waiting
// never holds up a save of an epoch or incarnation, which the agent makes
// on its real-time loop.
//
// A save without the flush goes into the slot that holds no durable save,
// so the other keeps the last synced one. The next save of this process to
// that file, synced or not, rewrites that same slot, so a save is never
// written over the only durable one; and a process's first save to a file
// (or NextIncarnation) first flushes the file, which may hold an unsynced
// save of the process before it.
//
// Saves (and NextIncarnation's read-increment-write) are serialized
// between processes, and between goroutines, with flock on the file's lock
// file. Agents sharing a host must have their own state directories.
package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// FileName is the state file's name in the state directory.
	FileName = "state"
	lockName = "state.lock"
	// MembersFileName is the membership file's name in the state
	// directory (SaveMembers).
	MembersFileName = "members"
	membersLockName = "members.lock"
	// MaxMembers bounds the persisted membership.
	MaxMembers = 4096

	// SlotSize is the size of each of the state file's two slots: room
	// for a record of MaxMembers members.
	SlotSize = 20480

	magic   = "FMST"
	version = 3
	hdrLen  = 28
)

// State is what survives a restart.
type State struct {
	Incarnation uint64
	Generation  uint64
	// Members is the last persisted membership (node IDs).
	Members []uint32
	// Epoch is at or above every election epoch the node held: the agent
	// saves a new epoch with a reserve past it (core.DefaultEpochReserve),
	// and a restarted node claims only above it.
	Epoch uint64
	// EpochExact: Epoch is exactly the highest epoch the node held, not a
	// ceiling above it (written at a clean stop, once nothing more could
	// be sent: flags bit 0). A file without it, of any version, is read as
	// a ceiling, which is always safe.
	EpochExact bool
}

// flagEpochExact is the bit of a record's flags that says State.EpochExact.
// Agents before it ignore the flags: they read the exact epoch as the
// highest epoch persisted, which it is.
const flagEpochExact = 1

// ErrCorrupt is wrapped by Load's error for a state file it cannot trust.
var ErrCorrupt = errors.New("corrupt state file")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Path is the state file's path in dir.
func Path(dir string) string { return filepath.Join(dir, FileName) }

// MembersPath is the membership file's path in dir.
func MembersPath(dir string) string { return filepath.Join(dir, MembersFileName) }

// Load reads the state in dir: the state file's, with the generation and
// members of the membership file when it holds a higher generation. A
// missing file (or directory) is the zero State and no error; a file that
// is short, has the wrong magic or version or fails its checksum is an
// error naming the file and wrapping ErrCorrupt.
func Load(dir string) (State, error) {
	s, err := loadFile(Path(dir), decodeState)
	if err != nil {
		return State{}, err
	}
	m, err := loadFile(MembersPath(dir), decodeState)
	if err != nil {
		return State{}, err
	}
	var st State
	if s != nil {
		st = *s
	}
	if m != nil && m.Generation > st.Generation {
		st.Generation, st.Members = m.Generation, m.Members
	}
	return st, nil
}

// decodeState decodes a state (or membership) file.
func decodeState(b []byte) (*State, error) {
	s, _, _, err := decodeFile(b)
	return &s, err
}

// decodeFile decodes a state file: the valid slot with the higher sequence
// number of a version 3 file (slot is its index, seq its number), or the
// one record of a version 1 or 2 file (slot -1).
func decodeFile(b []byte) (s State, slot int, seq uint64, err error) {
	// A version 3 file has its size, and version 3 in a slot that was
	// written (a torn or never written one may hold anything).
	slotted := len(b) == 2*SlotSize &&
		(binary.BigEndian.Uint16(b[4:]) >= version || binary.BigEndian.Uint16(b[SlotSize+4:]) >= version)
	if !slotted {
		s, err = decode(b)
		return s, -1, 0, err
	}
	slot = -1
	var errs [2]error
	for i := 0; i < 2; i++ {
		si, sq, err := decodeSlot(b[i*SlotSize : (i+1)*SlotSize])
		if err != nil {
			errs[i] = err
			continue
		}
		if slot < 0 || sq > seq {
			s, slot, seq = si, i, sq
		}
	}
	if slot < 0 {
		return State{}, -1, 0, fmt.Errorf("no valid slot (slot 0: %v; slot 1: %v)", errs[0], errs[1])
	}
	return s, slot, seq, nil
}

// decodeSlot decodes the version 3 record at the start of a slot.
func decodeSlot(b []byte) (State, uint64, error) {
	if len(b) < hdrLen+20 {
		return State{}, 0, fmt.Errorf("%d bytes, shorter than the smallest record", len(b))
	}
	if string(b[:4]) != magic {
		return State{}, 0, fmt.Errorf("bad magic %q", b[:4])
	}
	if v := binary.BigEndian.Uint16(b[4:]); v != version {
		return State{}, 0, fmt.Errorf("version %d in a slot, want %d", v, version)
	}
	n := binary.BigEndian.Uint32(b[24:])
	if n > MaxMembers {
		return State{}, 0, fmt.Errorf("%d members, at most %d", n, MaxMembers)
	}
	end := hdrLen + 4*int(n) + 16
	if end+4 > len(b) {
		return State{}, 0, fmt.Errorf("%d members do not fit a slot", n)
	}
	if got, sum := crc32.Checksum(b[:end], castagnoli), binary.BigEndian.Uint32(b[end:]); got != sum {
		return State{}, 0, fmt.Errorf("checksum %08x, want %08x", got, sum)
	}
	s := decodeHeader(b, n)
	s.Epoch = binary.BigEndian.Uint64(b[hdrLen+4*int(n):])
	s.EpochExact = binary.BigEndian.Uint16(b[6:])&flagEpochExact != 0
	return s, binary.BigEndian.Uint64(b[hdrLen+4*int(n)+8:]), nil
}

// decodeHeader reads a checked record's incarnation, generation and n
// members (every version's layout).
func decodeHeader(b []byte, n uint32) State {
	s := State{
		Incarnation: binary.BigEndian.Uint64(b[8:]),
		Generation:  binary.BigEndian.Uint64(b[16:]),
	}
	if n > 0 {
		s.Members = make([]uint32, n)
		for i := range s.Members {
			s.Members[i] = binary.BigEndian.Uint32(b[hdrLen+4*i:])
		}
	}
	return s
}

func decode(b []byte) (State, error) {
	if len(b) < hdrLen+4 {
		return State{}, fmt.Errorf("%d bytes, shorter than the smallest state (%d)", len(b), hdrLen+4)
	}
	if string(b[:4]) != magic {
		return State{}, fmt.Errorf("bad magic %q", b[:4])
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return State{}, fmt.Errorf("checksum %08x, want %08x", got, sum)
	}
	v := binary.BigEndian.Uint16(b[4:])
	if v != 1 && v != 2 {
		return State{}, fmt.Errorf("version %d in a file of %d bytes: this agent reads versions 1 and 2, and %d in a file of %d bytes", v, len(b), version, 2*SlotSize)
	}
	tail := 0
	if v >= 2 {
		tail = 8
	}
	n := binary.BigEndian.Uint32(b[24:])
	if n > MaxMembers || len(body) != hdrLen+4*int(n)+tail {
		return State{}, fmt.Errorf("%d members in %d bytes", n, len(body))
	}
	s := decodeHeader(b, n)
	if tail > 0 {
		s.Epoch = binary.BigEndian.Uint64(b[hdrLen+4*int(n):])
	}
	return s, nil
}

// encode encodes s as a version 3 record with sequence number seq.
func encode(s State, seq uint64) ([]byte, error) {
	if len(s.Members) > MaxMembers {
		return nil, fmt.Errorf("persist: %d members, at most %d", len(s.Members), MaxMembers)
	}
	b := make([]byte, hdrLen, hdrLen+4*len(s.Members)+20)
	copy(b, magic)
	binary.BigEndian.PutUint16(b[4:], version)
	if s.EpochExact {
		binary.BigEndian.PutUint16(b[6:], flagEpochExact)
	}
	binary.BigEndian.PutUint64(b[8:], s.Incarnation)
	binary.BigEndian.PutUint64(b[16:], s.Generation)
	binary.BigEndian.PutUint32(b[24:], uint32(len(s.Members)))
	for _, m := range s.Members {
		b = binary.BigEndian.AppendUint32(b, m)
	}
	b = binary.BigEndian.AppendUint64(b, s.Epoch)
	b = binary.BigEndian.AppendUint64(b, seq)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// Save writes s to dir's state file atomically and durably (see the
// package doc), creating dir (mode 0700) if needed.
func Save(dir string, s State) error {
	unlock, err := lock(dir)
	if err != nil {
		return err
	}
	defer unlock()
	return save(dir, FileName, s, true)
}

// SaveMembers writes a membership generation and its members to dir's
// membership file, as Save does the state but without waiting for the disk:
// a crash of the machine may lose it (never the last save flushed before
// it; see the package doc), and the node then comes back behind on its
// membership, which the amnesia guard treats as the safe side. Until 4
// December 2026 these saves went to the state file, under its lock: one
// that a busy disk kept waiting (for hundreds of milliseconds, flushed;
// 79 ms once, unflushed, in ext4's journal) held up the real-time loop's
// next save of an epoch, made under the agent's lock (docs/bench.md, 3
// December 2026).
func SaveMembers(dir string, generation uint64, members []uint32) error {
	unlock, err := lockFile(dir, membersLockName)
	if err != nil {
		return err
	}
	defer unlock()
	return save(dir, MembersFileName, State{Generation: generation, Members: members}, false)
}

// slotFiles is what this process knows of the files of two slots it wrote
// (each under its lock): for each file's path, the slot it last wrote
// without the flush (-1: none, every save of it synced). A file not in the
// map was not written by this process yet. The mutex guards the map only:
// the file's lock serializes its saves, and a save of one file must never
// wait for the disk on another's behalf.
var slotFiles = struct {
	sync.Mutex
	unsynced map[string]int
}{unsynced: map[string]int{}}

// unsyncedSlot is slotFiles' entry for p (known: there is one).
func unsyncedSlot(p string) (slot int, known bool) {
	slotFiles.Lock()
	defer slotFiles.Unlock()
	slot, known = slotFiles.unsynced[p]
	return slot, known
}

// setUnsyncedSlot records slot as p's unsynced one (-1: none).
func setUnsyncedSlot(p string, slot int) {
	slotFiles.Lock()
	slotFiles.unsynced[p] = slot
	slotFiles.Unlock()
}

// save writes s to dir/name (the caller holds its lock), synced (flushed
// before it returns) or not: over a slot of a version 3 file, or as a new
// file. The slot is the older one, unless this process wrote a slot without
// the flush: that one again, so the slot the last synced save is in is
// never overwritten while the other may not be on disk.
func save(dir, name string, s State, synced bool) error {
	p := filepath.Join(dir, name)
	old, err := os.ReadFile(p)
	if err == nil && len(old) == 2*SlotSize {
		if _, slot, seq, derr := decodeFile(old); derr == nil && slot >= 0 {
			target := 1 - slot
			u, known := unsyncedSlot(p)
			switch {
			case !known:
				// Not written by this process yet: an earlier one may
				// have left a save unflushed, in either slot. Flushed
				// first, both slots are what they read.
				if err := syncFile(p); err != nil {
					return err
				}
			case u >= 0:
				target = u
			}
			if err := overwriteSlot(p, target, s, seq+1, synced); err != nil {
				setUnsyncedSlot(p, target) // written in part, maybe: not durable
				return err
			}
			if synced {
				setUnsyncedSlot(p, -1)
			} else {
				setUnsyncedSlot(p, target)
			}
			return nil
		}
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("persist: %w", err)
	}
	rec, err := encode(s, 1)
	if err != nil {
		return err
	}
	b := make([]byte, 2*SlotSize)
	copy(b, rec)
	// A new file is always synced (its creation is rare: once per state
	// directory, or after a corrupt file).
	if err := replaceFile(dir, name, b); err != nil {
		return err
	}
	setUnsyncedSlot(p, -1)
	return nil
}

// syncFile flushes the data of the file at p.
func syncFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("persist: %w", err)
	}
	defer f.Close()
	if err := stateDatasync(f); err != nil {
		return fmt.Errorf("persist: fdatasync %s: %w", p, err)
	}
	return nil
}

// stateDatasync flushes a state file's data (tests count the calls).
var stateDatasync = func(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

// overwriteSlot writes s as record seq into slot of the version 3 file at
// p, in place, and, if synced, waits until it is on disk.
func overwriteSlot(p string, slot int, s State, seq uint64, synced bool) error {
	rec, err := encode(s, seq)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("persist: %w", err)
	}
	if _, err = f.WriteAt(rec, int64(slot)*SlotSize); err == nil && synced {
		// The file's size and blocks are unchanged: its data is all
		// that must reach the disk.
		err = stateDatasync(f)
		if err != nil {
			err = fmt.Errorf("fdatasync: %w", err)
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("persist: writing %s slot %d: %w", p, slot, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return fsync(d)
}

// fsync syncs f (tests count the calls).
var fsync = (*os.File).Sync

// lock takes an exclusive flock on dir's lock file, creating dir if needed.
func lock(dir string) (func(), error) { return lockFile(dir, lockName) }

// now is the clock NextIncarnation uses (tests replace it).
var now = time.Now

// NextIncarnation loads the state in dir, advances its incarnation, saves it
// and returns the new incarnation: call it once per boot of the agent. The
// new incarnation is the larger of the old one plus one and the current
// time in nanoseconds since 1970, so it keeps increasing even if the state
// file is lost (a new disk), as long as the clock is sane; a corrupt state
// file is an error (the operator decides), not silently replaced.
//
// The file is left saying next + reserve: the incarnations up to it are
// reserved, and the agent may take them (a node fenced by its cluster comes
// back under the next one) without saving first, for no later boot can
// start below them (ReserveIncarnations).
func NextIncarnation(dir string, reserve uint64) (uint64, error) {
	unlock, err := lock(dir)
	if err != nil {
		return 0, err
	}
	defer unlock()
	s, err := Load(dir)
	if err != nil {
		return 0, err
	}
	next := s.Incarnation + 1
	if t := now().UnixNano(); t > 0 && uint64(t) > next {
		next = uint64(t)
	}
	s.Incarnation = next + reserve
	if err := save(dir, FileName, s, true); err != nil {
		return 0, err
	}
	removeLeftovers(dir, FileName) // once a boot: what a crashed creation left
	removeLeftovers(dir, MembersFileName)
	return next, nil
}

// ReserveIncarnations is how many incarnations past the one in use the
// agent keeps reserved on disk (NextIncarnation; the agent's saves renew
// the reserve when it is used up). A node fenced by its cluster (judged down
// while alive, a false down) rejoins under its incarnation plus one, and
// must never speak under an incarnation a later boot could take again.
// Saved first, on the real-time loop, that incarnation cost a synchronous
// fdatasync, on a disk the cluster's other saves keep busy at that very
// moment. Reserved, it is on disk already. Incarnations are nanoseconds since 1970
// at each boot: a reserve of 2^20 is about a millisecond of them, which a
// restart takes longer than, so the next boot's incarnation is the clock's
// as before.
const ReserveIncarnations = 1 << 20

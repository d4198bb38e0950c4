// Package persist keeps the little state an agent must not lose across a
// restart: its incarnation (boot-unique: peers tell a restarted node from a
// delayed packet of its previous life), the membership generation and the
// last persisted membership (the amnesia guard's quorum rule, DESIGN §2), and
// the highest election epoch it held (a restarted node never claims an epoch
// it used before, so a (master, epoch) pair names one reign).
//
// The state is one small file, <dir>/state, in a fixed big-endian binary
// layout with a CRC-32C trailer:
//
//	offset  size  field
//	0       4     magic "FMST"
//	4       2     version (2)
//	6       2     flags (0)
//	8       8     incarnation
//	16      8     generation
//	24      4     number of members n (at most MaxMembers)
//	28      4n    members (node IDs)
//	28+4n   8     epoch (version 2; a version 1 file has none: epoch 0)
//	36+4n   4     CRC-32C (Castagnoli) of every byte before it
//
// Save writes a temporary file in the same directory, fsyncs it, renames it
// over the state file and fsyncs the directory, so after a crash the file is
// either the old state or the new one, never a mix; a temporary file left
// behind by a crash is ignored by Load and removed by the next Save. Saves
// (and NextIncarnation's read-increment-write) are serialized between
// processes with flock on <dir>/state.lock. Agents sharing a host must have
// their own state directories.
package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

const (
	// FileName is the state file's name in the state directory.
	FileName = "state"
	lockName = "state.lock"
	// MaxMembers bounds the persisted membership.
	MaxMembers = 4096

	magic   = "FMST"
	version = 2
	hdrLen  = 28
)

// State is what survives a restart.
type State struct {
	Incarnation uint64
	Generation  uint64
	// Members is the last persisted membership (node IDs).
	Members []uint32
	// Epoch is the highest election epoch the node held.
	Epoch uint64
}

// ErrCorrupt is wrapped by Load's error for a state file it cannot trust.
var ErrCorrupt = errors.New("corrupt state file")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Path is the state file's path in dir.
func Path(dir string) string { return filepath.Join(dir, FileName) }

// Load reads the state in dir. A missing file (or directory) is the zero
// State and no error; a file that is short, has the wrong magic or version
// or fails its checksum is an error naming the file and wrapping ErrCorrupt.
func Load(dir string) (State, error) {
	p := Path(dir)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("persist: %w", err)
	}
	s, err := decode(b)
	if err != nil {
		return State{}, fmt.Errorf("persist: %s: %w: %v", p, ErrCorrupt, err)
	}
	return s, nil
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
	if v != 1 && v != version {
		return State{}, fmt.Errorf("version %d, this agent reads versions 1 and %d", v, version)
	}
	tail := 0
	if v >= 2 {
		tail = 8
	}
	n := binary.BigEndian.Uint32(b[24:])
	if n > MaxMembers || len(body) != hdrLen+4*int(n)+tail {
		return State{}, fmt.Errorf("%d members in %d bytes", n, len(body))
	}
	s := State{
		Incarnation: binary.BigEndian.Uint64(b[8:]),
		Generation:  binary.BigEndian.Uint64(b[16:]),
	}
	if tail > 0 {
		s.Epoch = binary.BigEndian.Uint64(b[hdrLen+4*int(n):])
	}
	if n > 0 {
		s.Members = make([]uint32, n)
		for i := range s.Members {
			s.Members[i] = binary.BigEndian.Uint32(b[hdrLen+4*i:])
		}
	}
	return s, nil
}

func encode(s State) ([]byte, error) {
	if len(s.Members) > MaxMembers {
		return nil, fmt.Errorf("persist: %d members, at most %d", len(s.Members), MaxMembers)
	}
	b := make([]byte, hdrLen, hdrLen+4*len(s.Members)+12)
	copy(b, magic)
	binary.BigEndian.PutUint16(b[4:], version)
	binary.BigEndian.PutUint64(b[8:], s.Incarnation)
	binary.BigEndian.PutUint64(b[16:], s.Generation)
	binary.BigEndian.PutUint32(b[24:], uint32(len(s.Members)))
	for _, m := range s.Members {
		b = binary.BigEndian.AppendUint32(b, m)
	}
	b = binary.BigEndian.AppendUint64(b, s.Epoch)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// Save writes s to dir atomically and durably (see the package doc),
// creating dir (mode 0700) if needed.
func Save(dir string, s State) error {
	unlock, err := lock(dir)
	if err != nil {
		return err
	}
	defer unlock()
	return save(dir, s)
}

func save(dir string, s State) error {
	b, err := encode(s)
	if err != nil {
		return err
	}
	return replaceFile(dir, FileName, b) // callers hold the lock
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

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
func NextIncarnation(dir string) (uint64, error) {
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
	s.Incarnation = next
	if err := save(dir, s); err != nil {
		return 0, err
	}
	return next, nil
}

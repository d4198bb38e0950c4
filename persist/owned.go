package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
)

// What a node's agent registered for its local clients, so that an agent
// restarted on a host that kept running adopts what still runs instead of
// letting it be marked down: <dir>/owned, rewritten whole (temporary file,
// rename) but not synced — what it says is void after a reboot (the boot
// ID), and a file replaced in the page cache survives the agent's crash,
// the one case it serves; a host's crash may leave it torn, and the next
// boot adopts nothing from it, as it would anyway. Big-endian, with a
// CRC-32C trailer:
//
//	0     4   magic "FMOW"
//	4     2   version (1)
//	6     2   flags (0)
//	8     1   boot ID length b, then b bytes: /proc/sys/kernel/random/boot_id
//	          when saved (another boot: nothing of it still runs)
//	...   4   number of entries n (at most MaxOwned), then n entries:
//	          u8 name length, name, u8 kind, u32 pid (0: not tied to a
//	          process), u64 the process's start time (clock ticks since
//	          boot, /proc/PID/stat field 22)
//	end-4 4   CRC-32C of every byte before it
const (
	OwnedFileName = "owned"
	ownedLockName = "owned.lock"
	ownedMagic    = "FMOW"
	ownedVersion  = 1
	// MaxOwned bounds the entries of the owned file.
	MaxOwned = 1 << 20
)

// Owned is what a node's agent registered for its local clients.
type Owned struct {
	BootID  string
	Entries []OwnedEntity
}

// OwnedEntity is one entity this node registered.
type OwnedEntity struct {
	Name       string
	Kind       uint8
	State      uint8  // the state its owner last declared (set_state); 0: none
	PID        uint32 // 0: not tied to a process
	StartTicks uint64 // the process's start time, to tell a reused pid
}

// EncodeOwned encodes o.
func EncodeOwned(o *Owned) ([]byte, error) {
	if len(o.Entries) > MaxOwned || len(o.BootID) > 255 {
		return nil, fmt.Errorf("persist: %d owned entities (at most %d), boot ID of %d bytes", len(o.Entries), MaxOwned, len(o.BootID))
	}
	b := append([]byte(ownedMagic), 0, ownedVersion, 0, 0)
	b = append(b, uint8(len(o.BootID)))
	b = append(b, o.BootID...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(o.Entries)))
	for _, e := range o.Entries {
		if len(e.Name) == 0 || len(e.Name) > 255 {
			return nil, fmt.Errorf("persist: owned entity name of %d bytes (1..255)", len(e.Name))
		}
		b = append(b, uint8(len(e.Name)))
		b = append(b, e.Name...)
		b = append(b, e.Kind, e.State)
		b = binary.BigEndian.AppendUint32(b, e.PID)
		b = binary.BigEndian.AppendUint64(b, e.StartTicks)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// DecodeOwned decodes an owned file's bytes.
func DecodeOwned(b []byte) (*Owned, error) {
	if len(b) < 8+1+4+4 {
		return nil, fmt.Errorf("%d bytes, shorter than the smallest owned file", len(b))
	}
	if string(b[:4]) != ownedMagic {
		return nil, fmt.Errorf("bad magic %q", b[:4])
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return nil, fmt.Errorf("checksum %08x, want %08x", got, sum)
	}
	if v := binary.BigEndian.Uint16(b[4:]); v != ownedVersion {
		return nil, fmt.Errorf("version %d, want %d", v, ownedVersion)
	}
	r := &tableReader{b: body[8:]}
	o := &Owned{BootID: r.str()}
	n := r.u32()
	if r.err == nil && (n > MaxOwned || uint64(n)*16 > uint64(len(r.b))) {
		return nil, fmt.Errorf("%d entries in %d bytes", n, len(r.b))
	}
	for i := uint32(0); i < n && r.err == nil; i++ {
		e := OwnedEntity{Name: r.str(), Kind: r.u8(), State: r.u8(), PID: r.u32(), StartTicks: r.u64()}
		if r.err == nil && e.Name == "" {
			r.err = errors.New("empty name")
		}
		o.Entries = append(o.Entries, e)
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the last entry", len(r.b))
	}
	return o, nil
}

// LoadOwned reads dir/owned: (nil, nil) if there is none; an error
// wrapping ErrCorrupt if it fails its checks.
func LoadOwned(dir string) (*Owned, error) {
	return loadFile(filepath.Join(dir, OwnedFileName), DecodeOwned)
}

// SaveOwned replaces dir/owned with o, atomically but without fsync (see
// above): an agent registering thousands of entities rewrote and fsynced
// it twice per registration, disk writes that on a virtual machine the
// host answered with stalls of the whole machine (docs/bench.md).
func SaveOwned(dir string, o *Owned) error {
	b, err := EncodeOwned(o)
	if err != nil {
		return err
	}
	unlock, err := lockFile(dir, ownedLockName)
	if err != nil {
		return err
	}
	defer unlock()
	return replace(dir, OwnedFileName, b, false)
}

// BootID is this boot's ID (/proc/sys/kernel/random/boot_id), "" if it
// cannot be read.
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

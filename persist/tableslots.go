package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// The table's two slots. A save overwrites, in place, the older of two
// files, <dir>/table.0 and <dir>/table.1, and syncs its data
// (fdatasync): one flush, and no directory or journal update unless the
// file grows. A crash during a save tears at most that slot; the other
// still holds the previous save whole, and a save acknowledged to a client
// was synced before the next one could begin on the other slot. The
// reader takes the valid slot of the higher generation.
//
// Until 2 December 2026 the table was one file replaced whole (a temporary
// file, fsync, rename, fsync of the directory): two flushes and a journal
// commit per save, at every write a client waited for and every 20 ms
// while changes went on. In a report flood under a CPU hog the host of
// this VM answered those disk writes with stalls of the whole machine
// (docs/bench.md). That file (<dir>/table) is still read when there is no
// slot, and removed by the first slot save.
//
// A slot, big-endian:
//
//	offset  size  field
//	0       4     magic "FMTS"
//	4       2     version (1)
//	6       2     flags (0)
//	8       8     generation: one more than the other slot's at the save
//	16      8     length L of the table that follows
//	24      4     CRC-32C of the 24 bytes before it
//	28      L     the table (AppendTable: its own CRC-32C trailer)
//	28+L    ...   whatever an earlier, longer save left (ignored)
const (
	slotMagic   = "FMTS"
	slotVersion = 1
	slotHdrLen  = 28
	// slotGrain is what a slot's file grows by at least (it never
	// shrinks): a file that keeps its size is overwritten without a
	// metadata update.
	slotGrain = 64 << 10
)

// tableSlotPath is slot i's file in dir.
func tableSlotPath(dir string, i int) string {
	return filepath.Join(dir, fmt.Sprintf("%s.%d", TableFileName, i))
}

// TablePaths is every table file in dir: the two slots and the table file
// of before them, those that exist.
func TablePaths(dir string) []string {
	var out []string
	for _, p := range []string{tableSlotPath(dir, 0), tableSlotPath(dir, 1), TablePath(dir)} {
		if _, err := os.Lstat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// slotHeader reads slot f's header and checks it against the file's size:
// its generation and table length, or why it is not a slot.
func slotHeader(f *os.File) (gen, n uint64, err error) {
	var h [slotHdrLen]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return 0, 0, fmt.Errorf("no slot header: %w", err)
	}
	if string(h[:4]) != slotMagic || binary.BigEndian.Uint16(h[4:]) != slotVersion ||
		crc32.Checksum(h[:24], castagnoli) != binary.BigEndian.Uint32(h[24:]) {
		return 0, 0, errors.New("no valid slot header")
	}
	gen, n = binary.BigEndian.Uint64(h[8:]), binary.BigEndian.Uint64(h[16:])
	st, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	if n < 4 || n > uint64(st.Size())-slotHdrLen { // the size is at least the header's, read above
		return gen, 0, fmt.Errorf("a table of %d bytes in a file of %d", n, st.Size())
	}
	return gen, n, nil
}

// slotValid reports slot f's generation (0 without a valid header), ok if
// its header and its table's checksum are valid (a save a crash tore
// after the header fails the latter).
func slotValid(f *os.File) (gen uint64, ok bool) {
	gen, n, err := slotHeader(f)
	if err != nil {
		return gen, false
	}
	// In chunks through one pooled buffer: a save checks both slots, and
	// a table of thousands of entities is hundreds of KB.
	bp := chunkPool.Get().(*[slotGrain]byte)
	defer chunkPool.Put(bp)
	buf := bp[:]
	var crc uint32
	body := int64(n - 4)
	for off := int64(0); off < body; {
		k := min(int64(len(buf)), body-off)
		if _, err := f.ReadAt(buf[:k], slotHdrLen+off); err != nil {
			return gen, false
		}
		crc = crc32.Update(crc, castagnoli, buf[:k])
		off += k
	}
	if _, err := f.ReadAt(buf[:4], slotHdrLen+body); err != nil {
		return gen, false
	}
	return gen, crc == binary.BigEndian.Uint32(buf[:4])
}

var chunkPool = sync.Pool{New: func() any { return new([slotGrain]byte) }}

// loadSlot reads slot i: its generation and table; exists false if the
// file does not exist; an error if it fails its checks.
func loadSlot(dir string, i int) (gen uint64, t *Table, exists bool, err error) {
	p := tableSlotPath(dir, i)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil, false, nil
	}
	if err != nil {
		return 0, nil, true, fmt.Errorf("persist: %w", err)
	}
	defer f.Close()
	gen, n, err := slotHeader(f)
	if err != nil {
		return 0, nil, true, fmt.Errorf("persist: %s: %w: %v", p, ErrCorrupt, err)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(io.NewSectionReader(f, slotHdrLen, int64(n)), b); err != nil {
		return 0, nil, true, fmt.Errorf("persist: %s: %w", p, err)
	}
	t, err = DecodeTable(b)
	if err != nil {
		return 0, nil, true, fmt.Errorf("persist: %s: %w: %v", p, ErrCorrupt, err)
	}
	return gen, t, true, nil
}

// loadTableSlots reads the valid slot of the higher generation. found
// false: there is no slot file. A slot that fails its checks beside a
// valid one is a save a crash tore, and ignored; if every slot file fails
// them, the error says why.
func loadTableSlots(dir string) (t *Table, found bool, err error) {
	var best uint64
	var errs []error
	for i := range 2 {
		gen, st, exists, err := loadSlot(dir, i)
		found = found || exists
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st != nil && (t == nil || gen > best) {
			t, best = st, gen
		}
	}
	if t == nil && len(errs) > 0 {
		return nil, found, errors.Join(errs...)
	}
	return t, found, nil
}

// saveTableSlot overwrites the older slot with the encoded table b and
// syncs it. The caller holds the table's lock.
func saveTableSlot(dir string, b []byte) (err error) {
	var gens [2]uint64
	var valid [2]bool
	for i := range 2 {
		if f, err := os.Open(tableSlotPath(dir, i)); err == nil {
			gens[i], valid[i] = slotValid(f)
			f.Close()
		}
	}
	// The target is a slot that is not valid, else the older: never the
	// newest valid one. (Whole, not only its header: a crash may have
	// torn a save after its header, and the next save must not then
	// overwrite the one slot left whole.)
	target := 0
	switch {
	case !valid[0]:
	case !valid[1]:
		target = 1
	case gens[1] < gens[0]:
		target = 1
	}
	gen := max(gens[0], gens[1]) + 1 // an invalid slot's generation counts too: never reused

	p := tableSlotPath(dir, target)
	_, statErr := os.Lstat(p)
	created := errors.Is(statErr, fs.ErrNotExist)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("persist: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("persist: %w", cerr)
		}
		if err != nil {
			// A slot half written may carry a valid header: removed, the
			// next save takes it, never the slot that holds the last
			// save.
			os.Remove(p)
		}
	}()
	need := int64(slotHdrLen + len(b))
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("persist: %w", err)
	}
	if st.Size() < need {
		size := (need + need/4 + slotGrain - 1) / slotGrain * slotGrain
		// A file system without fallocate grows the file as it is
		// written instead.
		if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("persist: growing %s to %d bytes: %w", p, size, err)
		}
	}
	var hdr [slotHdrLen]byte
	copy(hdr[:], slotMagic)
	binary.BigEndian.PutUint16(hdr[4:], slotVersion)
	binary.BigEndian.PutUint64(hdr[8:], gen)
	binary.BigEndian.PutUint64(hdr[16:], uint64(len(b)))
	binary.BigEndian.PutUint32(hdr[24:], crc32.Checksum(hdr[:24], castagnoli))
	// Header and table in one write, without copying the table.
	wrote, err := unix.Pwritev(int(f.Fd()), [][]byte{hdr[:], b}, 0)
	if err == nil && wrote != int(need) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("persist: writing %s: %w", p, err)
	}
	if err := fdatasync(f); err != nil {
		return fmt.Errorf("persist: fdatasync %s: %w", p, err)
	}
	if !created {
		return nil
	}
	// A slot's first save: its name in the directory made durable, and
	// the layout of before the slots removed (the table file, now older
	// than the slot, and the temporary files a crashed save of it left).
	// Both slots are created once, so this is not paid again; a table
	// file a crash kept between the slot's sync and here is ignored by
	// LoadTable, which reads the slots once there is one.
	removeLeftovers(dir, TableFileName)
	_ = os.Remove(TablePath(dir))
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("persist: fsync %s: %w", dir, err)
	}
	return nil
}

// fdatasync syncs f's data (tests count the calls).
var fdatasync = func(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

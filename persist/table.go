package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The cluster table a master-eligible node keeps on disk, so that a
// full-cluster restart comes back with every registered entity and every
// alarm raised and not cleared. It is saved whole, in the older of two
// slot files overwritten in place and synced (tableslots.go: after a crash
// it is the last save, or the one before if the crash tore the last, never
// a mix), big-endian, with a CRC-32C trailer:
//
//	offset  size  field
//	0       4     magic "FMTB"
//	4       2     version (1)
//	6       2     flags (0)
//	8       8     seq: the table seq this file holds (every change up to it)
//	16      8     epoch of the master the node followed
//	24      4     that master's node ID
//	28      4     number of entities n (at most MaxTableEntities)
//	32      ...   n entities, in ID order:
//	                u8 name length, name, u8 kind, u8 state, u32 owner,
//	                u64 incarnation, i64 changed_at, u64 changed_seq,
//	                u32 changed_by, u8 number of alarms a (at most
//	                MaxTableAlarms), a alarms:
//	                  u8 cause length, cause, u8 severity, i64 raised_at,
//	                  u32 raised_by, u64 seq
//	end-4   4     CRC-32C of every byte before it
//
// The size is bounded: at most MaxTableEntities entities of at most
// MaxTableAlarms alarms with names and causes of at most 255 bytes.
const (
	TableFileName = "table"
	tableLockName = "table.lock"
	tableTmpGlob  = ".table-*.tmp"
	// MaxTableEntities bounds the entities of a table file (the shared
	// memory's own bound).
	MaxTableEntities = 1 << 24
	// MaxTableAlarms bounds the alarms of one entity in a table file.
	MaxTableAlarms = 255

	tableMagic   = "FMTB"
	tableVersion = 1
	tableHdrLen  = 32
)

// Table is the persisted cluster table.
type Table struct {
	Seq      uint64
	Epoch    uint64
	Master   uint32
	Entities []Entity
}

// Entity is one persisted row.
type Entity struct {
	Name        string
	Kind        uint8
	State       uint8
	Owner       uint32
	Incarnation uint64
	ChangedAt   int64
	ChangedSeq  uint64
	ChangedBy   uint32
	Alarms      []Alarm
}

// Alarm is one persisted active alarm.
type Alarm struct {
	Cause    string
	Severity uint8
	RaisedAt int64
	RaisedBy uint32
	Seq      uint64
}

// TablePath is the table file's path in dir.
func TablePath(dir string) string { return filepath.Join(dir, TableFileName) }

// AppendTable encodes t after dst (for a caller that reuses its buffer).
func AppendTable(dst []byte, t *Table) ([]byte, error) {
	start := len(dst)
	dst, err := AppendTableHeader(dst, t.Seq, t.Epoch, t.Master, len(t.Entities))
	if err != nil {
		return dst, err
	}
	for i := range t.Entities {
		if dst, err = AppendTableEntity(dst, &t.Entities[i]); err != nil {
			return dst[:start], err
		}
	}
	return FinishTable(dst, start), nil
}

// AppendTableHeader starts a table file after dst: n entities must follow
// (AppendTableEntity), then FinishTable with the offset where it started.
// It lets a caller encode straight from its own rows, reusing one Entity.
func AppendTableHeader(dst []byte, seq, epoch uint64, master uint32, n int) ([]byte, error) {
	if n > MaxTableEntities {
		return dst, fmt.Errorf("persist: %d entities, at most %d", n, MaxTableEntities)
	}
	dst = append(dst, tableMagic...)
	dst = binary.BigEndian.AppendUint16(dst, tableVersion)
	dst = binary.BigEndian.AppendUint16(dst, 0)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	dst = binary.BigEndian.AppendUint64(dst, epoch)
	dst = binary.BigEndian.AppendUint32(dst, master)
	return binary.BigEndian.AppendUint32(dst, uint32(n)), nil
}

// AppendTableEntity appends one entity of a table file.
func AppendTableEntity(dst []byte, e *Entity) ([]byte, error) {
	if len(e.Name) == 0 || len(e.Name) > 255 || len(e.Alarms) > MaxTableAlarms {
		return dst, fmt.Errorf("persist: entity %q: name of %d bytes (1..255), %d alarms (at most %d)", e.Name, len(e.Name), len(e.Alarms), MaxTableAlarms)
	}
	start := len(dst)
	dst = append(dst, uint8(len(e.Name)))
	dst = append(dst, e.Name...)
	dst = append(dst, e.Kind, e.State)
	dst = binary.BigEndian.AppendUint32(dst, e.Owner)
	dst = binary.BigEndian.AppendUint64(dst, e.Incarnation)
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.ChangedAt))
	dst = binary.BigEndian.AppendUint64(dst, e.ChangedSeq)
	dst = binary.BigEndian.AppendUint32(dst, e.ChangedBy)
	dst = append(dst, uint8(len(e.Alarms)))
	for j := range e.Alarms {
		a := &e.Alarms[j]
		if len(a.Cause) == 0 || len(a.Cause) > 255 {
			return dst[:start], fmt.Errorf("persist: entity %q: alarm cause of %d bytes (1..255)", e.Name, len(a.Cause))
		}
		dst = append(dst, uint8(len(a.Cause)))
		dst = append(dst, a.Cause...)
		dst = append(dst, a.Severity)
		dst = binary.BigEndian.AppendUint64(dst, uint64(a.RaisedAt))
		dst = binary.BigEndian.AppendUint32(dst, a.RaisedBy)
		dst = binary.BigEndian.AppendUint64(dst, a.Seq)
	}
	return dst, nil
}

// FinishTable appends the checksum of the table file that starts at
// dst[start:].
func FinishTable(dst []byte, start int) []byte {
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// tableReader decodes the body of a table file, failing on the first short
// read.
type tableReader struct {
	b   []byte
	err error
}

func (r *tableReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = errors.New("truncated")
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *tableReader) u8() uint8 {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *tableReader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *tableReader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *tableReader) str() string { return string(r.take(int(r.u8()))) }

// DecodeTable decodes a table file's bytes.
func DecodeTable(b []byte) (*Table, error) {
	if len(b) < tableHdrLen+4 {
		return nil, fmt.Errorf("%d bytes, shorter than the smallest table (%d)", len(b), tableHdrLen+4)
	}
	if string(b[:4]) != tableMagic {
		return nil, fmt.Errorf("bad magic %q", b[:4])
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return nil, fmt.Errorf("checksum %08x, want %08x", got, sum)
	}
	if v := binary.BigEndian.Uint16(b[4:]); v != tableVersion {
		return nil, fmt.Errorf("version %d, want %d", v, tableVersion)
	}
	t := &Table{Seq: binary.BigEndian.Uint64(b[8:]), Epoch: binary.BigEndian.Uint64(b[16:]), Master: binary.BigEndian.Uint32(b[24:])}
	n := binary.BigEndian.Uint32(b[28:])
	if n > MaxTableEntities {
		return nil, fmt.Errorf("%d entities, at most %d", n, MaxTableEntities)
	}
	r := &tableReader{b: body[tableHdrLen:]}
	// Each entity takes at least 37 bytes: n cannot claim more than the file holds.
	if uint64(n)*37 > uint64(len(r.b)) {
		return nil, fmt.Errorf("%d entities in %d bytes", n, len(r.b))
	}
	t.Entities = make([]Entity, n)
	for i := range t.Entities {
		e := &t.Entities[i]
		e.Name = r.str()
		e.Kind, e.State = r.u8(), r.u8()
		e.Owner = r.u32()
		e.Incarnation = r.u64()
		e.ChangedAt = int64(r.u64())
		e.ChangedSeq = r.u64()
		e.ChangedBy = r.u32()
		na := int(r.u8())
		if r.err == nil && na > 0 {
			e.Alarms = make([]Alarm, na)
		}
		for j := 0; j < na && r.err == nil; j++ {
			a := &e.Alarms[j]
			a.Cause = r.str()
			a.Severity = r.u8()
			a.RaisedAt = int64(r.u64())
			a.RaisedBy = r.u32()
			a.Seq = r.u64()
		}
		if r.err == nil && e.Name == "" {
			r.err = fmt.Errorf("entity %d has an empty name", i)
		}
		if r.err != nil {
			return nil, fmt.Errorf("entity %d: %w", i, r.err)
		}
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the last entity", len(r.b))
	}
	return t, nil
}

// LoadTable reads the table in dir: the newer valid slot (tableslots.go),
// or, with no slot file, the table file of before them. Nothing saved is
// (nil, nil). Files that fail their checks are an error naming them and
// wrapping ErrCorrupt.
func LoadTable(dir string) (*Table, error) {
	t, found, err := loadTableSlots(dir)
	if found {
		return t, err
	}
	return loadFile(TablePath(dir), DecodeTable)
}

// loadFile reads and decodes the file at p: (nil, nil) if there is none; a
// decoding failure is an error naming the file and wrapping ErrCorrupt.
func loadFile[T any](p string, decode func([]byte) (*T, error)) (*T, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("persist: %w", err)
	}
	v, err := decode(b)
	if err != nil {
		return nil, fmt.Errorf("persist: %s: %w: %v", p, ErrCorrupt, err)
	}
	return v, nil
}

// SaveTableBytes durably saves b (made by AppendTable) as the table in
// dir: over the older of its two slots, synced (tableslots.go). Saves are
// serialized between processes with flock on <dir>/table.lock.
func SaveTableBytes(dir string, b []byte) error {
	unlock, err := lockFile(dir, tableLockName)
	if err != nil {
		return err
	}
	defer unlock()
	return saveTableSlot(dir, b)
}

// replaceFile durably replaces dir/name with b: a temporary file
// (.name-*.tmp; those a crash left are removed first), fsync, rename, fsync
// of the directory. The caller holds the file's lock, so no other save is
// writing a temporary file. It is the one crash-safe write of the package.
func replaceFile(dir, name string, b []byte) error { return replace(dir, name, b, true) }

// replace is replaceFile, without its fsyncs unless durable: then the file
// is replaced atomically for every process of this boot (a rename in the
// page cache), but a crash of the host may leave the old content, the new,
// or neither — for a file whose content is void after a reboot (the owned
// file): no disk wait, and the kernel's writeback coalesces its rewrites.
func replace(dir, name string, b []byte, durable bool) (err error) {
	glob := removeLeftovers(dir, name)
	f, err := os.CreateTemp(dir, glob)
	if err != nil {
		return fmt.Errorf("persist: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(b); err == nil && durable {
		err = fsync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("persist: writing %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("persist: %w", err)
	}
	if !durable {
		return nil
	}
	if err = syncDir(dir); err != nil {
		return fmt.Errorf("persist: fsync %s: %w", dir, err)
	}
	return nil
}

// removeLeftovers removes the temporary files a crashed replaceFile of
// dir/name left (the caller holds the file's lock) and returns their
// pattern.
func removeLeftovers(dir, name string) string {
	glob := "." + name + "-*.tmp"
	left, _ := filepath.Glob(filepath.Join(dir, glob))
	for _, p := range left {
		if strings.HasPrefix(filepath.Base(p), "."+name+"-") {
			os.Remove(p)
		}
	}
	return glob
}

// SaveTable encodes and saves t (see SaveTableBytes).
func SaveTable(dir string, t *Table) error {
	b, err := AppendTable(nil, t)
	if err != nil {
		return err
	}
	return SaveTableBytes(dir, b)
}

// lockFile takes an exclusive flock on dir/name, creating dir if needed.
func lockFile(dir, name string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("persist: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("persist: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("persist: flock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

package persist

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleTable() *Table {
	return &Table{Seq: 42, Epoch: 7, Master: 2, Entities: []Entity{
		{Name: "node/1", Kind: 1, State: 1, Owner: 1, Incarnation: 9, ChangedAt: -5, ChangedSeq: 3, ChangedBy: 1},
		{Name: "svc/a", Kind: 4, State: 2, Owner: 3, Incarnation: 1 << 60, ChangedAt: 1e18, ChangedSeq: 41, ChangedBy: 2,
			Alarms: []Alarm{{Cause: "outage", Severity: 5, RaisedAt: 12, RaisedBy: 2, Seq: 40}, {Cause: "slow", Severity: 2, RaisedAt: 13, RaisedBy: 3, Seq: 41}}},
	}}
}

func TestTableRoundTrip(t *testing.T) {
	dir := t.TempDir()
	got, err := LoadTable(dir)
	require.NoError(t, err)
	require.Nil(t, got, "nothing persisted yet")

	want := sampleTable()
	require.NoError(t, SaveTable(dir, want))
	got, err = LoadTable(dir)
	require.NoError(t, err)
	require.Equal(t, want, got)

	// Saved again over the old one: the new one, no temporary left.
	want.Seq, want.Entities = 43, want.Entities[:1]
	require.NoError(t, SaveTable(dir, want))
	got, err = LoadTable(dir)
	require.NoError(t, err)
	require.Equal(t, want, got)
	left, _ := filepath.Glob(filepath.Join(dir, tableTmpGlob))
	require.Empty(t, left)
}

// Every truncation and every single-bit flip of a table file is refused as
// corrupt: a crash mid-write (which rename makes impossible for the file
// itself) or a bad disk never yields a wrong table.
func TestTableCorrupt(t *testing.T) {
	b, err := AppendTable(nil, sampleTable())
	require.NoError(t, err)
	for n := 0; n < len(b); n++ {
		_, err := DecodeTable(b[:n])
		require.Error(t, err, "truncated to %d bytes", n)
	}
	for i := 0; i < len(b)*8; i++ {
		c := append([]byte(nil), b...)
		c[i/8] ^= 1 << (i % 8)
		_, err := DecodeTable(c)
		require.Error(t, err, "bit %d flipped", i)
	}
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(TablePath(dir), b[:len(b)-1], 0o600))
	_, err = LoadTable(dir)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, TablePath(dir))
}

// A temporary file a crashed save left behind is ignored by LoadTable and
// removed by the next save.
func TestTableCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, SaveTable(dir, sampleTable()))
	junk := filepath.Join(dir, ".table-123.tmp")
	require.NoError(t, os.WriteFile(junk, []byte("half a table"), 0o600))
	got, err := LoadTable(dir)
	require.NoError(t, err)
	require.Equal(t, sampleTable(), got)
	require.NoError(t, SaveTable(dir, sampleTable()))
	_, err = os.Stat(junk)
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestTableBounds(t *testing.T) {
	tb := &Table{Entities: []Entity{{Name: ""}}}
	_, err := AppendTable(nil, tb)
	require.Error(t, err)
	tb.Entities[0] = Entity{Name: "x", Alarms: make([]Alarm, MaxTableAlarms+1)}
	_, err = AppendTable(nil, tb)
	require.Error(t, err)
	// A count larger than the bytes can hold is refused before allocating.
	b, err := AppendTable(nil, &Table{})
	require.NoError(t, err)
	b[28], b[29] = 0x00, 0xff
	binary.BigEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], castagnoli))
	_, err = DecodeTable(b)
	require.ErrorContains(t, err, "16711680 entities in 0 bytes")
}

func TestOwnedRoundTrip(t *testing.T) {
	dir := t.TempDir()
	o, err := LoadOwned(dir)
	require.NoError(t, err)
	require.Nil(t, o)
	want := &Owned{BootID: BootID(), Entries: []OwnedEntity{{Name: "svc/a", Kind: 4, State: 2}, {Name: "node/1/proc/x", Kind: 3, PID: 1234, StartTicks: 99}}}
	require.NotEmpty(t, want.BootID)
	require.NoError(t, SaveOwned(dir, want))
	got, err := LoadOwned(dir)
	require.NoError(t, err)
	require.Equal(t, want, got)
	b, err := EncodeOwned(want)
	require.NoError(t, err)
	for n := 0; n < len(b); n++ {
		_, err := DecodeOwned(b[:n])
		require.Error(t, err, "truncated to %d", n)
	}
	for i := 0; i < len(b)*8; i++ {
		c := append([]byte(nil), b...)
		c[i/8] ^= 1 << (i % 8)
		_, err := DecodeOwned(c)
		require.Error(t, err, "bit %d", i)
	}
}

// The cost of encoding a table of 20,000 entities (one alarm each), which
// the agent pays under its lock once per save.
func BenchmarkAppendTable20k(b *testing.B) {
	tb := &Table{Seq: 1}
	for i := range 20000 {
		tb.Entities = append(tb.Entities, Entity{Name: fmt.Sprintf("svc/entity-%05d", i), Kind: 4, State: 1, Owner: 3,
			Alarms: []Alarm{{Cause: "rpc-timeout", Severity: 4}}})
	}
	var buf []byte
	b.ResetTimer()
	for range b.N {
		var err error
		if buf, err = AppendTable(buf[:0], tb); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

// The table is replaced durably (the file and its directory synced); the
// owned file, void after a reboot, is replaced without a sync.
func TestOwnedFileIsNotSyncedTheTableIs(t *testing.T) {
	syncs := 0
	defer func(f func(*os.File) error) { fsync = f }(fsync)
	fsync = func(f *os.File) error { syncs++; return f.Sync() }
	dir := t.TempDir()

	require.NoError(t, SaveOwned(dir, &Owned{BootID: "b", Entries: []OwnedEntity{{Name: "svc/a", Kind: 4}}}))
	assert.Zero(t, syncs, "fsyncs of an owned save")
	got, err := LoadOwned(dir)
	require.NoError(t, err)
	require.Len(t, got.Entries, 1)
	require.NoError(t, SaveOwned(dir, &Owned{BootID: "b"}))
	got, err = LoadOwned(dir)
	require.NoError(t, err)
	assert.Empty(t, got.Entries, "replaced")
	left, err := filepath.Glob(filepath.Join(dir, ".owned-*"))
	require.NoError(t, err)
	assert.Empty(t, left, "temporary files left")

	datasyncs := 0
	defer func(f func(*os.File) error) { fdatasync = f }(fdatasync)
	fdatasync = func(f *os.File) error { datasyncs++; return f.Sync() }
	b, err := AppendTable(nil, &Table{})
	require.NoError(t, err)
	for i := 0; i < 2; i++ {
		require.NoError(t, SaveTableBytes(dir, b))
	}
	assert.Equal(t, 2, datasyncs, "a table save syncs its slot")
	assert.Equal(t, 2, syncs, "and the directory when it creates the slot's file")
	require.NoError(t, SaveTableBytes(dir, b))
	assert.Equal(t, 3, datasyncs, "a table save syncs its slot")
	assert.Equal(t, 2, syncs, "and nothing else once both slots exist")
}

func bigTable(n int) *Table {
	tb := &Table{Seq: uint64(n), Epoch: 2, Master: 1}
	for i := 0; i < n; i++ {
		tb.Entities = append(tb.Entities, Entity{Name: fmt.Sprintf("svc/e%05d", i), Kind: 4, State: 1, Owner: 1})
	}
	return tb
}

// Saves alternate between the two slots; a save a crash tore (here: a
// byte of its table flipped, or the file cut) leaves the one before it,
// and the next save overwrites the torn slot, never the whole one.
func TestTableSlotsSurviveATornSave(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{1, 2, 3} {
		require.NoError(t, SaveTable(dir, bigTable(n)))
	}
	got, err := LoadTable(dir)
	require.NoError(t, err)
	require.Equal(t, bigTable(3), got, "the last save")
	// Saves 1 and 3 went to slot 0, 2 to slot 1.
	tear := func(i int) {
		p := tableSlotPath(dir, i)
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		b[slotHdrLen+40] ^= 0x10
		require.NoError(t, os.WriteFile(p, b, 0o600))
	}
	tear(0)
	got, err = LoadTable(dir)
	require.NoError(t, err)
	require.Equal(t, bigTable(2), got, "the last save torn: the one before")

	require.NoError(t, SaveTable(dir, bigTable(4)))
	got, err = LoadTable(dir)
	require.NoError(t, err)
	require.Equal(t, bigTable(4), got)
	b1, err := os.ReadFile(tableSlotPath(dir, 1))
	require.NoError(t, err)
	_, ok := slotValidBytes(t, b1)
	require.True(t, ok, "the whole slot (save 2) was not the one overwritten")

	tear(0)
	tear(1)
	_, err = LoadTable(dir)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, tableSlotPath(dir, 0))
	require.ErrorContains(t, err, tableSlotPath(dir, 1))
	require.Len(t, TablePaths(dir), 2)

	// Cut short: the length in the header is past the file's end.
	dir = t.TempDir()
	require.NoError(t, SaveTable(dir, bigTable(50)))
	require.NoError(t, SaveTable(dir, bigTable(60)))
	require.NoError(t, os.Truncate(tableSlotPath(dir, 1), slotHdrLen+100))
	got, err = LoadTable(dir)
	require.NoError(t, err)
	require.Equal(t, bigTable(50), got)
}

func slotValidBytes(t *testing.T, b []byte) (uint64, bool) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "slot")
	require.NoError(t, os.WriteFile(p, b, 0o600))
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	return slotValid(f)
}

// A smaller table over a larger one: what the larger left after it is
// ignored, and the file keeps its size (no metadata update).
func TestTableSlotShrinks(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, SaveTable(dir, bigTable(2000)))
	require.NoError(t, SaveTable(dir, bigTable(2000)))
	st, err := os.Stat(tableSlotPath(dir, 0))
	require.NoError(t, err)
	require.NoError(t, SaveTable(dir, bigTable(3)))
	got, err := LoadTable(dir)
	require.NoError(t, err)
	require.Equal(t, bigTable(3), got)
	st2, err := os.Stat(tableSlotPath(dir, 0))
	require.NoError(t, err)
	assert.Equal(t, st.Size(), st2.Size(), "the slot keeps its size")
	assert.Zero(t, st.Size()%slotGrain, "grown by whole grains")
}

// The table file of before the slots is read while there is no slot, and
// removed by the first slot save.
func TestTableFileOfBeforeTheSlots(t *testing.T) {
	dir := t.TempDir()
	b, err := AppendTable(nil, bigTable(7))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(TablePath(dir), b, 0o600))
	got, err := LoadTable(dir)
	require.NoError(t, err)
	require.Equal(t, bigTable(7), got)
	require.NoError(t, SaveTable(dir, bigTable(8)))
	_, err = os.Stat(TablePath(dir))
	require.ErrorIs(t, err, os.ErrNotExist, "removed")
	got, err = LoadTable(dir)
	require.NoError(t, err)
	require.Equal(t, bigTable(8), got)
}

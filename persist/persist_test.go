package persist

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMissingIsZero(t *testing.T) {
	s, err := Load(filepath.Join(t.TempDir(), "no", "such", "dir"))
	require.NoError(t, err)
	assert.Equal(t, State{}, s)
}

func TestSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state-dir") // created by Save
	want := State{Incarnation: 1<<60 + 7, Generation: 42, Members: []uint32{1, 2, 5, 1<<32 - 1}}
	require.NoError(t, Save(dir, want))
	got, err := Load(dir)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	fi, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())

	// Overwrite with no members.
	want = State{Incarnation: 2, Generation: 43}
	require.NoError(t, Save(dir, want))
	got, err = Load(dir)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.Nil(t, got.Members)

	// Only the state and lock files are left.
	names := dirNames(t, dir)
	assert.ElementsMatch(t, []string{"state", "state.lock"}, names)
}

func TestLayout(t *testing.T) {
	dir := t.TempDir()
	st := State{Incarnation: 0x0102030405060708, Generation: 9, Members: []uint32{3}, Epoch: 77}
	require.NoError(t, Save(dir, st))
	b, err := os.ReadFile(Path(dir))
	require.NoError(t, err)
	require.Len(t, b, 2*SlotSize)
	rec := b[:28+4+8+8+4]
	assert.Equal(t, "FMST", string(rec[:4]))
	assert.Equal(t, uint16(3), binary.BigEndian.Uint16(rec[4:]))
	assert.Equal(t, uint64(0x0102030405060708), binary.BigEndian.Uint64(rec[8:]))
	assert.Equal(t, uint64(9), binary.BigEndian.Uint64(rec[16:]))
	assert.Equal(t, uint32(1), binary.BigEndian.Uint32(rec[24:]))
	assert.Equal(t, uint32(3), binary.BigEndian.Uint32(rec[28:]))
	assert.Equal(t, uint64(77), binary.BigEndian.Uint64(rec[32:]))
	assert.Equal(t, uint64(1), binary.BigEndian.Uint64(rec[40:]), "the first save's sequence number")
	assert.Equal(t, reseal(rec[:len(rec)-4]), rec)
	assert.Equal(t, make([]byte, 2*SlotSize-len(rec)), b[len(rec):], "the rest is zero: slot 1 is empty")

	// Saves alternate between the slots, each with the next sequence
	// number, and leave the other slot as it was; the file never grows.
	for i := 2; i <= 5; i++ {
		st.Generation = uint64(10 + i)
		require.NoError(t, Save(dir, st))
		c, err := os.ReadFile(Path(dir))
		require.NoError(t, err)
		require.Len(t, c, 2*SlotSize)
		cur, prev := c[((i+1)%2)*SlotSize:], c[(i%2)*SlotSize:]
		assert.Equal(t, uint64(i), binary.BigEndian.Uint64(cur[40:]), "save %d's slot", i)
		assert.Equal(t, uint64(10+i), binary.BigEndian.Uint64(cur[16:]))
		if i > 2 {
			assert.Equal(t, uint64(i-1), binary.BigEndian.Uint64(prev[40:]), "the other slot keeps save %d", i-1)
		}
		got, err := Load(dir)
		require.NoError(t, err)
		assert.Equal(t, st, got)
	}
}

// Files of version 1 (no epoch) and 2 (one record, no sequence number)
// still load; the next Save replaces them with a version 3 file.
func TestEarlierVersions(t *testing.T) {
	dir := t.TempDir()
	v2 := legacy(2, State{Incarnation: 0x0102030405060708, Generation: 9, Members: []uint32{3}, Epoch: 77})
	require.Len(t, v2, 28+4+8+4)
	require.NoError(t, os.WriteFile(Path(dir), v2, 0o600))
	got, err := Load(dir)
	require.NoError(t, err)
	assert.Equal(t, State{Incarnation: 0x0102030405060708, Generation: 9, Members: []uint32{3}, Epoch: 77}, got)

	require.NoError(t, os.WriteFile(Path(dir), legacy(1, State{Incarnation: 5, Generation: 6, Members: []uint32{1, 2}}), 0o600))
	got, err = Load(dir)
	require.NoError(t, err)
	assert.Equal(t, State{Incarnation: 5, Generation: 6, Members: []uint32{1, 2}}, got)

	n, err := NextIncarnation(dir, 0)
	require.NoError(t, err)
	b, err := os.ReadFile(Path(dir))
	require.NoError(t, err)
	assert.Len(t, b, 2*SlotSize, "replaced by a version 3 file")
	got, err = Load(dir)
	require.NoError(t, err)
	assert.Equal(t, State{Incarnation: n, Generation: 6, Members: []uint32{1, 2}}, got)
}

// A save torn by a crash (the slot being written fails its checksum) loses
// only that save: Load returns the one before, and the next save goes
// over the torn slot again.
func TestTornSlot(t *testing.T) {
	dir := t.TempDir()
	a := State{Incarnation: 1, Generation: 1, Members: []uint32{1}, Epoch: 1}
	b := State{Incarnation: 1, Generation: 2, Members: []uint32{1, 2}, Epoch: 2}
	require.NoError(t, Save(dir, a)) // slot 0, seq 1
	require.NoError(t, Save(dir, b)) // slot 1, seq 2
	good, err := os.ReadFile(Path(dir))
	require.NoError(t, err)

	for name, torn := range map[string][]byte{
		"bit flip":  flip(good, SlotSize+17),
		"half":      append(append(append([]byte(nil), good[:SlotSize+20]...), make([]byte, 8)...), good[SlotSize+28:]...),
		"zeroed":    append(append([]byte(nil), good[:SlotSize]...), make([]byte, SlotSize)...),
		"old magic": append(append(append([]byte(nil), good[:SlotSize]...), "XXXX"...), good[SlotSize+4:]...),
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(Path(dir), torn, 0o600))
			got, err := Load(dir)
			require.NoError(t, err)
			assert.Equal(t, a, got, "the save before the torn one")
			c := State{Incarnation: 2, Generation: 3, Epoch: 3}
			require.NoError(t, Save(dir, c))
			got, err = Load(dir)
			require.NoError(t, err)
			assert.Equal(t, c, got)
			after, err := os.ReadFile(Path(dir))
			require.NoError(t, err)
			assert.Equal(t, good[:SlotSize], after[:SlotSize], "the good slot was not written over")
		})
	}

	// The older slot torn: the newer one is the state.
	require.NoError(t, os.WriteFile(Path(dir), flip(good, 9), 0o600))
	got, err := Load(dir)
	require.NoError(t, err)
	assert.Equal(t, b, got)
}

func TestCorrupt(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, Save(dir, State{Incarnation: 5, Generation: 6, Members: []uint32{1, 2}}))
	good, err := os.ReadFile(Path(dir)) // slot 0 only
	require.NoError(t, err)
	rec := good[:28+8+8+8+4]
	v2 := legacy(2, State{Incarnation: 5, Generation: 6, Members: []uint32{1, 2}})

	inSlot0 := func(r []byte) []byte {
		b := make([]byte, 2*SlotSize)
		copy(b, r)
		return b
	}
	cases := map[string][]byte{
		"empty":              {},
		"short":              v2[:10],
		"truncated":          v2[:len(v2)-3],
		"bit flip":           flip(good, 12),
		"bad magic":          append([]byte("XXXX"), good[4:]...),
		"bad crc":            flip(good, len(rec)-1),
		"extra byte":         append(append([]byte(nil), good...), 0),
		"slots cut short":    good[:2*SlotSize-1],
		"no slot written":    make([]byte, 2*SlotSize),
		"a record, no slots": rec,
		"legacy bit flip":    flip(v2, 12),
		"legacy extra byte":  append(append([]byte(nil), v2...), 0),
	}
	// A newer version with a valid checksum is refused too.
	future := append([]byte(nil), rec[:len(rec)-4]...)
	binary.BigEndian.PutUint16(future[4:], 4)
	cases["future version"] = inSlot0(reseal(future))
	// A member count that does not match the record, with a valid checksum.
	bad := append([]byte(nil), rec[:len(rec)-4]...)
	binary.BigEndian.PutUint32(bad[24:], 100)
	cases["member count"] = inSlot0(reseal(bad))
	huge := append([]byte(nil), rec[:len(rec)-4]...)
	binary.BigEndian.PutUint32(huge[24:], MaxMembers+1)
	cases["too many members"] = inSlot0(reseal(huge))
	badv2 := append([]byte(nil), v2[:len(v2)-4]...)
	binary.BigEndian.PutUint32(badv2[24:], 100)
	cases["legacy member count"] = reseal(badv2)

	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(Path(dir), b, 0o600))
			_, err := Load(dir)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrCorrupt)
			assert.Contains(t, err.Error(), Path(dir), "the error names the file")
			_, err = NextIncarnation(dir, 0)
			assert.ErrorIs(t, err, ErrCorrupt, "a corrupt file is not silently replaced")
		})
	}
}

// legacy encodes s in the single-record layout of version 1 (no epoch) or
// 2.
func legacy(v uint16, s State) []byte {
	b := make([]byte, 28)
	copy(b, "FMST")
	binary.BigEndian.PutUint16(b[4:], v)
	binary.BigEndian.PutUint64(b[8:], s.Incarnation)
	binary.BigEndian.PutUint64(b[16:], s.Generation)
	binary.BigEndian.PutUint32(b[24:], uint32(len(s.Members)))
	for _, m := range s.Members {
		b = binary.BigEndian.AppendUint32(b, m)
	}
	if v >= 2 {
		b = binary.BigEndian.AppendUint64(b, s.Epoch)
	}
	return reseal(b)
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x40
	return c
}

func reseal(body []byte) []byte {
	return binary.BigEndian.AppendUint32(body, crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
}

// A crash between writing the temporary file and renaming it (when the
// file is created) leaves the temporary file: Load ignores it, and the
// next boot's NextIncarnation or the next creation removes it.
func TestLeftoverTempIsIgnored(t *testing.T) {
	dir := t.TempDir()
	old := State{Incarnation: 1, Generation: 1, Members: []uint32{1}}
	require.NoError(t, Save(dir, old))
	// What a crashed creation of a newer state leaves: a complete or a partial temp.
	rec, err := encode(State{Incarnation: 2, Generation: 2}, 1)
	require.NoError(t, err)
	newer := make([]byte, 2*SlotSize)
	copy(newer, rec)
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".state-123.tmp"), newer, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".state-456.tmp"), newer[:7], 0o600))

	got, err := Load(dir)
	require.NoError(t, err)
	assert.Equal(t, old, got, "the state is the last one renamed into place")

	require.NoError(t, Save(dir, State{Incarnation: 3}))
	got, err = Load(dir)
	require.NoError(t, err)
	assert.Equal(t, State{Incarnation: 3}, got)
	_, err = NextIncarnation(dir, 0)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"state", "state.lock"}, dirNames(t, dir))

	// A leftover temp and no state file at all: still the zero state.
	dir2 := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir2, ".state-9.tmp"), newer, 0o600))
	got, err = Load(dir2)
	require.NoError(t, err)
	assert.Equal(t, State{}, got)
}

// fakeClock makes NextIncarnation's clock read *the returned time, until
// the test ends.
func fakeClock(t *testing.T, start time.Time) *time.Time {
	clock := start
	now = func() time.Time { return clock }
	t.Cleanup(func() { now = time.Now })
	return &clock
}

// nextInc is NextIncarnation(dir, reserve), which must succeed.
func nextInc(t *testing.T, dir string, reserve uint64) uint64 {
	n, err := NextIncarnation(dir, reserve)
	require.NoError(t, err)
	return n
}

// The incarnations reserved past the one returned are never returned by a
// later boot, whatever the clock says; a reserve renewed by a later save
// (the agent's) holds the same way.
func TestNextIncarnationReserves(t *testing.T) {
	dir := t.TempDir()
	clock := fakeClock(t, time.Unix(0, 1000))

	n1 := nextInc(t, dir, 100)
	assert.Equal(t, uint64(1000), n1)
	s, err := Load(dir)
	require.NoError(t, err)
	assert.Equal(t, uint64(1100), s.Incarnation, "on disk: the reserve's end")
	// The agent took n1+1 .. n1+100 without saving, and crashed: the next
	// boot starts above them, the clock unmoved.
	assert.Equal(t, uint64(1101), nextInc(t, dir, 100))
	// The clock ahead: the clock's, as before.
	*clock = time.Unix(0, 50000)
	n3 := nextInc(t, dir, 100)
	assert.Equal(t, uint64(50000), n3)
	// A reserve renewed by a save (n3+100 used up, n3+101 saved with its
	// reserve) holds after a clock that went back.
	s, err = Load(dir)
	require.NoError(t, err)
	s.Incarnation = n3 + 101 + 100
	require.NoError(t, Save(dir, s))
	*clock = time.Unix(0, 10)
	assert.Equal(t, n3+202, nextInc(t, dir, 100))
}

func TestNextIncarnation(t *testing.T) {
	dir := t.TempDir()
	clock := fakeClock(t, time.Unix(0, 1000))

	// First boot: the clock is ahead of the (missing) state.
	n1, err := NextIncarnation(dir, 0)
	require.NoError(t, err)
	assert.Equal(t, uint64(1000), n1)
	// The clock did not move (or went back): still increasing.
	n2, err := NextIncarnation(dir, 0)
	require.NoError(t, err)
	assert.Equal(t, uint64(1001), n2)
	*clock = time.Unix(0, 10)
	n3, err := NextIncarnation(dir, 0)
	require.NoError(t, err)
	assert.Equal(t, uint64(1002), n3)
	// The rest of the state is kept.
	s, err := Load(dir)
	require.NoError(t, err)
	s.Generation, s.Members = 7, []uint32{1, 2, 3}
	require.NoError(t, Save(dir, s))
	*clock = time.Unix(0, 5000)
	n4, err := NextIncarnation(dir, 0)
	require.NoError(t, err)
	assert.Equal(t, uint64(5000), n4)
	s, err = Load(dir)
	require.NoError(t, err)
	assert.Equal(t, State{Incarnation: 5000, Generation: 7, Members: []uint32{1, 2, 3}}, s)

	// A lost state file does not make the incarnation go back.
	require.NoError(t, os.Remove(Path(dir)))
	*clock = time.Unix(0, 6000)
	n5, err := NextIncarnation(dir, 0)
	require.NoError(t, err)
	assert.Greater(t, n5, n4)
}

// Concurrent boots sharing a directory never get the same incarnation.
func TestNextIncarnationConcurrent(t *testing.T) {
	dir := t.TempDir()
	now = func() time.Time { return time.Unix(0, 1) }
	defer func() { now = time.Now }()
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				n, err := NextIncarnation(dir, 0)
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				assert.False(t, seen[n], "incarnation %d twice", n)
				seen[n] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	assert.Len(t, seen, 80)
	s, err := Load(dir)
	require.NoError(t, err)
	assert.Equal(t, uint64(80), s.Incarnation)
}

func TestTooManyMembers(t *testing.T) {
	err := Save(t.TempDir(), State{Members: make([]uint32, MaxMembers+1)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "members")
}

func TestUnreadable(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(Path(dir), 0o700)) // a directory where the file should be
	_, err := Load(dir)
	require.Error(t, err)
	assert.False(t, errors.Is(err, ErrCorrupt))
	assert.Contains(t, err.Error(), Path(dir))
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// An unsynced save never writes over the slot of the last synced save, nor
// does the next save of the process while the unsynced one may not be on
// disk: it writes that same slot again. A process's first save flushes the
// file first (an earlier process may have left a save unflushed). The
// membership file's saves are all unsynced; the slot logic is save's, for
// either file, and is tested here on the state file, mixed.
func TestSaveUnsynced(t *testing.T) {
	dir := t.TempDir()
	syncs := 0
	defer func(f func(*os.File) error) { stateDatasync = f }(stateDatasync)
	stateDatasync = func(f *os.File) error { syncs++; return f.Sync() }
	st := func(gen uint64) State {
		return State{Incarnation: 7, Generation: gen, Members: []uint32{1, 2}, Epoch: 3}
	}
	saveUnsynced := func(s State) {
		unlock, err := lock(dir)
		require.NoError(t, err)
		defer unlock()
		require.NoError(t, save(dir, FileName, s, false))
	}
	slots := func() (s0, s1 []byte) {
		b, err := os.ReadFile(Path(dir))
		require.NoError(t, err)
		return b[:SlotSize], b[SlotSize:]
	}
	load := func() uint64 {
		s, err := Load(dir)
		require.NoError(t, err)
		return s.Generation
	}

	require.NoError(t, Save(dir, st(1))) // created: slot 0
	require.NoError(t, Save(dir, st(2))) // slot 1, synced
	durable, _ := slots()                // slot 0 holds gen 1
	require.NoError(t, Save(dir, st(3))) // slot 0, synced: the last durable save
	syncs = 0
	s0, _ := slots()
	require.NotEqual(t, durable, s0)
	durable = s0

	saveUnsynced(st(4))
	saveUnsynced(st(5))
	assert.Zero(t, syncs, "unsynced saves: no flush")
	assert.Equal(t, uint64(5), load())
	s0, _ = slots()
	assert.Equal(t, durable, s0, "the last synced save's slot untouched by unsynced saves")

	require.NoError(t, Save(dir, st(6)))
	assert.Equal(t, 1, syncs)
	assert.Equal(t, uint64(6), load())
	s0, _ = slots()
	assert.Equal(t, durable, s0, "the next synced save rewrote the unsynced slot, not the durable one")

	// Synced again: the older slot (0) now.
	require.NoError(t, Save(dir, st(7)))
	s0, _ = slots()
	assert.NotEqual(t, durable, s0)
	assert.Equal(t, uint64(7), load())

	// A process that left gen 8 unsynced in slot 1, and the next one: its
	// first save flushes the file, then writes the older slot (0).
	saveUnsynced(st(8))
	forgetWritten(Path(dir))
	syncs = 0
	_, s1 := slots()
	require.NoError(t, Save(dir, st(9)))
	assert.Equal(t, 2, syncs, "the file flushed, then the save")
	_, after1 := slots()
	assert.Equal(t, s1, after1, "gen 8's slot kept: flushed, it is the newest durable one")
	assert.Equal(t, uint64(9), load())
}

// forgetWritten makes this process a new one for the file at p: its next
// save is its first.
func forgetWritten(p string) {
	slotFiles.Lock()
	delete(slotFiles.unsynced, p)
	slotFiles.Unlock()
}

// The membership file: written without the flush (but its creation, and a
// process's first save, which flushes what an earlier one left), never
// touching the state file; Load takes the generation and members of the
// file with the higher generation, the incarnation and epoch always from
// the state file.
func TestSaveMembers(t *testing.T) {
	dir := t.TempDir()
	syncs := map[string]int{}
	defer func(f func(*os.File) error) { stateDatasync = f }(stateDatasync)
	stateDatasync = func(f *os.File) error { syncs[filepath.Base(f.Name())]++; return f.Sync() }
	load := func() State {
		s, err := Load(dir)
		require.NoError(t, err)
		return s
	}

	// No state file yet: the membership file's alone.
	require.NoError(t, SaveMembers(dir, 2, []uint32{1, 2}))
	assert.Equal(t, State{Generation: 2, Members: []uint32{1, 2}}, load())

	require.NoError(t, Save(dir, State{Incarnation: 9, Generation: 3, Members: []uint32{1, 2, 3}, Epoch: 4}))
	state, err := os.ReadFile(Path(dir))
	require.NoError(t, err)
	assert.Equal(t, State{Incarnation: 9, Generation: 3, Members: []uint32{1, 2, 3}, Epoch: 4}, load(), "the state file's generation is higher")

	clear(syncs)
	require.NoError(t, SaveMembers(dir, 4, []uint32{1, 3}))
	require.NoError(t, SaveMembers(dir, 5, []uint32{1}))
	assert.Zero(t, syncs[MembersFileName], "membership saves: no flush")
	assert.Equal(t, State{Incarnation: 9, Generation: 5, Members: []uint32{1}, Epoch: 4}, load())
	after, err := os.ReadFile(Path(dir))
	require.NoError(t, err)
	assert.Equal(t, state, after, "the state file untouched")

	require.NoError(t, Save(dir, State{Incarnation: 9, Generation: 6, Members: []uint32{1, 2}, Epoch: 5}))
	assert.Equal(t, State{Incarnation: 9, Generation: 6, Members: []uint32{1, 2}, Epoch: 5}, load())

	// The next process's first membership save flushes the file first.
	forgetWritten(MembersPath(dir))
	clear(syncs)
	require.NoError(t, SaveMembers(dir, 7, []uint32{2}))
	assert.Equal(t, 1, syncs[MembersFileName], "an earlier process's unsynced save flushed")
	assert.Equal(t, State{Incarnation: 9, Generation: 7, Members: []uint32{2}, Epoch: 5}, load())
	assert.ElementsMatch(t, []string{"state", "state.lock", "members", "members.lock"}, dirNames(t, dir))

	// A membership file that fails its checks is an error naming it.
	b, err := os.ReadFile(MembersPath(dir))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(MembersPath(dir), flip(flip(b, 30), SlotSize+30), 0o600))
	_, err = Load(dir)
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), MembersPath(dir))
}

// A membership save the disk keeps waiting does not hold up a save of the
// state (an epoch the real-time loop must have on disk before it sends):
// they share no lock. The membership save here is a new process's first,
// stuck in the flush of what an earlier one left.
func TestStateSaveNotBehindMembersSave(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, Save(dir, State{Incarnation: 1, Generation: 1, Epoch: 1}))
	require.NoError(t, SaveMembers(dir, 2, []uint32{1, 2}))
	forgetWritten(MembersPath(dir))

	entered, release := make(chan struct{}), make(chan struct{})
	defer func(f func(*os.File) error) { stateDatasync = f }(stateDatasync)
	stateDatasync = func(f *os.File) error {
		if f.Name() == MembersPath(dir) {
			close(entered)
			<-release
		}
		return f.Sync()
	}
	membersDone := make(chan error, 1)
	go func() { membersDone <- SaveMembers(dir, 3, []uint32{1, 2, 3}) }()
	<-entered

	stateDone := make(chan error, 1)
	go func() {
		stateDone <- Save(dir, State{Incarnation: 1, Generation: 2, Members: []uint32{1, 2}, Epoch: 2})
	}()
	select {
	case err := <-stateDone:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("the state's save waited for the membership file's")
	}
	s, err := Load(dir)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), s.Epoch, "the epoch saved while the membership save was stuck")

	close(release)
	require.NoError(t, <-membersDone)
	s, err = Load(dir)
	require.NoError(t, err)
	assert.Equal(t, State{Incarnation: 1, Generation: 3, Members: []uint32{1, 2, 3}, Epoch: 2}, s)
}

// TestEpochExact: the exact-epoch flag (flags bit 0) survives a save and a
// load, a later save without it clears it, and a slot written with it is
// still read by a decoder that ignores the flags (as agents before it do):
// same epoch, nothing else changed.
func TestEpochExact(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, Save(dir, State{Incarnation: 5, Generation: 2, Members: []uint32{1, 2}, Epoch: 9, EpochExact: true}))
	st, err := Load(dir)
	require.NoError(t, err)
	assert.Equal(t, State{Incarnation: 5, Generation: 2, Members: []uint32{1, 2}, Epoch: 9, EpochExact: true}, st)

	b, err := encode(State{Incarnation: 5, Epoch: 9, EpochExact: true}, 1)
	require.NoError(t, err)
	assert.Equal(t, uint16(flagEpochExact), binary.BigEndian.Uint16(b[6:]))
	plain, err := encode(State{Incarnation: 5, Epoch: 9}, 1)
	require.NoError(t, err)
	assert.Zero(t, binary.BigEndian.Uint16(plain[6:]))
	assert.Equal(t, plain[8:len(plain)-4], b[8:len(b)-4], "only the flags differ before the checksum")

	require.NoError(t, Save(dir, State{Incarnation: 5, Generation: 3, Members: []uint32{1, 2}, Epoch: 264}))
	st, err = Load(dir)
	require.NoError(t, err)
	assert.False(t, st.EpochExact, "a ceiling saved after it")
	assert.Equal(t, uint64(264), st.Epoch)
}

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
	require.NoError(t, Save(dir, State{Incarnation: 0x0102030405060708, Generation: 9, Members: []uint32{3}, Epoch: 77}))
	b, err := os.ReadFile(Path(dir))
	require.NoError(t, err)
	require.Len(t, b, 28+4+8+4)
	assert.Equal(t, "FMST", string(b[:4]))
	assert.Equal(t, uint16(2), binary.BigEndian.Uint16(b[4:]))
	assert.Equal(t, uint64(77), binary.BigEndian.Uint64(b[32:]))
	assert.Equal(t, uint64(0x0102030405060708), binary.BigEndian.Uint64(b[8:]))
	assert.Equal(t, uint64(9), binary.BigEndian.Uint64(b[16:]))
	assert.Equal(t, uint32(1), binary.BigEndian.Uint32(b[24:]))
	assert.Equal(t, uint32(3), binary.BigEndian.Uint32(b[28:]))

	// A version 1 file (no epoch) still loads, with epoch 0.
	v1 := append([]byte(nil), b[:32]...)
	binary.BigEndian.PutUint16(v1[4:], 1)
	require.NoError(t, os.WriteFile(Path(dir), reseal(v1), 0o600))
	got, err := Load(dir)
	require.NoError(t, err)
	assert.Equal(t, State{Incarnation: 0x0102030405060708, Generation: 9, Members: []uint32{3}}, got)
}

func TestCorrupt(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, Save(dir, State{Incarnation: 5, Generation: 6, Members: []uint32{1, 2}}))
	good, err := os.ReadFile(Path(dir))
	require.NoError(t, err)

	cases := map[string][]byte{
		"empty":      {},
		"short":      good[:10],
		"truncated":  good[:len(good)-3],
		"bit flip":   flip(good, 12),
		"bad magic":  append([]byte("XXXX"), good[4:]...),
		"bad crc":    flip(good, len(good)-1),
		"extra byte": append(append([]byte(nil), good...), 0),
	}
	// A newer version with a valid checksum is refused too.
	v2 := append([]byte(nil), good[:len(good)-4]...)
	binary.BigEndian.PutUint16(v2[4:], 3)
	cases["future version"] = reseal(v2)
	// A member count that does not match the length, with a valid checksum.
	bad := append([]byte(nil), good[:len(good)-4]...)
	binary.BigEndian.PutUint32(bad[24:], 100)
	cases["member count"] = reseal(bad)

	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(Path(dir), b, 0o600))
			_, err := Load(dir)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrCorrupt)
			assert.Contains(t, err.Error(), Path(dir), "the error names the file")
			_, err = NextIncarnation(dir)
			assert.ErrorIs(t, err, ErrCorrupt, "a corrupt file is not silently replaced")
		})
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x40
	return c
}

func reseal(body []byte) []byte {
	return binary.BigEndian.AppendUint32(body, crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
}

// A crash between writing the temporary file and renaming it leaves the
// temporary file: Load ignores it and the next Save removes it.
func TestLeftoverTempIsIgnored(t *testing.T) {
	dir := t.TempDir()
	old := State{Incarnation: 1, Generation: 1, Members: []uint32{1}}
	require.NoError(t, Save(dir, old))
	// What a crashed Save of a newer state leaves: a complete or a partial temp.
	newer, err := encode(State{Incarnation: 2, Generation: 2})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".state-123.tmp"), newer, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".state-456.tmp"), newer[:7], 0o600))

	got, err := Load(dir)
	require.NoError(t, err)
	assert.Equal(t, old, got, "the state is the last one renamed into place")

	require.NoError(t, Save(dir, State{Incarnation: 3}))
	assert.ElementsMatch(t, []string{"state", "state.lock"}, dirNames(t, dir))

	// A leftover temp and no state file at all: still the zero state.
	dir2 := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir2, ".state-9.tmp"), newer, 0o600))
	got, err = Load(dir2)
	require.NoError(t, err)
	assert.Equal(t, State{}, got)
}

func TestNextIncarnation(t *testing.T) {
	dir := t.TempDir()
	clock := time.Unix(0, 1000)
	now = func() time.Time { return clock }
	defer func() { now = time.Now }()

	// First boot: the clock is ahead of the (missing) state.
	n1, err := NextIncarnation(dir)
	require.NoError(t, err)
	assert.Equal(t, uint64(1000), n1)
	// The clock did not move (or went back): still increasing.
	n2, err := NextIncarnation(dir)
	require.NoError(t, err)
	assert.Equal(t, uint64(1001), n2)
	clock = time.Unix(0, 10)
	n3, err := NextIncarnation(dir)
	require.NoError(t, err)
	assert.Equal(t, uint64(1002), n3)
	// The rest of the state is kept.
	s, err := Load(dir)
	require.NoError(t, err)
	s.Generation, s.Members = 7, []uint32{1, 2, 3}
	require.NoError(t, Save(dir, s))
	clock = time.Unix(0, 5000)
	n4, err := NextIncarnation(dir)
	require.NoError(t, err)
	assert.Equal(t, uint64(5000), n4)
	s, err = Load(dir)
	require.NoError(t, err)
	assert.Equal(t, State{Incarnation: 5000, Generation: 7, Members: []uint32{1, 2, 3}}, s)

	// A lost state file does not make the incarnation go back.
	require.NoError(t, os.Remove(Path(dir)))
	clock = time.Unix(0, 6000)
	n5, err := NextIncarnation(dir)
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
				n, err := NextIncarnation(dir)
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

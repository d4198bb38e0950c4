// Package testpattern is the known checksum pattern that the torn-read tests
// write and verify: every field of an entity is a function of its index and
// of a version v (stored as Incarnation), so a read that mixes two writes
// fails Verify. shmem/c/test_shm.c implements the same functions in C; keep
// them in step.
package testpattern

import (
	"fmt"

	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/wire"
)

// Name is the name of churned entity i.
func Name(i int) string { return fmt.Sprintf("ctest/%04d", i) }

// LongLens are the name lengths of the static entities that exercise every
// path of the C xxhash64 (short, 8-byte, 32-byte stripes, maximum).
var LongLens = []int{1, 3, 4, 7, 8, 31, 32, 33, 63, 64, 100, 199, 200}

// LongName is the name of the static entity of length n: byte k is
// 'A' + (7k + n) mod 26.
func LongName(n int) string {
	b := make([]byte, n)
	for k := range b {
		b[k] = byte('A' + (7*k+n)%26)
	}
	return string(b)
}

func causeByte(v uint64, j, k int) byte { return byte('a' + (v+uint64(j)+uint64(k))%26) }

// Fill sets e to version v of churned entity i.
func Fill(e *shmem.Entity, i int, v uint64) { fill(e, Name(i), i, v) }

func fill(e *shmem.Entity, name string, i int, v uint64) {
	*e = shmem.Entity{}
	_ = e.SetName(name)
	id := e.ID
	e.Kind = wire.EntityKind(1 + i%5)
	e.Incarnation = v
	e.ChangedSeq = v ^ id
	e.ChangedAt = int64(v * 1000003)
	e.Owner = wire.NodeID(uint32(v) ^ uint32(id))
	e.ChangedBy = wire.NodeID(uint32(v>>3) + 7)
	e.State = wire.State(1 + v&1)
	e.NAlarms = uint8(v % (shmem.MaxAlarms + 1))
	for j := 0; j < int(e.NAlarms); j++ {
		a := &e.Alarms[j]
		a.RaisedAt = int64(v*31 + uint64(j))
		a.RaisedBy = wire.NodeID(uint32(v) + uint32(j))
		a.Severity = wire.Severity(1 + (v+uint64(j))%5)
		a.CauseLen = uint8(8 + (v+uint64(j))%57)
		for k := 0; k < int(a.CauseLen); k++ {
			a.Cause[k] = causeByte(v, j, k)
		}
	}
}

// Set caches the names and IDs of n churned entities.
type Set struct {
	Names []string
	IDs   []uint64
}

// NewSet returns the set of churned entities 0..n-1.
func NewSet(n int) *Set {
	s := &Set{Names: make([]string, n), IDs: make([]uint64, n)}
	for i := range s.Names {
		s.Names[i] = Name(i)
		s.IDs[i] = shmem.IDOf(s.Names[i])
	}
	return s
}

// Fill sets e to version v of entity i.
func (s *Set) Fill(e *shmem.Entity, i int, v uint64) { fill(e, s.Names[i], i, v) }

// Verify checks that e is exactly some version of entity i (the version is
// e.Incarnation). It allocates nothing when e is good.
func (s *Set) Verify(e *shmem.Entity, i int) error {
	v, id := e.Incarnation, s.IDs[i]
	ok := e.ID == id && e.ChangedSeq == v^id && e.ChangedAt == int64(v*1000003) &&
		e.Owner == wire.NodeID(uint32(v)^uint32(id)) && e.ChangedBy == wire.NodeID(uint32(v>>3)+7) &&
		e.Kind == wire.EntityKind(1+i%5) && e.State == wire.State(1+v&1) &&
		string(e.NameBytes()) == s.Names[i] && e.NAlarms == uint8(v%(shmem.MaxAlarms+1))
	for j := 0; ok && j < int(e.NAlarms); j++ {
		a := &e.Alarms[j]
		ok = a.RaisedAt == int64(v*31+uint64(j)) && a.RaisedBy == wire.NodeID(uint32(v)+uint32(j)) &&
			a.Severity == wire.Severity(1+(v+uint64(j))%5) && a.CauseLen == uint8(8+(v+uint64(j))%57)
		for k := 0; ok && k < int(a.CauseLen); k++ {
			ok = a.Cause[k] == causeByte(v, j, k)
		}
	}
	if !ok {
		return fmt.Errorf("entity %d (v=%d) torn: %s", i, v, summary(e))
	}
	return nil
}

// Verify checks that e is exactly some version of churned entity i.
func Verify(e *shmem.Entity, i int) error { return NewSet(i+1).Verify(e, i) }

func summary(e *shmem.Entity) string {
	return fmt.Sprintf("id=%#x inc=%d seq=%#x at=%d owner=%d by=%d kind=%d state=%d name=%q nalarms=%d",
		e.ID, e.Incarnation, e.ChangedSeq, e.ChangedAt, e.Owner, e.ChangedBy, e.Kind, e.State, e.NameBytes(), e.NAlarms)
}

// FillLong sets e to the static entity with a name of length n.
func FillLong(e *shmem.Entity, n int) {
	*e = shmem.Entity{}
	_ = e.SetName(LongName(n))
	e.Kind = wire.KindCustom
	e.State = wire.StateUp
	e.Incarnation = uint64(n)
}

// Groups is the number of transaction groups of n entities in groups of size.
func Groups(n, size int) int { return (n + size - 1) / size }

// CommitGroup writes version v of every member of group g (entities
// g*size .. g*size+size-1) in one transaction; a member for which del()
// returns true is deleted instead. e is scratch space.
func (s *Set) CommitGroup(w *shmem.Writer, e *shmem.Entity, g, size int, v uint64, del func() bool) error {
	w.Begin()
	for i := g * size; i < min((g+1)*size, len(s.Names)); i++ {
		if del != nil && del() {
			w.Delete(s.IDs[i])
			continue
		}
		s.Fill(e, i, v)
		if err := w.Put(e); err != nil {
			w.Abort()
			return err
		}
	}
	w.Commit()
	return nil
}

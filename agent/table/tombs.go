package table

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"

	"github.com/fmagent/fmagent/internal/recency"
	"github.com/fmagent/fmagent/wire"
)

// tombs is one kind of tombstone (an entity's unregister, an alarm's
// clear): for each key the version of the write that last removed it,
// bounded to limit keys, the key whose last removal is the oldest forgotten
// first, each holding one place (internal/recency).
//
// Why: before, the queue took a key again each time it was removed anew (a
// flapping alarm, cleared, raised and cleared again), so forgetting its
// first place forgot its newest tombstone, a flapping alarm's places pushed
// out every other tombstone, and a snapshot carried a key once while the
// sender had queued it twice, so the two tables forgot different
// tombstones afterwards (TestTombstoneOrderIsTheLastRemovals,
// TestTombstonesAfterASnapshotForgetAlike).
type tombs[K comparable] struct {
	recency.Queue[K, wire.WriteVersion]
	// forgotten counts the tombstones forgotten to the bound, since the
	// table was made (a snapshot's Reset leaves it): the count of writes
	// only a tombstone could refuse that this table can no longer refuse
	// (DESIGN §9, "It stays"; fmagent_tombstones_forgotten_total).
	forgotten uint64
}

// version returns k's tombstone (zero if none is kept).
func (ts *tombs[K]) version(k K) wire.WriteVersion {
	if it := ts.Find(k); it != nil {
		return it.Val
	}
	return wire.WriteVersion{}
}

// removed records that k was removed by the write at v: the newer of v and
// what k had, k's place now the newest. A new key is stored as k, so k must
// not alias a buffer; then the oldest beyond limit are forgotten.
func (ts *tombs[K]) removed(k K, v wire.WriteVersion, limit int) {
	if it := ts.Find(k); it != nil {
		ts.again(it, v)
		return
	}
	ts.add(k, v, limit)
}

// add is removed for a key known to have no tombstone (looked up already).
func (ts *tombs[K]) add(k K, v wire.WriteVersion, limit int) {
	ts.Add(k, v)
	for ts.Len() > limit {
		ts.Remove(ts.Oldest().Key)
		ts.forgotten++
	}
}

// again is removed for a key whose tombstone it is (found with a key that
// may alias a buffer): it allocates nothing once the queue has grown.
func (ts *tombs[K]) again(it *recency.Item[K, wire.WriteVersion], v wire.WriteVersion) {
	it.Val = maxVer(it.Val, v)
	ts.Touch(it)
}

// take deletes k's tombstone (k is present again) and returns its version.
func (ts *tombs[K]) take(k K) wire.WriteVersion {
	if it, ok := ts.Remove(k); ok {
		return it.Val
	}
	return wire.WriteVersion{}
}

// Tombstones returns how many tombstones the table keeps, of entities
// (unregisters) and of alarms (clears), and how many of each it forgot to
// the bound (MaxTombstones) since it was made.
func (t *Table) Tombstones() (entities, alarms int, forgottenEntities, forgottenAlarms uint64) {
	return t.gone.Len(), t.cleared.Len(), t.gone.forgotten, t.cleared.forgotten
}

// TombstoneDigest is a hash of the table's tombstones in the order they are
// forgotten (entities' first, then alarms'). Two tables that applied the
// same changes, or one rebuilt from the other's SnapshotChanges, have equal
// tombstone digests, and so refuse the same re-asserted writes from then on
// whichever of them is master; Digest leaves tombstones out. For checks (the
// simulator's), not for a hot path: it hashes every tombstone.
func (t *Table) TombstoneDigest() uint64 {
	h := xxhash.New()
	var b []byte
	for it := range t.gone.All() {
		b = binary.LittleEndian.AppendUint64(b[:0], it.Key)
		b = appendVer(b, it.Val)
		_, _ = h.Write(b)
	}
	_, _ = h.Write([]byte{0xff})
	for it := range t.cleared.All() {
		b = binary.LittleEndian.AppendUint64(b[:0], it.Key.entity)
		b = append(b, byte(len(it.Key.cause)))
		b = append(b, it.Key.cause...)
		b = appendVer(b, it.Val)
		_, _ = h.Write(b)
	}
	return h.Sum64()
}

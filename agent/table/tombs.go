package table

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"

	"github.com/fmagent/fmagent/wire"
)

// tombs is one kind of tombstone (an entity's unregister, an alarm's
// clear): for each key the version of the write that last removed it,
// bounded to max keys, the key whose last removal is the oldest forgotten
// first.
//
// Why in the order of last removal, one place a key: before, the queue took
// a key again each time it was removed anew (a flapping alarm, cleared,
// raised and cleared again), so forgetting its first place forgot its
// newest tombstone, a flapping alarm's places pushed out every other
// tombstone, and a snapshot carried a key once while the sender had queued
// it twice, so the two tables forgot different tombstones afterwards
// (TestTombstoneOrderIsTheLastRemovals, TestTombstonesAfterASnapshotForgetAlike).
//
// A key removed anew is queued again and its older place left behind,
// stale (its generation no longer the key's); stale places are skipped and,
// once they are as many as the live ones, compacted away in place, so the
// queue's array stops growing and a removal allocates only for a new key.
type tombs[K comparable] struct {
	m    map[K]*tomb[K]
	q    []tombPlace[K] // q[head:]: oldest last removal first; stale places among them
	head int
	gen  uint64
	// forgotten counts the tombstones forgotten to the bound, since the
	// table was made (a snapshot's Reset leaves it): the count of writes
	// only a tombstone could refuse that this table can no longer refuse
	// (DESIGN §9, "It stays"; fmagent_tombstones_forgotten_total).
	forgotten uint64
}

type tomb[K comparable] struct {
	key K
	ver wire.WriteVersion
	gen uint64 // its live place's generation; 0 once it is gone
}

type tombPlace[K comparable] struct {
	t   *tomb[K]
	gen uint64
}

func (p tombPlace[K]) live() bool { return p.t.gen == p.gen }

func newTombs[K comparable]() tombs[K] { return tombs[K]{m: make(map[K]*tomb[K])} }

// find returns k's tombstone, nil if none is kept. k may alias a buffer:
// it is only looked up.
func (ts *tombs[K]) find(k K) *tomb[K] { return ts.m[k] }

// version returns k's tombstone (zero if none is kept).
func (ts *tombs[K]) version(k K) wire.WriteVersion {
	if p := ts.m[k]; p != nil {
		return p.ver
	}
	return wire.WriteVersion{}
}

// removed records that k was removed by the write at v: the newer of v and
// what k had, k's place now the newest. A new key is stored as k, so k must
// not alias a buffer; then the oldest beyond max are forgotten.
func (ts *tombs[K]) removed(k K, v wire.WriteVersion, max int) {
	if p := ts.m[k]; p != nil {
		ts.requeue(p, v)
		return
	}
	p := &tomb[K]{key: k, ver: v}
	ts.m[k] = p
	ts.place(p)
	for len(ts.m) > max {
		ts.forgetOldest()
	}
}

// requeue is removed for a key that already has its tombstone p (found with
// a key that may alias a buffer): it allocates nothing once the queue's
// array has grown.
func (ts *tombs[K]) requeue(p *tomb[K], v wire.WriteVersion) {
	p.ver = maxVer(p.ver, v)
	ts.place(p)
}

// take deletes k's tombstone (k is present again) and returns its version.
func (ts *tombs[K]) take(k K) wire.WriteVersion {
	p := ts.m[k]
	if p == nil {
		return wire.WriteVersion{}
	}
	delete(ts.m, k)
	p.gen = 0
	return p.ver
}

func (ts *tombs[K]) place(p *tomb[K]) {
	ts.gen++
	p.gen = ts.gen
	// The whole array counts, the forgotten places before head too: at
	// the bound each new tombstone forgets one, and head moves on.
	if len(ts.q) >= 2*len(ts.m)+32 {
		ts.compact()
	}
	ts.q = append(ts.q, tombPlace[K]{p, ts.gen})
}

func (ts *tombs[K]) forgetOldest() {
	for ts.head < len(ts.q) {
		pl := ts.q[ts.head]
		ts.q[ts.head] = tombPlace[K]{}
		ts.head++
		if pl.live() {
			delete(ts.m, pl.t.key)
			pl.t.gen = 0
			ts.forgotten++
			return
		}
	}
}

// compact moves the live places to the front of the queue's array, in
// order.
func (ts *tombs[K]) compact() {
	n := 0
	for _, pl := range ts.q[ts.head:] {
		if pl.live() {
			ts.q[n] = pl
			n++
		}
	}
	clear(ts.q[n:])
	ts.q = ts.q[:n]
	ts.head = 0
}

// reset forgets every tombstone.
func (ts *tombs[K]) reset() {
	clear(ts.m)
	clear(ts.q)
	ts.q = ts.q[:0]
	ts.head = 0
}

// alarmTombShown reports whether the tombstone of alarm k counts for what
// the table tells others (SnapshotChanges, TombstoneDigest): not while the
// alarm is raised, which only a local raise (no version) leaves it beside.
func (t *Table) alarmTombShown(k alarmKey) bool {
	e, ok := t.byID[k.entity]
	if !ok {
		return true
	}
	_, raised := e.findAlarm(k.cause)
	return !raised
}

// Tombstones returns how many tombstones the table keeps, of entities
// (unregisters) and of alarms (clears), and how many of each it forgot to
// the bound (MaxTombstones) since it was made.
func (t *Table) Tombstones() (entities, alarms int, forgottenEntities, forgottenAlarms uint64) {
	return len(t.gone.m), len(t.cleared.m), t.gone.forgotten, t.cleared.forgotten
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
	for _, pl := range t.gone.q[t.gone.head:] {
		if pl.live() {
			b = binary.LittleEndian.AppendUint64(b[:0], pl.t.key)
			b = appendVer(b, pl.t.ver)
			_, _ = h.Write(b)
		}
	}
	_, _ = h.Write([]byte{0xff})
	for _, pl := range t.cleared.q[t.cleared.head:] {
		if pl.live() && t.alarmTombShown(pl.t.key) {
			b = binary.LittleEndian.AppendUint64(b[:0], pl.t.key.entity)
			b = append(b, byte(len(pl.t.key.cause)))
			b = append(b, pl.t.key.cause...)
			b = appendVer(b, pl.t.ver)
			_, _ = h.Write(b)
		}
	}
	return h.Sum64()
}

package table

import (
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// NewWithHash is New with the ID function replaced, so the external tests can
// force two names onto one ID and exercise the collision path through Apply.
func NewWithHash(maxAlarms int, hash func(string) uint64) *Table {
	t := New(maxAlarms)
	t.hash = hash
	return t
}

// DigestFromScratch is what Digest returns, computed from every entity
// afresh: none of the per-entity hashes, their sum, the dirty list or the
// cached digest is read or changed.
func (t *Table) DigestFromScratch() uint64 {
	var acc uint64
	var b []byte
	for _, e := range t.sorted {
		b = appendEntity(b[:0], e)
		acc += xxhash.Sum64(b)
	}
	d, _ := tableDigest(b, len(t.sorted), acc)
	return d
}

// CheckDigestState checks the incremental digest's bookkeeping at any
// moment, not only when Digest is called: every entity listed as dirty is
// in the table, once, at the index it records; every entity not listed has
// a per-entity hash that matches its content (so a change that forgot to
// list its entity shows at once); and acc is the sum of the entities'
// hashes (so a removal or reset that forgot to take one out shows too).
func (t *Table) CheckDigestState() error {
	if len(t.dirty) > len(t.sorted) {
		return fmt.Errorf("%d entities listed as dirty in a table of %d", len(t.dirty), len(t.sorted))
	}
	for i, e := range t.dirty {
		if t.byID[e.ID] != e {
			return fmt.Errorf("dirty[%d] %q is not in the table", i, e.Name)
		}
		if int(e.dirty) != i+1 {
			return fmt.Errorf("dirty[%d] %q records index %d", i, e.Name, e.dirty-1)
		}
	}
	var acc uint64
	var b []byte
	for _, e := range t.sorted {
		acc += e.sum
		if e.dirty != 0 {
			if int(e.dirty) > len(t.dirty) || t.dirty[e.dirty-1] != e {
				return fmt.Errorf("%q records dirty index %d but is not listed there", e.Name, e.dirty-1)
			}
			continue
		}
		b = appendEntity(b[:0], e)
		if h := xxhash.Sum64(b); h != e.sum {
			return fmt.Errorf("%q is not listed as dirty but its hash %#x is stale (now %#x)", e.Name, e.sum, h)
		}
	}
	if acc != t.acc {
		return fmt.Errorf("acc %#x, the entities' hashes sum to %#x", t.acc, acc)
	}
	return nil
}

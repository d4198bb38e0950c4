package table

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"

	"github.com/fmagent/fmagent/wire"
)

// digestVersion starts the canonical encoding, so a change of encoding never
// makes old and new digests agree by accident. 3: the digest became a sum of
// per-entity hashes. 4: StateVer. 5: OwnerState.
const digestVersion = 5

// Digest is a hash of the table's replicated content: for every entity its
// ID, name, kind (and Implicit), owner, state, incarnation, Born, Ver,
// StateVer, OwnerState and alarms (cause, severity, raised-at, raised-by, version). Two
// tables that applied the same changes, or one rebuilt from the other's
// SnapshotChanges, have equal digests; a difference in any of those fields
// changes it.
//
// Left out, on purpose: the table's Seq (compare it separately; digests are
// meaningful between tables at the same seq), and each entity's ChangedAt,
// ChangedSeq, ChangedBy and each alarm's Seq, which record how a node got
// its copy (change by change, or from a snapshot) rather than what the copy
// says, and so legitimately differ between nodes that agree.
//
// It is not a hash of the whole table in ID order but one of the entity
// count and the sum (mod 2^64) of a 64-bit hash of each entity's canonical
// encoding, each kept with its entity. Apply only lists the entity it
// changed; Digest rehashes the listed ones and moves the sum by the
// difference, so a digest after k changed entities costs O(k), not O(n):
// core's Status calls it under the agent's lock, which the real-time loop
// takes, and operators and monitors poll Status on tables of thousands of
// entities. A sum does not depend on the order of its terms, which is fine
// because IDs are unique and each entity's hash covers its ID.
//
// The result is cached until the next change, and computing it allocates
// nothing once the scratch buffer has grown to the largest entity and the
// dirty list to the most entities changed between two digests.
func (t *Table) Digest() uint64 {
	if t.sumValid {
		return t.sum
	}
	b := t.scratch[:0]
	for _, e := range t.dirty {
		// Every entity listed is in the table: remove takes an entity
		// off the list (undirty) as it subtracts its hash.
		t.acc -= e.sum
		b = appendEntity(b[:0], e)
		e.sum = xxhash.Sum64(b)
		t.acc += e.sum
		e.dirty = 0
	}
	clear(t.dirty) // the entities are the table's, but hold none past now
	t.dirty = t.dirty[:0]
	t.sum, b = tableDigest(b, len(t.sorted), t.acc)
	t.scratch = b[:0]
	t.sumValid = true
	return t.sum
}

// tableDigest is the digest of a table of n entities whose hashes sum to
// acc, computed in b (returned for reuse).
func tableDigest(b []byte, n int, acc uint64) (uint64, []byte) {
	b = append(b[:0], digestVersion)
	b = binary.LittleEndian.AppendUint64(b, uint64(n))
	b = binary.LittleEndian.AppendUint64(b, acc)
	return xxhash.Sum64(b), b
}

// appendEntity appends to b the canonical encoding of e's replicated
// content, the bytes whose hash is e.sum.
func appendEntity(b []byte, e *Entity) []byte {
	b = binary.LittleEndian.AppendUint64(b, e.ID)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(e.Name)))
	b = append(b, e.Name...)
	k := byte(e.Kind) // < 0x80
	if e.Implicit {
		k |= 0x80
	}
	b = append(b, k, byte(e.State))
	b = binary.LittleEndian.AppendUint32(b, uint32(e.Owner))
	b = binary.LittleEndian.AppendUint64(b, e.Incarnation)
	b = appendVer(b, e.Born)
	b = appendVer(b, e.Ver)
	b = appendVer(b, e.StateVer)
	b = append(b, byte(e.OwnerState))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(e.Alarms)))
	for i := range e.Alarms {
		a := &e.Alarms[i]
		b = append(b, byte(len(a.Cause)))
		b = append(b, a.Cause...)
		b = append(b, byte(a.Severity))
		b = binary.LittleEndian.AppendUint64(b, uint64(a.RaisedAt))
		b = binary.LittleEndian.AppendUint32(b, uint32(a.RaisedBy))
		b = appendVer(b, a.Ver)
	}
	return b
}

// SnapshotChanges appends to dst the changes that rebuild the whole table on
// an empty one: the alarms' tombstones (a Clear each, in the order they are
// forgotten), then, in ascending ID order, for each entity a Register carrying its
// kind, owner, the owner's latest word on its state (OwnerState) and
// incarnation (and, when that word came after the registration, a State by
// the owner carrying it with StateVer; and when someone else marked the
// entity since, a State by nobody, node 0, carrying the state it is in),
// then one Raise per alarm (in cause order) carrying the alarm's
// severity and, as At and By, its RaisedAt and RaisedBy, so the rebuilt
// alarms keep their origin; last the entities' tombstones (an Unregister
// each, in the order they are forgotten).
//
// Every change's Seq is the table's Seq: a snapshot is one state, not a
// history. The receiver applies the changes to a Reset table, then calls
// SetSeq with the snapshot's UpToSeq (Apply already advanced it to the same
// value). The rebuilt table has the same Digest; its ChangedAt/ChangedSeq/
// ChangedBy describe the snapshot rather than the original changes.
//
// Name and Cause alias the table's own strings and are read-only: encode
// them, do not modify them, and do not keep them past the next change to the
// table.
func (t *Table) SnapshotChanges(dst []wire.Change) []wire.Change {
	// Tombstones in their fixed order, so the receiver refuses the same
	// re-asserted writes as the sender would, and forgets the same ones
	// later. The alarms' first: one can stand beside an alarm raised
	// locally (a change without a version takes none: Apply), and sent
	// after the alarm's raise, its clear would delete the alarm. The
	// entities' last: an entity's Born (below) passes through the entity
	// tombstones, and at their bound would push the oldest out.
	for it := range t.cleared.All() {
		k := it.Key
		dst = append(dst, wire.Change{Seq: t.seq, Kind: wire.ChangeClear, Entity: k.entity, Cause: unsafeBytes(k.cause), Ver: it.Val})
	}
	for _, e := range t.sorted {
		if !e.Born.IsZero() {
			// The unregister that ended its previous life: the
			// registration below picks it up as Born.
			dst = append(dst, wire.Change{Seq: t.seq, Kind: wire.ChangeUnregister, Entity: e.ID, Ver: e.Born})
		}
		var fl uint8
		if e.Implicit {
			fl = wire.ChangeImplicit
		}
		dst = append(dst, wire.Change{
			Ver:         e.Ver,
			Seq:         t.seq,
			Flags:       fl,
			Kind:        wire.ChangeRegister,
			Entity:      e.ID,
			EntityKind:  e.Kind,
			State:       e.OwnerState,
			Owner:       e.Owner,
			By:          e.ChangedBy,
			Incarnation: e.Incarnation,
			At:          e.ChangedAt,
			Name:        unsafeBytes(e.Name),
		})
		if e.Ver.Less(e.StateVer) {
			dst = append(dst, wire.Change{Seq: t.seq, Kind: wire.ChangeState, Entity: e.ID, State: e.OwnerState,
				Incarnation: e.Incarnation, By: e.Owner, At: e.ChangedAt, Ver: e.StateVer})
		}
		if e.State != e.OwnerState {
			dst = append(dst, wire.Change{Seq: t.seq, Kind: wire.ChangeState, Entity: e.ID, State: e.State,
				Incarnation: e.Incarnation, By: 0, At: e.ChangedAt})
		}
		for i := range e.Alarms {
			a := &e.Alarms[i]
			dst = append(dst, wire.Change{
				Seq:      t.seq,
				Kind:     wire.ChangeRaise,
				Entity:   e.ID,
				Severity: a.Severity,
				By:       a.RaisedBy,
				At:       a.RaisedAt,
				Cause:    unsafeBytes(a.Cause),
				Ver:      a.Ver,
			})
		}
	}
	for it := range t.gone.All() {
		dst = append(dst, wire.Change{Seq: t.seq, Kind: wire.ChangeUnregister, Entity: it.Key, Ver: it.Val})
	}
	return dst
}

func appendVer(b []byte, v wire.WriteVersion) []byte {
	b = binary.LittleEndian.AppendUint64(b, v.Epoch)
	b = binary.LittleEndian.AppendUint64(b, v.Seq)
	return binary.LittleEndian.AppendUint32(b, uint32(v.Node))
}

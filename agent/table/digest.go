package table

import (
	"encoding/binary"

	"github.com/fmagent/fmagent/wire"
)

// digestVersion starts the canonical encoding, so a change of encoding never
// makes old and new digests agree by accident.
const digestVersion = 2

// Digest is a hash of the table's replicated content, in ID order: for every
// entity its ID, name, kind (and Implicit), owner, state, incarnation and alarms (cause,
// severity, raised-at, raised-by). Two tables that applied the same changes,
// or one rebuilt from the other's SnapshotChanges, have equal digests; a
// difference in any of those fields changes it.
//
// Left out, on purpose: the table's Seq (compare it separately; digests are
// meaningful between tables at the same seq), and each entity's ChangedAt,
// ChangedSeq, ChangedBy and each alarm's Seq, which record how a node got
// its copy (change by change, or from a snapshot) rather than what the copy
// says, and so legitimately differ between nodes that agree.
//
// The result is cached until the next change, and computing it allocates
// nothing once the scratch buffer has grown to the largest entity.
func (t *Table) Digest() uint64 {
	if t.sumValid {
		return t.sum
	}
	d := &t.digest
	d.Reset()
	b := append(t.scratch[:0], digestVersion)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(t.sorted)))
	_, _ = d.Write(b)
	for _, e := range t.sorted {
		b = b[:0]
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
		_, _ = d.Write(b)
	}
	t.scratch = b[:0]
	t.sum = d.Sum64()
	t.sumValid = true
	return t.sum
}

// SnapshotChanges appends to dst the changes that rebuild the whole table on
// an empty one, in ascending ID order: for each entity a Register carrying its
// kind, owner, state and incarnation, then one Raise per alarm (in cause
// order) carrying the alarm's severity and, as At and By, its RaisedAt and
// RaisedBy, so the rebuilt alarms keep their origin.
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
			State:       e.State,
			Owner:       e.Owner,
			By:          e.ChangedBy,
			Incarnation: e.Incarnation,
			At:          e.ChangedAt,
			Name:        unsafeBytes(e.Name),
		})
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
	// Tombstones, in a fixed order, so the receiver refuses the same
	// re-asserted writes as the sender would.
	for _, id := range t.goneQ {
		if v, ok := t.gone[id]; ok {
			dst = append(dst, wire.Change{Seq: t.seq, Kind: wire.ChangeUnregister, Entity: id, Ver: v})
		}
	}
	for _, k := range t.clearedQ {
		if v, ok := t.cleared[k]; ok {
			dst = append(dst, wire.Change{Seq: t.seq, Kind: wire.ChangeClear, Entity: k.entity, Cause: unsafeBytes(k.cause), Ver: *v})
		}
	}
	return dst
}

func appendVer(b []byte, v wire.WriteVersion) []byte {
	b = binary.LittleEndian.AppendUint64(b, v.Epoch)
	b = binary.LittleEndian.AppendUint64(b, v.Seq)
	return binary.LittleEndian.AppendUint32(b, uint32(v.Node))
}

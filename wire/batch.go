package wire

import "encoding/binary"

// Update, Prepare and Snapshot carry a run of table changes. A batch larger
// than one datagram is split by the caller: each Append method takes as many
// changes as fit and reports how many, e.g.
//
//	for len(rest) > 0 {
//		pkt, n, err := c.AppendUpdate(buf[:0], &h, rest)
//		if err != nil { ... }
//		send(pkt)
//		rest = rest[n:]
//		h.Seq++
//	}
//
// Changes are validated as they are taken, so an invalid change fails the
// call that would have carried it and not an earlier one.

// Change: seq u64 | kind u8 | flags u8 | entity u64 | entity kind u8 |
// state u8 | severity u8 | owner u32 | by u32 | incarnation u64 | at i64 |
// name len u8 | cause len u8 | name | cause | version (epoch u64 | seq u64 |
// node u32) | request u64.
const (
	changeHead  = 47 // before the name
	changeFixed = changeHead + versionSize + 8
	// MaxChangeSize is the encoded size of the largest Change. It fits any
	// batch body, so a single valid change never fails to fit.
	MaxChangeSize = changeFixed + MaxName + MaxCause

	knownChangeFlags = ChangeGroupEnd | ChangeImplicit | ChangeReqDisplaced
)

// Fixed parts of the batch bodies, before the changes.
const (
	updateFixed   = 1  // nchanges u8
	prepareFixed  = 9  // txn u64 | nchanges u8
	snapshotFixed = 20 // id u64 | up-to seq u64 | index u16 | last u8 | nchanges u8
)

// checkChange validates one change; marks (ChangeApplied) only where
// marks is set: in a snapshot.
func checkChange(ch *Change, marks bool) error {
	switch {
	case ch.Kind < ChangeRegister || ch.Kind > ChangeApplied || ch.Kind == ChangeApplied && !marks:
		return errChangeKind
	case ch.Flags&^knownChangeFlags != 0, ch.Flags&ChangeReqDisplaced != 0 && ch.Req == 0:
		return errChangeFlags
	case ch.EntityKind > KindCustom:
		return errEntityKind
	case ch.State > StateDown:
		return errState
	case ch.Severity > SevCritical:
		return errSeverity
	case len(ch.Name) > MaxName:
		return errName
	case len(ch.Cause) > MaxCause:
		return errCause
	}
	return nil
}

// fitChanges validates the leading changes and returns how many fit in room
// bytes, up to MaxChanges. A change that does not fit is left to the next
// datagram, and so is its validation.
func fitChanges(room int, changes []Change, marks bool) (int, error) {
	n := 0
	for i := range changes[:min(len(changes), MaxChanges)] {
		ch := &changes[i]
		size := changeFixed + len(ch.Name) + len(ch.Cause)
		if size > room && n > 0 {
			break
		}
		if err := checkChange(ch, marks); err != nil {
			return 0, err
		}
		if size > room {
			// Unreachable while MaxChangeSize fits every batch body; kept
			// so a change of limits cannot become an endless split loop.
			return 0, errBodyTooBig
		}
		room -= size
		n++
	}
	return n, nil
}

func appendChanges(dst []byte, changes []Change) []byte {
	for i := range changes {
		ch := &changes[i]
		dst = binary.BigEndian.AppendUint64(dst, ch.Seq)
		dst = append(dst, byte(ch.Kind), ch.Flags)
		dst = binary.BigEndian.AppendUint64(dst, ch.Entity)
		dst = append(dst, byte(ch.EntityKind), byte(ch.State), byte(ch.Severity))
		dst = binary.BigEndian.AppendUint32(dst, uint32(ch.Owner))
		dst = binary.BigEndian.AppendUint32(dst, uint32(ch.By))
		dst = binary.BigEndian.AppendUint64(dst, ch.Incarnation)
		dst = binary.BigEndian.AppendUint64(dst, uint64(ch.At))
		dst = append(dst, byte(len(ch.Name)), byte(len(ch.Cause)))
		dst = append(dst, ch.Name...)
		dst = append(dst, ch.Cause...)
		dst = appendVersion(dst, ch.Ver)
		dst = binary.BigEndian.AppendUint64(dst, ch.Req)
	}
	return dst
}

// decodeChanges decodes exactly len(cs) changes filling all of b; marks
// as for checkChange.
func decodeChanges(b []byte, cs []Change, marks bool) error {
	for i := range cs {
		if len(b) < changeFixed {
			return errTruncated
		}
		nl, cl := int(b[45]), int(b[46])
		size := changeFixed + nl + cl
		if len(b) < size {
			return errTruncated
		}
		ch := &cs[i]
		*ch = Change{
			Seq:         binary.BigEndian.Uint64(b),
			Kind:        ChangeKind(b[8]),
			Flags:       b[9],
			Entity:      binary.BigEndian.Uint64(b[10:]),
			EntityKind:  EntityKind(b[18]),
			State:       State(b[19]),
			Severity:    Severity(b[20]),
			Owner:       NodeID(binary.BigEndian.Uint32(b[21:])),
			By:          NodeID(binary.BigEndian.Uint32(b[25:])),
			Incarnation: binary.BigEndian.Uint64(b[29:]),
			At:          int64(binary.BigEndian.Uint64(b[37:])),
			Name:        sub(b, changeHead, nl),
			Cause:       sub(b, changeHead+nl, cl),
			Ver:         decodeVersion(b[changeHead+nl+cl:]),
			Req:         binary.BigEndian.Uint64(b[changeHead+nl+cl+versionSize:]),
		}
		if err := checkChange(ch, marks); err != nil {
			return err
		}
		b = b[size:]
	}
	if len(b) != 0 {
		return errTrailing
	}
	return nil
}

// batchCount reads and bounds a change count.
func batchCount(v byte, allowEmpty bool) (int, error) {
	switch {
	case v > MaxChanges:
		return 0, errNChanges
	case v == 0 && !allowEmpty:
		return 0, errNoChanges
	}
	return int(v), nil
}

// appendBatch appends one sealed datagram of type t carrying the leading
// changes that fit after a fixed part of fixedLen bytes, which fixed appends
// once it is known how many changes the datagram takes. It is the common
// body of AppendUpdate, AppendPrepare and AppendSnapshot.
func (c *Codec) appendBatch(dst []byte, h *Header, t Type, fixedLen int, changes []Change, fixed func(dst []byte, n int) []byte) (out []byte, n int, err error) {
	n, err = fitChanges(MaxBody-fixedLen, changes, t == TypeSnapshot)
	if err != nil {
		return dst, 0, err
	}
	dst, start, err := c.begin(dst, h, t)
	if err != nil {
		return dst, 0, err
	}
	dst = fixed(dst, n)
	dst = appendChanges(dst, changes[:n])
	dst, err = c.seal(dst, start, h)
	if err != nil {
		return dst, 0, err
	}
	return dst, n, nil
}

// decodeBatch decodes the changes of a batch body whose fixed part is
// fixedLen bytes with the change count at countAt. Changes beyond the new
// count that the previous content used are cleared. It is the common body of
// the three batch decoders, which read their own fixed fields. Only a
// snapshot's may be empty, and only a snapshot's carry marks
// (ChangeApplied).
func decodeBatch(b []byte, fixedLen, countAt int, snapshot bool, nchanges *uint8, cs *[MaxChanges]Change) error {
	if len(b) > MaxBody {
		return errBodyTooBig
	}
	if len(b) < fixedLen {
		return errTruncated
	}
	n, err := batchCount(b[countAt], snapshot)
	if err != nil {
		return err
	}
	old := min(int(*nchanges), MaxChanges)
	*nchanges = uint8(n)
	if old > n {
		clear(cs[n:old])
	}
	return decodeChanges(b[fixedLen:], cs[:n], snapshot)
}

// AppendUpdate appends one sealed update datagram carrying the leading
// changes of changes, as many as fit (at least one), and returns how many it
// took. An empty changes is an error: there is nothing to update. h as for
// AppendHeartbeat.
func (c *Codec) AppendUpdate(dst []byte, h *Header, changes []Change) (out []byte, n int, err error) {
	if len(changes) == 0 {
		return dst, 0, errNoChanges
	}
	return c.appendBatch(dst, h, TypeUpdate, updateFixed, changes, func(dst []byte, n int) []byte {
		return append(dst, byte(n))
	})
}

// DecodeUpdate decodes an update body (1 to MaxChanges changes) into m.
// Names and causes alias b and are valid until the caller reuses the packet
// buffer. Changes beyond m.NChanges are left zero, clearing only those the
// previous content of m used, so reusing one Update is cheap and holds no
// stale aliases into old packets.
func DecodeUpdate(b []byte, m *Update) error {
	if err := decodeBatch(b, updateFixed, 0, false, &m.NChanges, &m.Changes); err != nil {
		*m = Update{}
		return err
	}
	return nil
}

// AppendPrepare appends one sealed prepare datagram of transaction txn
// carrying the leading changes of changes, as many as fit (at least one), and
// returns how many it took. A transaction larger than one datagram is sent as
// several prepares of the same txn. h as for AppendHeartbeat.
func (c *Codec) AppendPrepare(dst []byte, h *Header, txn uint64, changes []Change) (out []byte, n int, err error) {
	if len(changes) == 0 {
		return dst, 0, errNoChanges
	}
	return c.appendBatch(dst, h, TypePrepare, prepareFixed, changes, func(dst []byte, n int) []byte {
		dst = binary.BigEndian.AppendUint64(dst, txn)
		return append(dst, byte(n))
	})
}

// DecodePrepare decodes a prepare body into m; aliasing and reuse as for
// DecodeUpdate.
func DecodePrepare(b []byte, m *Prepare) error {
	if err := decodeBatch(b, prepareFixed, 8, false, &m.NChanges, &m.Changes); err != nil {
		*m = Prepare{}
		return err
	}
	m.Txn = binary.BigEndian.Uint64(b)
	return nil
}

// AppendSnapshot appends one sealed snapshot chunk carrying the leading
// changes of changes, as many as fit, and returns how many it took. It reads
// s.ID, s.UpToSeq, s.Index and s.Last and ignores s.NChanges and s.Changes.
// s.Last means "changes is the rest of the snapshot": the chunk is marked
// last only if it also takes all of them, so a caller sets s.Last once and
// loops, advancing s.Index and h.Seq per chunk. An empty changes is allowed
// (the snapshot of an empty table is one empty last chunk). h as for
// AppendHeartbeat.
func (c *Codec) AppendSnapshot(dst []byte, h *Header, s *Snapshot, changes []Change) (out []byte, n int, err error) {
	return c.appendBatch(dst, h, TypeSnapshot, snapshotFixed, changes, func(dst []byte, n int) []byte {
		dst = binary.BigEndian.AppendUint64(dst, s.ID)
		dst = binary.BigEndian.AppendUint64(dst, s.UpToSeq)
		dst = binary.BigEndian.AppendUint16(dst, s.Index)
		return append(dst, b2u(s.Last && n == len(changes)), byte(n))
	})
}

// DecodeSnapshot decodes a snapshot chunk (0 to MaxChanges changes) into m;
// aliasing and reuse as for DecodeUpdate.
func DecodeSnapshot(b []byte, m *Snapshot) error {
	if err := decodeSnapshot(b, m); err != nil {
		*m = Snapshot{}
		return err
	}
	return nil
}

func decodeSnapshot(b []byte, m *Snapshot) error {
	if err := decodeBatch(b, snapshotFixed, 19, true, &m.NChanges, &m.Changes); err != nil {
		return err
	}
	last, err := u2b(b[18])
	if err != nil {
		return err
	}
	m.ID = binary.BigEndian.Uint64(b)
	m.UpToSeq = binary.BigEndian.Uint64(b[8:])
	m.Index = binary.BigEndian.Uint16(b[16:])
	m.Last = last
	return nil
}

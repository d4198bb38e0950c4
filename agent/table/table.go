// Package table is the replicated entity table every fmagent node holds: the
// entities of the cluster, their up/down state and their active alarms.
//
// The master orders every change with a seq; every node applies the same
// changes in the same order with Apply, so every table ends up identical, which
// Digest lets anyone check. The package is pure: no goroutines, no I/O, no
// clock (times arrive inside the changes) and no randomness, so it can run in
// the deterministic core and in netsim. A Table is not safe for concurrent use;
// the core owns it.
package table

import (
	"cmp"
	"errors"
	"slices"
	"unsafe"

	"github.com/fmagent/fmagent/wire"
)

// DefaultMaxAlarms is the per-entity alarm limit New uses when given none. It
// is a limit rather than a growable list because the shared-memory slot of an
// entity has room for a fixed number of alarms.
const DefaultMaxAlarms = 8

// Errors Check and Apply return. A change that fails changes nothing.
var (
	// ErrUnknownEntity: the change is about an entity the table does not hold.
	ErrUnknownEntity = errors.New("table: unknown entity")
	// ErrBadID: a Register whose Entity is not ID(Name).
	ErrBadID = errors.New("table: entity ID does not match name")
	// ErrCollision: a Register whose name hashes to the ID of an entity with
	// another name. Two names never share a slot; merging them silently would
	// let one entity's state overwrite another's.
	ErrCollision = errors.New("table: entity ID collision")
	// ErrTooManyAlarms: a Raise of a new cause on an entity already at the
	// alarm limit.
	ErrTooManyAlarms = errors.New("table: too many alarms on entity")
	// ErrInvalid: a malformed change (unknown kind, state, severity or entity
	// kind, empty or oversized name or cause).
	ErrInvalid = errors.New("table: invalid change")
)

// Alarm is an active alarm on an entity.
type Alarm struct {
	Cause    string
	Severity wire.Severity
	// RaisedAt and RaisedBy are those of the first Raise of this cause: a
	// repeated Raise (an owner re-asserting after failover, a severity change)
	// refreshes the alarm but does not make it a new one.
	RaisedAt int64
	RaisedBy wire.NodeID
	// Seq is the seq of the latest change that raised or refreshed the alarm
	// (after a rebuild from a snapshot: the snapshot's seq).
	Seq uint64
	// Ver is the version of the latest write that raised or refreshed it.
	Ver wire.WriteVersion
}

// Entity is one row of the table.
type Entity struct {
	ID          uint64
	Name        string
	Kind        wire.EntityKind
	Owner       wire.NodeID
	State       wire.State
	Incarnation uint64
	// Born is the version of the unregister that ended the entity's
	// previous life (zero if none is known): a re-asserted write older than
	// it was about that life. Ver is the version of its latest
	// registration: an unregister older than Ver was overtaken by it.
	Born, Ver wire.WriteVersion
	// StateVer is the version of the owner's latest word on State: its
	// registration, or a change of state the owner's own report caused
	// (By is the owner: its up or down, its process's exit). Not a mark
	// by anyone else (the membership's down of an unreachable node's
	// entities, a plugin's verdict on another node's report), which the
	// owner's word re-asserted on its return is meant to overrule. The
	// master applies a re-asserted word on the state only if it is not
	// older than StateVer. Without it, an owner's registration re-asserted
	// after a master change put its state (up) over the owner's later
	// acknowledged down (netsim chaos seed 55423).
	StateVer wire.WriteVersion
	// OwnerState is what that word said: State, unless someone else marked
	// the entity since (the membership's down of its unreachable owner's
	// entities). A re-asserted word of the owner's older than StateVer
	// puts OwnerState back, not State: the owner is back, and its latest
	// word stands (netsim chaos seed 3198 of 25 actions: in a split brain,
	// the owner's up was applied by both masters, each under a version of
	// its own; the winner's, the higher, was overruled by the winner's
	// down of the owner's entities while it was cut off, and the owner's
	// re-assertion after the heal, under the losing master's version, was
	// then older than StateVer and superseded: the acknowledged up lost).
	OwnerState wire.State
	// Implicit: the entity was created by a report about it (a raise or a
	// mark up or down for an absent entity), not registered. Its Owner is
	// the reporter, for lack of anyone else, but nobody vouches for its
	// life: the owner going down does not take it down (unless its name
	// is under the owner's node/N/ prefix), and a registration claims it
	// even if the registration's version is older than the report that
	// created it (re-asserted writes arrive in any order after a failover:
	// a raise acknowledged after a registration must not make the
	// registration look superseded; netns chaos, svc/w2-2).
	Implicit bool
	// ChangedAt, ChangedSeq and ChangedBy describe the latest change applied to
	// the entity (At, Seq and By of that change). They are bookkeeping about
	// how this node got here, not replicated content: after a rebuild from a
	// snapshot they describe the snapshot. Digest leaves them out.
	ChangedAt  int64
	ChangedSeq uint64
	ChangedBy  wire.NodeID
	// Alarms are sorted by Cause, so iteration, the digest and the snapshot
	// are the same on every node.
	Alarms []Alarm

	// sum is the hash of the entity's canonical encoding (appendEntity) as
	// last folded into the table's Table.acc: 0 until the first Digest
	// after the entity's creation. dirty is 1 + the entity's index in
	// Table.dirty while it is listed there (its content changed since sum
	// was computed), else 0.
	sum   uint64
	dirty int32
}

// OwnedBy reports whether node vouches for e's life: it registered e, or
// e's name is under node's prefix. An entity a report created (Implicit)
// elsewhere is the reporter's only in name.
func (e *Entity) OwnedBy(node wire.NodeID) bool {
	return e.Owner == node && (!e.Implicit || OwnerOfName(e.Name, 0) == node)
}

// Alarm returns the active alarm with cause, if any.
func (e *Entity) Alarm(cause string) (*Alarm, bool) {
	i, ok := e.findAlarm(cause)
	if !ok {
		return nil, false
	}
	return &e.Alarms[i], true
}

func (e *Entity) findAlarm(cause string) (int, bool) {
	return slices.BinarySearchFunc(e.Alarms, cause, func(a Alarm, c string) int {
		return cmp.Compare(a.Cause, c)
	})
}

// Table is the entity table.
type Table struct {
	maxAlarms int
	maxTombs  int // MaxTombstones unless SetMaxTombstones changed it
	seq       uint64
	byID      map[uint64]*Entity
	// sorted holds every entity in ascending ID order, for the deterministic
	// iteration Range, Contained, Digest and SnapshotChanges need. Insertion
	// and removal are O(n) copies of pointers, which is cheap at the size of a
	// cluster's table (thousands) and keeps iteration free of sorting.
	sorted []*Entity
	// nodes holds the node entities in ascending ID order, and owned the
	// number of entities other than nodes and links each node owns: the
	// master's tick judges the nodes and the entity limit counts an owner's
	// entities, each every time, and a table of thousands of processes
	// and services must not make either a walk over all of them (the tick
	// runs on the real-time loop before anything it sends).
	nodes []*Entity
	owned map[wire.NodeID]int
	// hash replaces ID when set: tests use it to force a collision, which
	// xxhash64 does not let anyone find. Nil in production, so IDs are
	// computed without a call through a func value or a string copy.
	hash func(string) uint64

	// headEpoch is the epoch of the master whose table this is (set by the
	// core): with seq, how up to date the table is.
	headEpoch uint64
	// Tombstones: the version of the write that unregistered an entity or
	// cleared an alarm, so that an older write re-asserted later does not
	// bring it back. Bounded: the oldest by last removal are forgotten
	// first (tombs.go).
	gone    tombs[uint64]
	cleared tombs[alarmKey]

	// The digest (digest.go): acc is the sum, mod 2^64, of every entity's
	// sum, and dirty lists (once each) the entities changed since their
	// sum was computed, for Digest to rehash; sum is the cached digest,
	// valid until the next change.
	acc      uint64
	dirty    []*Entity
	scratch  []byte
	sum      uint64
	sumValid bool
}

// New returns an empty table allowing at most maxAlarms alarms per entity
// (DefaultMaxAlarms if maxAlarms <= 0).
func New(maxAlarms int) *Table {
	if maxAlarms <= 0 {
		maxAlarms = DefaultMaxAlarms
	}
	return &Table{
		maxAlarms: maxAlarms,
		maxTombs:  MaxTombstones,
		byID:      make(map[uint64]*Entity),
		owned:     make(map[wire.NodeID]int),
		scratch:   make([]byte, 0, 512),
	}
}

// MaxTombstones bounds each kind of tombstone (entities, alarms) a table
// keeps, one per entity or alarm, the oldest by its last removal forgotten
// first (tombs.go). A tombstone is needed until no node holds an older
// write of the same entity or alarm to re-assert. The core's ledgers forget what their own
// tables show superseded, and a master refuses a re-asserted write its table
// applied and no longer shows (agent/core: ledgercover.go, lineage.go), so
// what a tombstone alone guards is a write from the losing side of a split
// brain, older than the winner's clear: thousands cover any split but one
// that long and that busy (DESIGN §9, "It stays").
const MaxTombstones = 4096

// SetMaxTombstones changes the tombstone bound (n <= 0: MaxTombstones). The
// simulator sets it low so that its chaos forgets tombstones often, which
// the thousands of the default never let it see.
func (t *Table) SetMaxTombstones(n int) {
	if n <= 0 {
		n = MaxTombstones
	}
	t.maxTombs = n
}

type alarmKey struct {
	entity uint64
	cause  string
}

// HeadEpoch is the epoch of the master whose table this is.
func (t *Table) HeadEpoch() uint64 { return t.headEpoch }

// SetHeadEpoch records the epoch of the master whose table this is.
func (t *Table) SetHeadEpoch(e uint64) { t.headEpoch = e }

// EntityVersion returns the version of the latest registration of id and of
// the unregister that ended its previous life (Entity.Born), if it is
// present; else its tombstone (zero if none is kept) as ver.
func (t *Table) EntityVersion(id uint64) (ver, born wire.WriteVersion, present bool) {
	if e, ok := t.byID[id]; ok {
		return e.Ver, e.Born, true
	}
	return t.gone.version(id), wire.WriteVersion{}, false
}

// AlarmVersion returns the version of alarm cause on entity id if it is
// raised; else its tombstone (zero if none is kept).
func (t *Table) AlarmVersion(id uint64, cause string) (wire.WriteVersion, bool) {
	if e, ok := t.byID[id]; ok {
		if a, ok := e.Alarm(cause); ok {
			return a.Ver, true
		}
	}
	return t.cleared.version(alarmKey{id, cause}), false
}

func maxVer(a, b wire.WriteVersion) wire.WriteVersion {
	if a.Less(b) {
		return b
	}
	return a
}

// A change without a version is a node's own mark on its copy of the
// table, which no master ordered (core's stale-cluster alarm): it leaves
// the tombstones as they are, so that they stay the same on every node
// (TombstoneDigest). A tombstone of version zero would refuse nothing, and
// hold a place in the bound that the master's table does not give it; and
// a local raise that took the alarm's tombstone would leave this table
// without one the others keep. A tombstone of an alarm raised locally
// stays (AlarmVersion answers the alarm while it is raised); a snapshot
// sends the tombstones before the alarms, so the receiver keeps both.

func (t *Table) tombEntity(id uint64, v wire.WriteVersion) {
	if v.IsZero() {
		return
	}
	t.gone.removed(id, v, t.maxTombs)
}

func (t *Table) tombAlarm(id uint64, cause []byte, v wire.WriteVersion) {
	if v.IsZero() {
		return
	}
	if it := t.cleared.Find(alarmKey{id, unsafeString(cause)}); it != nil {
		// Found with a key that aliases a packet buffer: updated in
		// place, the key not stored again.
		t.cleared.again(it, v)
		return
	}
	t.cleared.add(alarmKey{id, string(cause)}, v, t.maxTombs)
}

// MaxAlarms is the per-entity alarm limit.
func (t *Table) MaxAlarms() int { return t.maxAlarms }

// Seq is the seq of the latest change applied (or the one set by SetSeq).
func (t *Table) Seq() uint64 { return t.seq }

// SetSeq sets the table's seq, e.g. to a snapshot's UpToSeq once its last
// chunk is applied.
func (t *Table) SetSeq(seq uint64) { t.seq = seq }

// Len is the number of entities.
func (t *Table) Len() int { return len(t.sorted) }

// Get returns the entity with id. The pointer is the table's own row, not a
// copy: callers must not modify it, and it reflects (or, after Unregister or
// Reset, no longer belongs to) the table as later changes are applied. Copy
// what must outlive the next Apply.
func (t *Table) Get(id uint64) (*Entity, bool) {
	e, ok := t.byID[id]
	return e, ok
}

// Lookup returns the entity named name (read-only, as Get). An entity whose ID
// matches but whose name does not is not returned.
func (t *Table) Lookup(name string) (*Entity, bool) {
	e, ok := t.byID[t.id(unsafeBytes(name))]
	if !ok || e.Name != name {
		return nil, false
	}
	return e, true
}

// Range calls fn for every entity in ascending ID order until fn returns
// false. fn must not change the table.
func (t *Table) Range(fn func(*Entity) bool) {
	for _, e := range t.sorted {
		if !fn(e) {
			return
		}
	}
}

// RangeNodes calls fn for every node entity (Kind KindNode) in ascending ID
// order until fn returns false: Range over the nodes alone, without a walk
// over the rest of the table. fn must not change the table.
func (t *Table) RangeNodes(fn func(*Entity) bool) {
	for _, e := range t.nodes {
		if !fn(e) {
			return
		}
	}
}

// Owned is the number of entities owner owns (by Owner, Implicit ones
// included) other than nodes and links: what the per-owner entity limit
// counts.
func (t *Table) Owned(owner wire.NodeID) int { return t.owned[owner] }

// Contained appends to dst, in ascending ID order, the IDs of the entities
// owned by node other than the node entity itself: what goes down with the
// node (its links, processes, services...). Ownership, not the name, decides:
// a service a node registered is contained in it whatever it is called.
func (t *Table) Contained(node wire.NodeID, dst []uint64) []uint64 {
	self := NodeEntityID(node)
	for _, e := range t.sorted {
		if e.OwnedBy(node) && e.ID != self {
			dst = append(dst, e.ID)
		}
	}
	return dst
}

// Reset empties the table and sets its seq to 0, before a snapshot is
// applied; the entities' memory is left to the garbage collector since
// pointers from Get may still be held.
func (t *Table) Reset() {
	clear(t.byID)
	clear(t.sorted)
	t.sorted = t.sorted[:0]
	clear(t.nodes)
	t.nodes = t.nodes[:0]
	clear(t.owned)
	t.seq = 0
	t.headEpoch = 0
	t.gone.Reset()
	t.cleared.Reset()
	for _, e := range t.dirty {
		e.dirty = 0
	}
	clear(t.dirty)
	t.dirty = t.dirty[:0]
	t.acc = 0
	t.sumValid = false
}

// Check reports whether Apply would accept c, without changing anything. The
// master calls it before giving a change a seq, so that only changes every
// node can apply are ever ordered.
func (t *Table) Check(c *wire.Change) error {
	_, err := t.check(c)
	return err
}

// check validates c and returns the entity it is about (nil for the Register
// of a new entity).
func (t *Table) check(c *wire.Change) (*Entity, error) {
	e := t.byID[c.Entity]
	switch c.Kind {
	case wire.ChangeRegister:
		if len(c.Name) == 0 || len(c.Name) > wire.MaxName ||
			!validKind(c.EntityKind) || !validState(c.State) {
			return nil, ErrInvalid
		}
		if t.id(c.Name) != c.Entity {
			return nil, ErrBadID
		}
		if e != nil && e.Name != string(c.Name) {
			return nil, ErrCollision
		}
		return e, nil
	case wire.ChangeState:
		if !validState(c.State) {
			return nil, ErrInvalid
		}
	case wire.ChangeRaise:
		if !validCause(c.Cause) || !validSeverity(c.Severity) {
			return nil, ErrInvalid
		}
		if e == nil {
			return nil, ErrUnknownEntity
		}
		if _, ok := e.findAlarm(unsafeString(c.Cause)); !ok && len(e.Alarms) >= t.maxAlarms {
			return nil, ErrTooManyAlarms
		}
		return e, nil
	case wire.ChangeClear:
		if !validCause(c.Cause) {
			return nil, ErrInvalid
		}
		return e, nil // absent: recorded as a tombstone
	case wire.ChangeUnregister:
		return e, nil // absent: recorded as a tombstone
	default:
		return nil, ErrInvalid
	}
	if e == nil {
		return nil, ErrUnknownEntity
	}
	return e, nil
}

// Apply applies one replicated change: it records c's At, Seq and By on the
// entity and advances Seq to c.Seq (never backwards). A change that fails
// Check returns its error and changes nothing, not even Seq.
//
//   - Register creates the entity, or, if it exists under the same name,
//     updates its kind, owner, state and incarnation and keeps its alarms (an
//     owner re-asserting its entities after a failover must not wipe alarms
//     others raised).
//   - State sets state and incarnation.
//   - Raise adds the alarm c.Cause or refreshes it (new severity and seq).
//   - Clear removes the alarm; clearing an absent alarm is a no-op that still
//     advances Seq.
//   - Unregister removes the entity and its alarms.
func (t *Table) Apply(c *wire.Change) error {
	e, err := t.check(c)
	if err != nil {
		return err
	}
	switch c.Kind {
	case wire.ChangeRegister:
		if e == nil {
			e = &Entity{ID: c.Entity, Name: string(c.Name), Born: t.gone.take(c.Entity), Implicit: c.Flags&wire.ChangeImplicit != 0}
			e.Kind, e.Owner = c.EntityKind, c.Owner
			t.insert(e)
		} else {
			if c.Flags&wire.ChangeImplicit == 0 {
				e.Implicit = false // registered now
			}
			if e.Kind != c.EntityKind || e.Owner != c.Owner {
				t.unindex(e)
				e.Kind, e.Owner = c.EntityKind, c.Owner
				t.index(e)
			}
		}
		e.Ver = maxVer(e.Ver, c.Ver)
		if !c.Ver.Less(e.StateVer) {
			e.OwnerState = c.State
		}
		e.StateVer = maxVer(e.StateVer, c.Ver)
		e.State = c.State
		e.Incarnation = c.Incarnation
	case wire.ChangeState:
		e.State = c.State
		e.Incarnation = c.Incarnation
		if c.By == e.Owner {
			if !c.Ver.Less(e.StateVer) {
				e.OwnerState = c.State
			}
			e.StateVer = maxVer(e.StateVer, c.Ver)
		}
	case wire.ChangeRaise:
		i, ok := e.findAlarm(unsafeString(c.Cause))
		if ok {
			e.Alarms[i].Severity = c.Severity
			e.Alarms[i].Seq = c.Seq
			e.Alarms[i].Ver = maxVer(e.Alarms[i].Ver, c.Ver)
		} else {
			if !c.Ver.IsZero() {
				t.cleared.take(alarmKey{c.Entity, unsafeString(c.Cause)})
			}
			e.Alarms = slices.Insert(e.Alarms, i, Alarm{
				Cause:    string(c.Cause),
				Severity: c.Severity,
				RaisedAt: c.At,
				RaisedBy: c.By,
				Seq:      c.Seq,
				Ver:      c.Ver,
			})
		}
	case wire.ChangeClear:
		t.tombAlarm(c.Entity, c.Cause, c.Ver)
		if e == nil {
			t.advance(c.Seq)
			return nil
		}
		i, ok := e.findAlarm(unsafeString(c.Cause))
		if !ok {
			t.advance(c.Seq)
			return nil
		}
		e.Alarms = slices.Delete(e.Alarms, i, i+1)
	case wire.ChangeUnregister:
		t.tombEntity(c.Entity, c.Ver)
		if e != nil {
			t.remove(e)
		}
		t.advance(c.Seq)
		return nil
	}
	// Every change that reaches here may have changed e's replicated
	// content (a new entity's included): Digest rehashes it.
	t.markDirty(e)
	e.ChangedAt = c.At
	e.ChangedSeq = c.Seq
	e.ChangedBy = c.By
	t.advance(c.Seq)
	return nil
}

// id is the entity ID of name (see hash).
func (t *Table) id(name []byte) uint64 {
	if t.hash != nil {
		return t.hash(string(name))
	}
	return idBytes(name)
}

func (t *Table) advance(seq uint64) {
	if seq > t.seq {
		t.seq = seq
	}
	t.sumValid = false
}

// insert puts e, its Kind and Owner set, into the table and its indexes.
func (t *Table) insert(e *Entity) {
	i, _ := search(t.sorted, e.ID)
	t.sorted = slices.Insert(t.sorted, i, e)
	t.byID[e.ID] = e
	t.index(e)
}

// remove takes e out of the table, its indexes and the digest.
func (t *Table) remove(e *Entity) {
	if i, ok := search(t.sorted, e.ID); ok {
		t.sorted = slices.Delete(t.sorted, i, i+1)
	}
	delete(t.byID, e.ID)
	t.unindex(e)
	t.acc -= e.sum // what acc holds of e, listed as dirty or not
	t.undirty(e)
}

// markDirty lists e for Digest to rehash, unless it is listed already.
func (t *Table) markDirty(e *Entity) {
	if e.dirty == 0 {
		t.dirty = append(t.dirty, e)
		e.dirty = int32(len(t.dirty))
	}
}

// undirty takes e off the dirty list, if it is on it, moving the last
// entity listed into its place: a removed entity is neither rehashed nor
// kept alive by the list, however long nobody asks for a digest.
func (t *Table) undirty(e *Entity) {
	if e.dirty == 0 {
		return
	}
	i, last := int(e.dirty-1), len(t.dirty)-1
	l := t.dirty[last]
	t.dirty[i] = l
	l.dirty = int32(i + 1)
	t.dirty[last] = nil
	t.dirty = t.dirty[:last]
	e.dirty = 0
}

// index puts e into the indexes its Kind and Owner select (nodes, owned).
func (t *Table) index(e *Entity) {
	switch e.Kind {
	case wire.KindNode:
		i, _ := search(t.nodes, e.ID)
		t.nodes = slices.Insert(t.nodes, i, e)
	case wire.KindLink:
	default:
		t.owned[e.Owner]++
	}
}

// unindex takes e out of the indexes, under the Kind and Owner it was
// indexed with.
func (t *Table) unindex(e *Entity) {
	switch e.Kind {
	case wire.KindNode:
		if i, ok := search(t.nodes, e.ID); ok {
			t.nodes = slices.Delete(t.nodes, i, i+1)
		}
	case wire.KindLink:
	default:
		if t.owned[e.Owner]--; t.owned[e.Owner] <= 0 {
			delete(t.owned, e.Owner)
		}
	}
}

func search(es []*Entity, id uint64) (int, bool) {
	return slices.BinarySearchFunc(es, id, func(e *Entity, id uint64) int {
		return cmp.Compare(e.ID, id)
	})
}

func validKind(k wire.EntityKind) bool { return k >= wire.KindNode && k <= wire.KindCustom }
func validState(s wire.State) bool     { return s == wire.StateUp || s == wire.StateDown }
func validSeverity(s wire.Severity) bool {
	return s >= wire.SevIndeterminate && s <= wire.SevCritical
}
func validCause(c []byte) bool { return len(c) > 0 && len(c) <= wire.MaxCause }

// unsafeString views b as a string without copying, for lookups that do not
// keep the string (a Change's Cause aliases a packet buffer that changes
// afterwards, so anything kept is copied with string(b)).
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// unsafeBytes views s as read-only bytes without copying.
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

package shmem

import (
	"bytes"

	"github.com/fmagent/fmagent/shmem/internal/layout"
	"github.com/fmagent/fmagent/wire"
)

// MaxAlarms is the number of alarms an entity slot holds. It is fixed by the
// layout (versions 1 and 2): a slot is 960 bytes with room for exactly 8 alarms.
const MaxAlarms = 8

// Compile-time checks that the Go side agrees with the layout.
const (
	_ = uint(MaxAlarms-layout.MaxAlarms) + uint(layout.MaxAlarms-MaxAlarms)
	_ = uint(wire.MaxName-layout.MaxName) + uint(layout.MaxName-wire.MaxName)
	_ = uint(wire.MaxCause-layout.MaxCause) + uint(layout.MaxCause-wire.MaxCause)
	_ = uint(StatusReady-layout.StatusReady) + uint(layout.StatusReady-StatusReady)
	_ = uint(StatusClosed-layout.StatusClosed) + uint(layout.StatusClosed-StatusClosed)
	_ = uint(StatusReplaced-layout.StatusReplaced) + uint(layout.StatusReplaced-StatusReplaced)
)

// IDOf returns the entity ID of a name: its xxhash64.
func IDOf(name string) uint64 { return wire.EntityID(name) }

// IDOfBytes is IDOf for a byte slice.
func IDOfBytes(name []byte) uint64 { return wire.EntityIDBytes(name) }

// Alarm is one active alarm of an entity. Cause holds CauseLen bytes.
type Alarm struct {
	RaisedAt int64 // unix ns
	RaisedBy wire.NodeID
	Severity wire.Severity
	CauseLen uint8
	Cause    [wire.MaxCause]byte
}

// CauseBytes returns the probable cause (aliases a.Cause).
func (a *Alarm) CauseBytes() []byte { return a.Cause[:min(int(a.CauseLen), wire.MaxCause)] }

// SetCause sets the probable cause; it fails with ErrInvalid if it is longer
// than wire.MaxCause.
func (a *Alarm) SetCause(cause string) error {
	if len(cause) > wire.MaxCause {
		return ErrInvalid
	}
	a.Cause = [wire.MaxCause]byte{}
	a.CauseLen = uint8(copy(a.Cause[:], cause))
	return nil
}

// Entity is one row of the table. It is a plain value with fixed arrays, so
// that reading into a caller's Entity allocates nothing: Name holds NameLen
// bytes and Alarms holds NAlarms alarms; bytes past those are undefined.
type Entity struct {
	ID          uint64 // xxhash64 of the name (see IDOf)
	Incarnation uint64
	ChangedAt   int64 // unix ns of the last change
	ChangedSeq  uint64
	// WrittenAt is set by the writer, not by Put's caller: unix ns, by the
	// writer's clock, when it wrote the row as it is (a row put again
	// unchanged keeps its time). WrittenAt - ChangedAt is how long the
	// master's change took to reach this table. 0 from a segment of layout
	// minor 0. Equal ignores it.
	WrittenAt int64
	Owner     wire.NodeID
	ChangedBy wire.NodeID
	Kind      wire.EntityKind
	State     wire.State
	NameLen   uint8
	NAlarms   uint8
	Name      [wire.MaxName]byte
	Alarms    [MaxAlarms]Alarm
}

// NameBytes returns the name (aliases e.Name).
func (e *Entity) NameBytes() []byte { return e.Name[:min(int(e.NameLen), wire.MaxName)] }

// NameString returns the name as a new string.
func (e *Entity) NameString() string { return string(e.NameBytes()) }

// SetName sets the name and the ID (IDOf(name)). It fails with ErrInvalid if
// the name is longer than wire.MaxName.
func (e *Entity) SetName(name string) error {
	if len(name) > wire.MaxName {
		return ErrInvalid
	}
	e.Name = [wire.MaxName]byte{}
	e.NameLen = uint8(copy(e.Name[:], name))
	e.ID = IDOf(name)
	return nil
}

// AlarmList returns the active alarms (aliases e.Alarms).
func (e *Entity) AlarmList() []Alarm { return e.Alarms[:min(int(e.NAlarms), MaxAlarms)] }

// FindAlarm returns the alarm with this cause.
func (e *Entity) FindAlarm(cause []byte) (*Alarm, bool) {
	for i := range e.AlarmList() {
		if bytes.Equal(e.Alarms[i].CauseBytes(), cause) {
			return &e.Alarms[i], true
		}
	}
	return nil, false
}

// RaiseAlarm adds the alarm cause, or refreshes it if present. It fails with
// ErrInvalid if the cause is too long, ErrTooManyAlarms if MaxAlarms are
// already active.
func (e *Entity) RaiseAlarm(cause string, sev wire.Severity, at int64, by wire.NodeID) error {
	if len(cause) > wire.MaxCause {
		return ErrInvalid
	}
	a, ok := e.FindAlarm([]byte(cause))
	if !ok {
		if int(e.NAlarms) >= MaxAlarms {
			return ErrTooManyAlarms
		}
		a = &e.Alarms[e.NAlarms]
		e.NAlarms++
		_ = a.SetCause(cause)
	}
	a.Severity, a.RaisedAt, a.RaisedBy = sev, at, by
	return nil
}

// ClearAlarm removes the alarm cause; it reports whether it was active.
func (e *Entity) ClearAlarm(cause string) bool {
	n := int(e.NAlarms)
	for i := 0; i < n; i++ {
		if string(e.Alarms[i].CauseBytes()) == cause {
			copy(e.Alarms[i:n], e.Alarms[i+1:n])
			e.Alarms[n-1] = Alarm{}
			e.NAlarms--
			return true
		}
	}
	return false
}

// Equal reports whether two entities hold the same values (WrittenAt, and
// bytes past NameLen, CauseLen and NAlarms, are ignored).
func (e *Entity) Equal(o *Entity) bool {
	if e.ID != o.ID || e.Incarnation != o.Incarnation || e.ChangedAt != o.ChangedAt ||
		e.ChangedSeq != o.ChangedSeq || e.Owner != o.Owner || e.ChangedBy != o.ChangedBy ||
		e.Kind != o.Kind || e.State != o.State || e.NameLen != o.NameLen || e.NAlarms != o.NAlarms ||
		!bytes.Equal(e.NameBytes(), o.NameBytes()) {
		return false
	}
	for i := range e.AlarmList() {
		a, b := &e.Alarms[i], &o.Alarms[i]
		if a.RaisedAt != b.RaisedAt || a.RaisedBy != b.RaisedBy || a.Severity != b.Severity ||
			!bytes.Equal(a.CauseBytes(), b.CauseBytes()) {
			return false
		}
	}
	return true
}

// EventKind is what an event reports.
type EventKind uint8

const (
	// EventPut: the entity was inserted, or fields other than its state and
	// alarms changed (name, kind, owner, incarnation...).
	EventPut EventKind = 1 + iota
	// EventDelete: the entity was removed.
	EventDelete
	// EventStateChanged: the state changed (Event.State is the new state).
	EventStateChanged
	// EventAlarmRaised: an alarm was raised or refreshed (Event.Severity).
	EventAlarmRaised
	// EventAlarmCleared: an alarm was cleared (Event.Severity: its last severity).
	EventAlarmCleared
)

func (k EventKind) String() string {
	switch k {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	case EventStateChanged:
		return "state"
	case EventAlarmRaised:
		return "raised"
	case EventAlarmCleared:
		return "cleared"
	}
	return "unknown"
}

// Event is one record of the event ring: what a commit changed.
type Event struct {
	Pos      uint64 // position in the ring (consecutive)
	TableSeq uint64 // the table seq of the commit that made the change
	EntityID uint64
	Kind     EventKind
	State    wire.State    // the entity's state after the change
	Severity wire.Severity // with alarm events
}

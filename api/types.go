package api

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/fmagent/fmagent/wire"
)

// Kind is the kind of an entity, as it appears in JSON.
type Kind string

// Entity kinds.
const (
	KindNode    Kind = "node"
	KindLink    Kind = "link"
	KindProcess Kind = "process"
	KindService Kind = "service"
	KindCustom  Kind = "custom"
)

// Wire returns the wire encoding of k, 0 if k is not a kind.
func (k Kind) Wire() wire.EntityKind {
	switch k {
	case KindNode:
		return wire.KindNode
	case KindLink:
		return wire.KindLink
	case KindProcess:
		return wire.KindProcess
	case KindService:
		return wire.KindService
	case KindCustom:
		return wire.KindCustom
	}
	return 0
}

// KindOf returns the Kind of a wire kind, "" if unknown.
func KindOf(k wire.EntityKind) Kind {
	switch k {
	case wire.KindNode:
		return KindNode
	case wire.KindLink:
		return KindLink
	case wire.KindProcess:
		return KindProcess
	case wire.KindService:
		return KindService
	case wire.KindCustom:
		return KindCustom
	}
	return ""
}

// State is "up" or "down".
type State string

// States.
const (
	StateUp   State = "up"
	StateDown State = "down"
)

// Wire returns the wire encoding of s, 0 if s is not a state.
func (s State) Wire() wire.State {
	switch s {
	case StateUp:
		return wire.StateUp
	case StateDown:
		return wire.StateDown
	}
	return 0
}

// StateOf returns the State of a wire state, "" if unknown.
func StateOf(s wire.State) State {
	switch s {
	case wire.StateUp:
		return StateUp
	case wire.StateDown:
		return StateDown
	}
	return ""
}

// Severity of an alarm (ITU X.733).
type Severity string

// Severities.
const (
	SevCritical      Severity = "critical"
	SevMajor         Severity = "major"
	SevMinor         Severity = "minor"
	SevWarning       Severity = "warning"
	SevIndeterminate Severity = "indeterminate"
)

// Wire returns the wire encoding of s, 0 if s is not a severity.
func (s Severity) Wire() wire.Severity {
	switch s {
	case SevCritical:
		return wire.SevCritical
	case SevMajor:
		return wire.SevMajor
	case SevMinor:
		return wire.SevMinor
	case SevWarning:
		return wire.SevWarning
	case SevIndeterminate:
		return wire.SevIndeterminate
	}
	return 0
}

// SeverityOf returns the Severity of a wire severity, "" if unknown.
func SeverityOf(s wire.Severity) Severity {
	switch s {
	case wire.SevCritical:
		return SevCritical
	case wire.SevMajor:
		return SevMajor
	case wire.SevMinor:
		return SevMinor
	case wire.SevWarning:
		return SevWarning
	case wire.SevIndeterminate:
		return SevIndeterminate
	}
	return ""
}

// Role of a node in the election, as it appears in JSON.
type Role string

// Roles.
const (
	RoleMaster  Role = "master"
	RoleVice    Role = "vice-master"
	RoleMember  Role = "member"
	RoleJoining Role = "joining"
)

// RoleOf returns the Role of a wire role.
func RoleOf(r wire.Role) Role {
	switch r {
	case wire.RoleMaster:
		return RoleMaster
	case wire.RoleVice:
		return RoleVice
	case wire.RoleMember:
		return RoleMember
	}
	return RoleJoining
}

// ID is an entity ID, the xxhash64 of its name. In JSON it is the string
// "0x" followed by 16 lowercase hex digits (a JSON number would lose
// precision above 2^53 in many decoders); a decoder also accepts a number.
type ID uint64

func (id ID) String() string { return fmt.Sprintf("0x%016x", uint64(id)) }

// MarshalJSON implements json.Marshaler.
func (id ID) MarshalJSON() ([]byte, error) { return hex64JSON(uint64(id)), nil }

// UnmarshalJSON implements json.Unmarshaler.
func (id *ID) UnmarshalJSON(b []byte) error {
	v, err := parseHex64JSON(b)
	*id = ID(v)
	return err
}

// Digest is a table digest. In JSON it is a hex string like ID.
type Digest uint64

func (d Digest) String() string { return fmt.Sprintf("0x%016x", uint64(d)) }

// MarshalJSON implements json.Marshaler.
func (d Digest) MarshalJSON() ([]byte, error) { return hex64JSON(uint64(d)), nil }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Digest) UnmarshalJSON(b []byte) error {
	v, err := parseHex64JSON(b)
	*d = Digest(v)
	return err
}

func hex64JSON(v uint64) []byte {
	b := make([]byte, 0, 20)
	b = append(b, `"0x`...)
	s := strconv.FormatUint(v, 16)
	for i := len(s); i < 16; i++ {
		b = append(b, '0')
	}
	b = append(b, s...)
	return append(b, '"')
}

func parseHex64JSON(b []byte) (uint64, error) {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return 0, err
		}
		t := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
		if t == s || t == "" {
			return 0, fmt.Errorf("api: bad 64-bit hex value %q (want \"0x\" and hex digits)", s)
		}
		v, err := strconv.ParseUint(t, 16, 64)
		if err != nil {
			return 0, fmt.Errorf("api: bad 64-bit hex value %q", s)
		}
		return v, nil
	}
	v, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("api: bad 64-bit value %s", b)
	}
	return v, nil
}

// ---- results ----

// Alarm is an active alarm on an entity.
type Alarm struct {
	Cause    string      `json:"cause"`
	Severity Severity    `json:"severity"`
	RaisedAt time.Time   `json:"raised_at"` // RFC 3339 with nanoseconds, master's clock
	RaisedBy wire.NodeID `json:"raised_by"` // node whose report raised it
}

// Entity is one row of the cluster table.
type Entity struct {
	ID          ID          `json:"id"` // xxhash64 of Name, "0x%016x"
	Name        string      `json:"name"`
	Kind        Kind        `json:"kind"`
	Owner       wire.NodeID `json:"owner"` // node that speaks for it
	State       State       `json:"state"`
	Incarnation uint64      `json:"incarnation"`
	ChangedAt   time.Time   `json:"changed_at"`  // time of the last change, master's clock
	ChangedSeq  uint64      `json:"changed_seq"` // table seq of the last change
	ChangedBy   wire.NodeID `json:"changed_by"`  // node whose report caused it
	Alarms      []Alarm     `json:"alarms"`      // never null: [] when none
}

// MarshalJSON writes alarms as [] rather than null when there are none, so
// the JSON shape is stable.
// Times are written in UTC.
func (e Entity) MarshalJSON() ([]byte, error) {
	type plain Entity
	alarms := make([]Alarm, len(e.Alarms))
	for i, a := range e.Alarms {
		a.RaisedAt = a.RaisedAt.UTC()
		alarms[i] = a
	}
	e.Alarms = alarms
	e.ChangedAt = e.ChangedAt.UTC()
	return json.Marshal(plain(e))
}

// Links is how one node hears a peer on each of the two networks.
type Links struct {
	A bool `json:"a"`
	B bool `json:"b"`
}

// Member is one node of the cluster as this node sees it.
type Member struct {
	Node        wire.NodeID `json:"node"`
	Incarnation uint64      `json:"incarnation"`
	Role        Role        `json:"role"`
	State       State       `json:"state"`
	Links       Links       `json:"links"` // as this node hears the member
	Priority    uint8       `json:"priority"`
	Eligible    bool        `json:"eligible"` // may become master
}

// Status is the agent's view of itself and the cluster.
type Status struct {
	Node        wire.NodeID `json:"node"`
	Cluster     uint32      `json:"cluster"`
	Role        Role        `json:"role"`
	Epoch       uint64      `json:"epoch"`
	Master      wire.NodeID `json:"master"` // 0: none
	Vice        wire.NodeID `json:"vice"`   // 0: none
	Stale       bool        `json:"stale"`  // no word from the master for longer than the stale timeout
	TableSeq    uint64      `json:"table_seq"`
	Digest      Digest      `json:"digest"`
	Incarnation uint64      `json:"incarnation"`
	Shm         string      `json:"shm"`     // this agent's shared-memory segment ("" if none)
	Members     []Member    `json:"members"` // never null
	// Watchdog is the watchdog and the agent's loops' health (nil from an
	// agent that does not report it).
	Watchdog *WatchdogStatus `json:"watchdog,omitempty"`
}

// MarshalJSON writes members as [] rather than null.
func (s Status) MarshalJSON() ([]byte, error) {
	type plain Status
	if s.Members == nil {
		s.Members = []Member{}
	}
	return json.Marshal(plain(s))
}

// EventKind is what happened to an entity.
type EventKind string

// Event kinds.
const (
	EventState      EventKind = "state"
	EventRaise      EventKind = "raise"
	EventClear      EventKind = "clear"
	EventRegister   EventKind = "register"
	EventUnregister EventKind = "unregister"
)

// Event is one table change streamed by Watch.
type Event struct {
	Seq    uint64    `json:"seq"` // table seq of the change
	Kind   EventKind `json:"kind"`
	Cause  string    `json:"cause,omitempty"` // with raise and clear: the alarm's cause
	Entity Entity    `json:"entity"`          // the entity after the change (before it, for unregister)
}

// ReportResult is the outcome of a write that went through the master.
type ReportResult struct {
	// Seq is the table seq of the resulting change, 0 if the plugins
	// ignored the report (or it changed nothing).
	Seq uint64 `json:"seq"`
	// Verdict names what the plugin chain decided, e.g. "raise",
	// "clear", "down", "up", "blame-reporter", "ignore".
	Verdict string `json:"verdict"`
}

// ---- requests ----

// RegisterRequest creates an entity owned by this node.
type RegisterRequest struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// Process ties the entity to the calling process (the peer of the
	// connection, by SO_PEERCRED): the agent marks it down when that
	// process exits.
	Process bool `json:"process,omitempty"`
	Txn     bool `json:"txn,omitempty"` // apply the change as a cluster transaction
}

// UnregisterRequest removes an entity.
type UnregisterRequest struct {
	Name string `json:"name"`
}

// ReportRequest is a fault: "I believe Name is broken". The master's plugin
// chain decides what becomes of it.
type ReportRequest struct {
	Name     string   `json:"name"`
	Cause    string   `json:"cause,omitempty"`
	Severity Severity `json:"severity,omitempty"` // default indeterminate
	Txn      bool     `json:"txn,omitempty"`
}

// RaiseRequest raises (or refreshes) the alarm Cause on Name.
type RaiseRequest struct {
	Name     string   `json:"name"`
	Cause    string   `json:"cause"`
	Severity Severity `json:"severity"`
}

// ClearRequest clears the alarm Cause on Name.
type ClearRequest struct {
	Name  string `json:"name"`
	Cause string `json:"cause"`
}

// SetStateRequest is the owner speaking for its own entity.
type SetStateRequest struct {
	Name  string `json:"name"`
	State State  `json:"state"`
}

// GetRequest reads one entity.
type GetRequest struct {
	Name string `json:"name"`
}

// ListRequest reads the entities matching every filter given.
type ListRequest struct {
	Prefix      string `json:"prefix,omitempty"`       // name prefix
	Kind        Kind   `json:"kind,omitempty"`         // "" any
	State       State  `json:"state,omitempty"`        // "" any
	AlarmedOnly bool   `json:"alarmed_only,omitempty"` // only entities with an alarm
}

// Match reports whether e passes the filters of r.
func (r *ListRequest) Match(e *Entity) bool {
	return strings.HasPrefix(e.Name, r.Prefix) &&
		(r.Kind == "" || e.Kind == r.Kind) &&
		(r.State == "" || e.State == r.State) &&
		(!r.AlarmedOnly || len(e.Alarms) > 0)
}

// WatchRequest subscribes to the changes of the entities whose name starts
// with Prefix ("" for all).
type WatchRequest struct {
	Prefix string `json:"prefix,omitempty"`

	ready func() // set by the server; see Ready
}

// Ready tells the server that the Handler has subscribed: the server then
// acknowledges the Watch, and the client's Watch call returns. A Handler's
// Watch must call Ready (or send an event, which implies it) once every
// change from then on will reach send; until then the client waits. Calling
// it more than once is harmless.
func (r *WatchRequest) Ready() {
	if r.ready != nil {
		r.ready()
	}
}

// StatusRequest has no fields.
type StatusRequest struct{}

// SwitchoverRequest asks the master to hand over to the vice-master. It has
// no fields.
type SwitchoverRequest struct{}

// ---- validation ----

func badRequest(format string, args ...any) error {
	return newError(ErrBadRequest, fmt.Sprintf(format, args...))
}

// checkText checks a name, cause or prefix: valid UTF-8, no control
// characters, at most max bytes.
func checkText(field, s string, max int, required bool) error {
	if s == "" {
		if required {
			return badRequest("%s is required", field)
		}
		return nil
	}
	if len(s) > max {
		return badRequest("%s is %d bytes, the limit is %d", field, len(s), max)
	}
	if !utf8.ValidString(s) {
		return badRequest("%s is not valid UTF-8", field)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return badRequest("%s contains the control character %U", field, r)
		}
	}
	return nil
}

func checkKind(k Kind, required bool) error {
	if k == "" && !required {
		return nil
	}
	if k.Wire() == 0 {
		return badRequest("kind %q is not one of node, link, process, service, custom", k)
	}
	return nil
}

func checkState(s State, required bool) error {
	if s == "" && !required {
		return nil
	}
	if s.Wire() == 0 {
		return badRequest("state %q is not one of up, down", s)
	}
	return nil
}

func checkSeverity(s Severity, required bool) error {
	if s == "" && !required {
		return nil
	}
	if s.Wire() == 0 {
		return badRequest("severity %q is not one of critical, major, minor, warning, indeterminate", s)
	}
	return nil
}

// Validate checks r; the error matches ErrBadRequest.
func (r *RegisterRequest) Validate() error {
	if err := checkText("name", r.Name, wire.MaxName, true); err != nil {
		return err
	}
	return checkKind(r.Kind, true)
}

// Validate checks r; the error matches ErrBadRequest.
func (r *UnregisterRequest) Validate() error {
	return checkText("name", r.Name, wire.MaxName, true)
}

// Validate checks r and fills in the default severity; the error matches
// ErrBadRequest.
func (r *ReportRequest) Validate() error {
	if err := checkText("name", r.Name, wire.MaxName, true); err != nil {
		return err
	}
	if err := checkText("cause", r.Cause, wire.MaxCause, false); err != nil {
		return err
	}
	if err := checkSeverity(r.Severity, false); err != nil {
		return err
	}
	if r.Severity == "" {
		r.Severity = SevIndeterminate
	}
	return nil
}

// Validate checks r; the error matches ErrBadRequest.
func (r *RaiseRequest) Validate() error {
	if err := checkText("name", r.Name, wire.MaxName, true); err != nil {
		return err
	}
	if err := checkText("cause", r.Cause, wire.MaxCause, true); err != nil {
		return err
	}
	return checkSeverity(r.Severity, true)
}

// Validate checks r; the error matches ErrBadRequest.
func (r *ClearRequest) Validate() error {
	if err := checkText("name", r.Name, wire.MaxName, true); err != nil {
		return err
	}
	return checkText("cause", r.Cause, wire.MaxCause, true)
}

// Validate checks r; the error matches ErrBadRequest.
func (r *SetStateRequest) Validate() error {
	if err := checkText("name", r.Name, wire.MaxName, true); err != nil {
		return err
	}
	return checkState(r.State, true)
}

// Validate checks r; the error matches ErrBadRequest.
func (r *GetRequest) Validate() error {
	return checkText("name", r.Name, wire.MaxName, true)
}

// Validate checks r; the error matches ErrBadRequest.
func (r *ListRequest) Validate() error {
	if err := checkText("prefix", r.Prefix, wire.MaxName, false); err != nil {
		return err
	}
	if err := checkKind(r.Kind, false); err != nil {
		return err
	}
	return checkState(r.State, false)
}

// Validate checks r; the error matches ErrBadRequest.
func (r *WatchRequest) Validate() error {
	return checkText("prefix", r.Prefix, wire.MaxName, false)
}

package api

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

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
	// RoleNone is a member that is down: it has no role now.
	RoleNone Role = "none"
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

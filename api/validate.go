package api

import (
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/fmagent/fmagent/wire"
)

// Validation of requests: every request is checked here before a Handler sees it.

func badRequest(format string, args ...any) error {
	return newError(ErrBadRequest, fmt.Sprintf(format, args...))
}

// checkText checks a name, cause or prefix: valid UTF-8, no control
// characters, at most limit bytes.
func checkText(field, s string, limit int, required bool) error {
	if s == "" {
		if required {
			return badRequest("%s is required", field)
		}
		return nil
	}
	if len(s) > limit {
		return badRequest("%s is %d bytes, the limit is %d", field, len(s), limit)
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
	if err := checkName(r.Name); err != nil {
		return err
	}
	return checkKind(r.Kind, true)
}

// Validate checks r; the error matches ErrBadRequest.
func (r *UnregisterRequest) Validate() error {
	return checkName(r.Name)
}

// Validate checks r and fills in the default severity; the error matches
// ErrBadRequest.
func (r *ReportRequest) Validate() error {
	if err := checkName(r.Name); err != nil {
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
	if err := checkName(r.Name); err != nil {
		return err
	}
	if err := checkText("cause", r.Cause, wire.MaxCause, true); err != nil {
		return err
	}
	return checkSeverity(r.Severity, true)
}

// Validate checks r; the error matches ErrBadRequest.
func (r *ClearRequest) Validate() error {
	if err := checkName(r.Name); err != nil {
		return err
	}
	return checkText("cause", r.Cause, wire.MaxCause, true)
}

// Validate checks r; the error matches ErrBadRequest.
func (r *SetStateRequest) Validate() error {
	if err := checkName(r.Name); err != nil {
		return err
	}
	return checkState(r.State, true)
}

// Validate checks r; the error matches ErrBadRequest.
func (r *GetRequest) Validate() error {
	return checkName(r.Name)
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

// Validate accepts the empty request.
func (r *StatusRequest) Validate() error { return nil }

// Validate accepts the empty request.
func (r *SwitchoverRequest) Validate() error { return nil }

// checkName checks an entity name against the protocol's rules
// (wire.CheckName: valid UTF-8, no empty segment, no control, format, bidi
// or combining characters, no mixed-script look-alikes).
func checkName(name string) error {
	if name == "" {
		return badRequest("name is required")
	}
	if err := wire.CheckName(name); err != nil {
		return badRequest("name %q: %v", name, err)
	}
	return nil
}

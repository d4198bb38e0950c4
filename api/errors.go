package api

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Error is an error carried on the wire: a stable machine-readable Code and a
// human-readable Message. The reply body of a failed request is its JSON
// form, {"code": "...", "message": "..."}.
//
// Errors compare by code: errors.Is(err, ErrNotFound) holds for any *Error
// with code "not_found", whatever its message, and for any error wrapping
// one. A client therefore gets errors that work with errors.Is against the
// sentinels below, and a Handler may return fmt.Errorf("...: %w", ErrNotFound)
// to choose the code its caller sees.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// RetryAfterMs, with code throttled, is how long the client should
	// wait before its next write is accepted, in milliseconds.
	RetryAfterMs int64 `json:"retry_after_ms,omitempty"`
}

// Error returns the message (the code if there is none), so that a Handler's
// wrapped error reads naturally on the wire and at the client:
// fmt.Errorf("entity %q: %w", name, ErrNotFound) becomes the message
// `entity "x": not found` with code not_found.
func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code
	}
	return e.Message
}

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Error codes. They are part of the protocol: never renamed, only added.
const (
	CodeBadRequest         = "bad_request"
	CodePermission         = "permission_denied"
	CodeNotFound           = "not_found"
	CodeCollision          = "collision"
	CodeNoMaster           = "no_master"
	CodeTimeout            = "timeout"
	CodeUnsupported        = "unsupported"
	CodeUnavailable        = "unavailable"
	CodeUnsupportedVersion = "unsupported_version"
	CodeUnknownOp          = "unknown_op"
	CodeFrameTooLarge      = "frame_too_large"
	CodeBadMagic           = "bad_magic"
	CodeBusy               = "busy"
	CodeInternal           = "internal"
	CodeLimit              = "limit"
	CodeRefused            = "refused"
)

// Sentinel errors, one per code. Compare with errors.Is.
var (
	// ErrBadRequest: the request body is not valid JSON for the op, or a
	// field is missing, too long or out of range. The connection survives.
	ErrBadRequest = &Error{Code: CodeBadRequest, Message: "bad request"}
	// ErrPermission: the caller's uid/gid may not write (see Authorizer), or
	// the handler refused the caller (e.g. not the entity's owner).
	ErrPermission = &Error{Code: CodePermission, Message: "permission denied"}
	// ErrNotFound: no such entity (or no such alarm to clear).
	ErrNotFound = &Error{Code: CodeNotFound, Message: "not found"}
	// ErrCollision: the name is registered with another kind or owner, or
	// its ID (xxhash64 of the name) collides with another name's.
	ErrCollision = &Error{Code: CodeCollision, Message: "name collision"}
	// ErrNoMaster: the request needs the master and there is none now.
	ErrNoMaster = &Error{Code: CodeNoMaster, Message: "no master"}
	// ErrTimeout: the agent (or the master behind it) did not answer in time;
	// the outcome of a write is unknown.
	ErrTimeout = &Error{Code: CodeTimeout, Message: "timeout"}
	// ErrUnsupported: the op is known but this agent does not do it (e.g.
	// a transaction where transactions are disabled).
	ErrUnsupported = &Error{Code: CodeUnsupported, Message: "unsupported"}
	// ErrUnavailable: the agent is shutting down, or the connection to it
	// was lost (client side); the outcome of a write is unknown.
	ErrUnavailable = &Error{Code: CodeUnavailable, Message: "unavailable"}
	// ErrUnsupportedVersion: the frame's version is not one the server
	// speaks. The connection survives.
	ErrUnsupportedVersion = &Error{Code: CodeUnsupportedVersion, Message: "unsupported protocol version"}
	// ErrUnknownOp: the frame's op is not a request op. The connection
	// survives.
	ErrUnknownOp = &Error{Code: CodeUnknownOp, Message: "unknown op"}
	// ErrFrameTooLarge: the frame's body length is over MaxBody. The server
	// replies and closes the connection.
	ErrFrameTooLarge = &Error{Code: CodeFrameTooLarge, Message: "frame too large"}
	// ErrBadMagic: the frame does not start with "FMAP". The server replies
	// and closes the connection.
	ErrBadMagic = &Error{Code: CodeBadMagic, Message: "bad magic"}
	// ErrBusy: a per-connection limit was reached (e.g. too many watches on
	// one connection). The connection survives.
	ErrBusy = &Error{Code: CodeBusy, Message: "busy"}
	// ErrInternal: a bug in the agent.
	ErrInternal = &Error{Code: CodeInternal, Message: "internal error"}
	// ErrLimit: the write would exceed a configured capacity (the alarms
	// one entity carries, the entities the shared-memory table holds). It
	// was NOT applied: nothing changed anywhere. The message names the
	// limit and its value.
	ErrLimit = &Error{Code: CodeLimit, Message: "limit reached"}
	// ErrRefused: the master refused the write (the change is invalid
	// against the cluster's table as the master holds it). It was NOT
	// applied: nothing changed anywhere.
	ErrRefused = &Error{Code: CodeRefused, Message: "refused"}
)

// newError returns an *Error with sentinel's code and the given message.
func newError(sentinel *Error, msg string) *Error {
	return &Error{Code: sentinel.Code, Message: msg}
}

// Errorf returns an *Error with sentinel's code and a formatted message, for
// Handlers that want to choose both.
func Errorf(sentinel *Error, format string, args ...any) *Error {
	return newError(sentinel, fmt.Sprintf(format, args...))
}

// maxMessage bounds the message of an error sent on the wire.
const maxMessage = 1024

// ToError turns any error into the *Error sent on the wire. An *Error found
// with errors.As gives its code, with err's full text as the message;
// context.DeadlineExceeded maps to timeout and context.Canceled to
// unavailable; anything else is internal.
func ToError(err error) *Error {
	if err == nil {
		return nil
	}
	code := CodeInternal
	var retry int64
	var e *Error
	switch {
	case errors.As(err, &e):
		code = e.Code
		retry = e.RetryAfterMs
	case errors.Is(err, context.DeadlineExceeded):
		code = CodeTimeout
	case errors.Is(err, context.Canceled):
		code = CodeUnavailable
	}
	msg := err.Error()
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
		for !utf8.ValidString(msg) {
			msg = msg[:len(msg)-1]
		}
	}
	return &Error{Code: code, Message: msg, RetryAfterMs: retry}
}

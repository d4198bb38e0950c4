package shmem

import (
	"errors"
	"fmt"
)

// Sentinel errors. Functions return them wrapped in *Error (use errors.Is),
// except ErrNotFound, which lookups return bare so that a miss allocates
// nothing.
var (
	// ErrNotFound: no entity with this ID or name.
	ErrNotFound = errors.New("shmem: entity not found")
	// ErrTorn: no consistent read within the retry bound (a slot or the
	// table stayed mid-write). Transient if the writer is alive but was
	// descheduled; the caller may retry.
	ErrTorn = errors.New("shmem: no consistent read within the retry bound")
	// ErrWriterDead: the writer process is gone or its heartbeat is older
	// than the segment's heartbeat timeout.
	ErrWriterDead = errors.New("shmem: writer is dead")
	// ErrRecreated: a new segment (new generation) replaced this one; reopen.
	ErrRecreated = errors.New("shmem: segment was recreated")
	// ErrClosed: the writer closed the segment (or the handle is closed).
	ErrClosed = errors.New("shmem: segment closed")
	// ErrBadMagic: the file is not an fmagent segment.
	ErrBadMagic = errors.New("shmem: bad magic")
	// ErrVersion: the segment has a major version this reader does not know.
	ErrVersion = errors.New("shmem: unsupported layout version")
	// ErrLayout: the header describes an impossible layout.
	ErrLayout = errors.New("shmem: invalid layout")
	// ErrNotReady: the segment is still being initialised.
	ErrNotReady = errors.New("shmem: segment not ready")
	// ErrInUse: a live writer holds the segment.
	ErrInUse = errors.New("shmem: segment in use by a live writer")
	// ErrForeign: the file at the segment's path is not one the agent
	// created: not a regular file, owned by another user, or writable by
	// group or others. Readers refuse it; the writer replaces it.
	ErrForeign = errors.New("shmem: segment not created by the agent")
	// ErrFull: no free entity slot.
	ErrFull = errors.New("shmem: table full")
	// ErrInvalid: an entity with an invalid field (zero ID, ID not the hash
	// of the name, too long a name or cause, too many alarms).
	ErrInvalid = errors.New("shmem: invalid entity")
	// ErrTooManyAlarms: more than MaxAlarms alarms.
	ErrTooManyAlarms = errors.New("shmem: too many alarms")
	// ErrTimeout: Wait timed out.
	ErrTimeout = errors.New("shmem: timeout")
)

// Error is an error of an operation on a segment.
type Error struct {
	Op     string // "open", "read", "snapshot", "wait", "create", "put"...
	Path   string // segment path ("" for a heap segment)
	ID     uint64 // entity ID, if any
	Err    error  // one of the sentinels above, or a system error
	Detail string
}

func (e *Error) Error() string {
	s := "shmem: " + e.Op
	if e.Path != "" {
		s += " " + e.Path
	}
	if e.ID != 0 {
		s += fmt.Sprintf(" entity %#x", e.ID)
	}
	s += ": " + e.Err.Error()
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

package api

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// CodeThrottled: the caller's write rate is over its limit; the error's
// RetryAfterMs says when the next write will be accepted. Nothing was
// written. The connection survives.
const CodeThrottled = "throttled"

// ErrThrottled is the sentinel of CodeThrottled.
var ErrThrottled = &Error{Code: CodeThrottled, Message: "throttled"}

// Limits bound what local clients can make the agent hold: connections,
// time, and write rate. The zero value of a field means its default
// (DefaultLimits); docs/api.md describes each.
type Limits struct {
	// MaxConns is the most client connections open at once; one more is
	// answered busy and closed.
	MaxConns int
	// MaxConnsPerUID is the most connections of one UID (root included).
	MaxConnsPerUID int
	// IdleTimeout closes a connection with no request in progress, no
	// Watch, and no byte received for this long.
	IdleTimeout time.Duration
	// FrameTimeout closes a connection that began a frame and did not
	// finish it within this time (a half-sent frame holds a buffer).
	FrameTimeout time.Duration
	// WriteRate is the writes per second one UID may make, on all its
	// connections together (a token bucket of WriteBurst tokens); a write
	// over it gets ErrThrottled with a retry-after.
	WriteRate float64
	// WriteBurst is the token bucket's size.
	WriteBurst int
}

// DefaultLimits are the limits a zero Limits field takes.
var DefaultLimits = Limits{
	MaxConns:       512,
	MaxConnsPerUID: 128,
	IdleTimeout:    10 * time.Minute,
	FrameTimeout:   10 * time.Second,
	WriteRate:      200,
	WriteBurst:     1000,
}

// withDefaults returns l with every zero field set to its default.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxConns > 0 {
		d.MaxConns = l.MaxConns
	}
	if l.MaxConnsPerUID > 0 {
		d.MaxConnsPerUID = l.MaxConnsPerUID
	}
	if l.IdleTimeout > 0 {
		d.IdleTimeout = l.IdleTimeout
	}
	if l.FrameTimeout > 0 {
		d.FrameTimeout = l.FrameTimeout
	}
	if l.WriteRate > 0 {
		d.WriteRate = l.WriteRate
	}
	if l.WriteBurst > 0 {
		d.WriteBurst = l.WriteBurst
	}
	return d
}

// LimitStats counts what the limits refused or closed.
type LimitStats struct {
	ConnsRefused  uint64 // connections over MaxConns or MaxConnsPerUID
	IdleClosed    uint64 // connections closed after IdleTimeout
	FrameTimeouts uint64 // connections closed with a frame unfinished after FrameTimeout
	Throttled     uint64 // writes refused with ErrThrottled
}

// uidState is one UID's connections and write bucket. Entries are kept
// after the UID's last connection closes, so that reconnecting does not
// refill the bucket; there is one per local user that ever connected.
type uidState struct {
	conns  int
	tokens float64
	last   time.Time
}

// limiter enforces Limits for one Server.
type limiter struct {
	mu    sync.Mutex
	l     Limits
	conns int
	uids  map[uint32]*uidState
	stats LimitStats
}

func (lm *limiter) init(l Limits) {
	lm.l = l.withDefaults()
	lm.uids = make(map[uint32]*uidState)
}

func (lm *limiter) uid(uid uint32) *uidState {
	u := lm.uids[uid]
	if u == nil {
		u = &uidState{tokens: float64(lm.l.WriteBurst)}
		lm.uids[uid] = u
	}
	return u
}

// admit takes a connection slot for uid, or says why not.
func (lm *limiter) admit(uid uint32) error {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	u := lm.uid(uid)
	switch {
	case lm.conns >= lm.l.MaxConns:
		lm.stats.ConnsRefused++
		return Errorf(ErrBusy, "too many client connections (limit %d)", lm.l.MaxConns)
	case u.conns >= lm.l.MaxConnsPerUID:
		lm.stats.ConnsRefused++
		return Errorf(ErrBusy, "too many client connections of uid %d (limit %d per uid)", uid, lm.l.MaxConnsPerUID)
	}
	lm.conns++
	u.conns++
	return nil
}

// release gives back uid's connection slot.
func (lm *limiter) release(uid uint32) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	lm.conns--
	lm.uid(uid).conns--
}

// write takes one write token of uid at now, or returns ErrThrottled with
// the time until a token is there.
func (lm *limiter) write(uid uint32, now time.Time) error {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	return lm.writeLocked(uid, now)
}

// writeLocked is write with lm.mu held.
func (lm *limiter) writeLocked(uid uint32, now time.Time) error {
	u := lm.uid(uid)
	if !u.last.IsZero() {
		u.tokens = math.Min(float64(lm.l.WriteBurst), u.tokens+now.Sub(u.last).Seconds()*lm.l.WriteRate)
	}
	u.last = now
	if u.tokens >= 1 {
		u.tokens--
		return nil
	}
	lm.stats.Throttled++
	wait := time.Duration((1 - u.tokens) / lm.l.WriteRate * float64(time.Second))
	ms := max(1, wait.Milliseconds()+1)
	return &Error{Code: CodeThrottled, RetryAfterMs: ms,
		Message: fmt.Sprintf("uid %d writes faster than %g per second (burst %d): retry after %d ms", uid, lm.l.WriteRate, lm.l.WriteBurst, ms)}
}

func (lm *limiter) count(f func(*LimitStats)) {
	lm.mu.Lock()
	f(&lm.stats)
	lm.mu.Unlock()
}

// LimitStats returns what the limits refused or closed so far.
func (s *Server) LimitStats() LimitStats {
	s.init()
	s.lim.mu.Lock()
	defer s.lim.mu.Unlock()
	return s.lim.stats
}

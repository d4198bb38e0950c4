package api

import (
	"sync"
	"time"
)

// logGate lets one log line of a kind through per period and counts the
// ones it holds back, which the next line reports. A client can make the
// server close thousands of connections a second (half-sent frames, bad
// framing): each is counted in LimitStats, but a WARN line for each
// flooded the log and, under load, took the CPU the agent's own loops
// needed (issue 9: bounded everything).
type logGate struct {
	mu      sync.Mutex
	period  time.Duration
	next    time.Time
	dropped int
}

// allow reports whether a line may be logged at now, and how many were
// held back since the last one that was.
func (g *logGate) allow(now time.Time) (ok bool, held int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Before(g.next) {
		g.dropped++
		return false, 0
	}
	g.next = now.Add(g.period)
	held, g.dropped = g.dropped, 0
	return true, held
}

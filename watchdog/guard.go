package watchdog

import (
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// Guard kicks every watchdog it has (a device, systemd's, both) from one
// decision: every loop of Health made progress within the window, the Check
// function (the core's self-fence decision) does not hold the kicks, and no
// Hold is in place (a critical daemon escalated). When the decision turns,
// it logs which loop stalled or what holds the kicks, once.
type Guard struct {
	// Kickers are kicked together; none is allowed (the guard still
	// reports the loops' health).
	Kickers []Kicker
	Health  *Health
	// Period is how often Step runs; Window how long a loop may be busy.
	// Zero: derived from the kickers' timeouts (see Period).
	Period, Window time.Duration
	// Check, if set, returns why the kicks must stop ("" to kick). It is
	// called from Step.
	Check func(now time.Time) string
	Log   *slog.Logger

	mu      sync.Mutex
	holds   map[string]string
	st      GuardStatus
	started bool
}

// DefaultPeriod is the guard's period with no watchdog to pace it: the
// loops' health is still checked (and shown by fmctl status).
const DefaultPeriod = time.Second

// PeriodFor is how often to kick watchdogs with these timeouts: a third of
// the shortest, so that one late kick is not yet a reset (and systemd's
// advice, half its interval or more often, holds).
func PeriodFor(ks []Kicker) time.Duration {
	p := time.Duration(0)
	for _, k := range ks {
		if t := k.Timeout() / 3; t > 0 && (p == 0 || t < p) {
			p = t
		}
	}
	if p == 0 {
		return DefaultPeriod
	}
	return p
}

// GuardStatus is the guard's last decision.
type GuardStatus struct {
	Kickers  []string      // names: "/dev/watchdog0", "systemd"
	Timeout  time.Duration // shortest timeout in force (0: no watchdog)
	Period   time.Duration
	Kicking  bool
	Reason   string // why not kicking ("" while kicking)
	LastKick time.Time
	Kicks    uint64
	KickErr  string // the last kick error, "" if none
	Loops    []LoopStatus
	Stalled  []string
}

func (g *Guard) init() {
	if g.started {
		return
	}
	g.started = true
	if g.Health == nil {
		g.Health = &Health{}
	}
	if g.Period <= 0 {
		g.Period = PeriodFor(g.Kickers)
	}
	if g.Window <= 0 {
		g.Window = g.Period
	}
	if g.Log == nil {
		g.Log = slog.New(slog.DiscardHandler)
	}
	g.st.Kicking = true
	g.st.Period = g.Period
	for _, k := range g.Kickers {
		g.st.Kickers = append(g.st.Kickers, k.Name())
		if t := k.Timeout(); t > 0 && (g.st.Timeout == 0 || t < g.st.Timeout) {
			g.st.Timeout = t
		}
	}
}

// Hold stops the kicks for source, with a reason, until Release(source).
func (g *Guard) Hold(source, reason string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.holds == nil {
		g.holds = make(map[string]string)
	}
	g.holds[source] = reason
}

// Release lifts source's hold.
func (g *Guard) Release(source string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.holds, source)
}

// Step decides once and kicks every watchdog if the node is healthy. It
// returns whether it kicked.
func (g *Guard) Step(now time.Time) bool {
	g.mu.Lock()
	g.init()
	holds := make([]string, 0, len(g.holds))
	for s, r := range g.holds {
		holds = append(holds, s+": "+r)
	}
	g.mu.Unlock()
	sort.Strings(holds)

	loops, stalled := g.Health.Check(now, g.Window)
	var reasons []string
	if len(stalled) > 0 {
		reasons = append(reasons, "stalled loop: "+strings.Join(stalled, ", "))
	}
	if g.Check != nil {
		if r := g.Check(now); r != "" {
			reasons = append(reasons, r)
		}
	}
	reasons = append(reasons, holds...)
	reason := strings.Join(reasons, "; ")
	kick := reason == ""

	var kickErr error
	if kick {
		for _, k := range g.Kickers {
			if err := k.Kick(); err != nil {
				kickErr = err
				g.Log.Warn("watchdog kick", "watchdog", k.Name(), "err", err)
			}
		}
	}

	g.mu.Lock()
	was, wasReason := g.st.Kicking, g.st.Reason
	g.st.Kicking, g.st.Reason = kick, reason
	g.st.Loops, g.st.Stalled = loops, stalled
	if kick {
		g.st.LastKick = now
		g.st.Kicks++
		g.st.KickErr = ""
		if kickErr != nil {
			g.st.KickErr = kickErr.Error()
		}
	}
	g.mu.Unlock()

	switch {
	case was && !kick, !kick && reason != wasReason:
		g.Log.Error("no longer kicking the watchdog", "reason", reason, "stalled", strings.Join(stalled, ","),
			"watchdogs", strings.Join(g.st.Kickers, ","))
	case !was && kick:
		g.Log.Warn("kicking the watchdog again", "was", wasReason)
	}
	return kick
}

// Run calls Step at once, then every Period until done is closed. At
// once: until the first Step, Status says the guard is kicking and lists
// no loops, which is not a decision it has taken (`fmctl status` showed
// "kicking: yes" and no loop for a whole period after a start), and a
// device just opened is better kicked now than a period later.
func (g *Guard) Run(done <-chan struct{}) {
	g.mu.Lock()
	g.init()
	p := g.Period
	g.mu.Unlock()
	t := time.NewTicker(p)
	defer t.Stop()
	select {
	case <-done:
		return
	default:
		now := time.Now()
		g.Health.Started(now) // the loops start with the guard (Health.Started)
		g.Step(now)
	}
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			g.Step(now)
		}
	}
}

// Status is the last decision.
func (g *Guard) Status() GuardStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.init()
	st := g.st
	st.Loops = append([]LoopStatus(nil), g.st.Loops...)
	st.Stalled = append([]string(nil), g.st.Stalled...)
	return st
}

// Close closes every kicker (the magic close for a device).
func (g *Guard) Close() error {
	var first error
	for _, k := range g.Kickers {
		if err := k.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

package core

import (
	"time"

	"github.com/fmagent/fmagent/agent/table"
)

// Profile is a named detector timing, named for its bound: the silence on
// both networks after which a peer is judged down (interval × misses).
// DESIGN §8 says what each needs from the machine; docs/bench.md gives each
// one's measured false-down rate under a full CPU hog. config's profile
// names and defaults read this table (config.Profiles is it).
type Profile struct {
	Name     string
	Interval time.Duration
	Misses   int
	// NeedsRealtime: the profile is refused at start when its heartbeat
	// thread cannot have SCHED_FIFO (under CPU load a normal thread waits
	// longer than the bound's slack; issue 13's soak).
	NeedsRealtime bool
}

// Bound is the profile's detection bound.
func (p Profile) Bound() time.Duration { return p.Interval * time.Duration(p.Misses) }

// The defaults of Config's timing and limits, each defined here once: a
// field left zero gets them (setDefaults), and config.Default() gives the
// same (DefaultProfile, DefaultStale, DefaultMaxAlarms).
const (
	// DefaultProfile is the profile of a configuration that names none.
	DefaultProfile = "20ms"
	// DefaultInterval and DefaultMisses are DefaultProfile's timing.
	DefaultInterval = 4 * time.Millisecond
	DefaultMisses   = 5
	// DefaultStale is the stale timeout ([timing] stale_timeout).
	DefaultStale = 10 * time.Second
	// DefaultMaxAlarms is the per-entity alarm limit (max_alarms): the
	// table's, which is what a shared-memory slot holds.
	DefaultMaxAlarms = table.DefaultMaxAlarms
	// DefaultRingSize is the master's retransmit ring, in changes.
	DefaultRingSize = 4096
)

// Profiles, fastest first. Five misses each: one late heartbeat (a 20 ms VM
// stall at the 50 ms profile, a few milliseconds of scheduling delay at the
// others) never reads as a failure.
var Profiles = []Profile{
	{Name: "10ms", Interval: 2 * time.Millisecond, Misses: 5, NeedsRealtime: true},
	{Name: DefaultProfile, Interval: DefaultInterval, Misses: DefaultMisses},
	{Name: "50ms", Interval: 10 * time.Millisecond, Misses: 5},
}

// LookupProfile finds a profile by its name (config adds its aliases).
func LookupProfile(name string) (Profile, bool) {
	for _, p := range Profiles {
		if p.Name == name {
			return p, true
		}
	}
	return Profile{}, false
}

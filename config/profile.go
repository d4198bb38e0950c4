package config

import (
	"fmt"
	"strings"
	"time"
)

// Profile is a named detector timing, named for its bound: the silence on
// both networks after which a peer is judged down (interval × misses).
// DESIGN §8 says what each needs from the machine; docs/bench.md gives each
// one's measured false-down rate under a full CPU hog.
type Profile struct {
	Name     string
	Interval time.Duration
	Misses   int
	// NeedsRealtime: the profile is refused at start when its heartbeat
	// thread cannot have SCHED_FIFO (under CPU load a normal thread waits
	// longer than the bound's slack; issue 13's soak).
	NeedsRealtime bool
}

// RealtimeRefusal says why a profile that NeedsRealtime is refused without
// SCHED_FIFO: a profile the machine cannot hold is refused at start, with
// the reason (issue 13), whether real-time scheduling is switched off in the
// file (config.Validate) or not permitted (the agent's rtSetup).
func RealtimeRefusal(p Profile) string {
	return fmt.Sprintf("timing profile %q (%v × %d) needs SCHED_FIFO on the heartbeat thread: at the normal policy, under CPU load, it waits behind other threads for a time slice (milliseconds), so heartbeats are late and peers are falsely declared down within the %v bound", p.Name, p.Interval, p.Misses, p.Bound())
}

// Bound is the profile's detection bound.
func (p Profile) Bound() time.Duration { return p.Interval * time.Duration(p.Misses) }

// Profiles, fastest first. Five misses each: one late heartbeat (a 20 ms VM
// stall at the 50 ms profile, a few milliseconds of scheduling delay at the
// others) never reads as a failure.
var Profiles = []Profile{
	{Name: "10ms", Interval: 2 * time.Millisecond, Misses: 5, NeedsRealtime: true},
	{Name: "20ms", Interval: 4 * time.Millisecond, Misses: 5},
	{Name: "50ms", Interval: 10 * time.Millisecond, Misses: 5},
}

// Profile names.
const (
	ProfileDefault = "default" // the 20 ms profile
	ProfileFast    = "fast"    // the 10 ms profile (needs SCHED_FIFO; DESIGN §8)
	ProfileCustom  = "custom"  // interval and misses from the file
)

// profileAliases map the older names to the profiles named for their bound.
var profileAliases = map[string]string{ProfileDefault: "20ms", ProfileFast: "10ms"}

// LookupProfile finds a named profile (or its alias).
func LookupProfile(name string) (Profile, bool) {
	if a, ok := profileAliases[name]; ok {
		name = a
	}
	for _, p := range Profiles {
		if p.Name == name {
			return p, true
		}
	}
	return Profile{}, false
}

// profileChoices is the validation message's list of profiles.
func profileChoices() string {
	var b strings.Builder
	for _, p := range Profiles {
		fmt.Fprintf(&b, "%q (%v × %d), ", p.Name, p.Interval, p.Misses)
	}
	fmt.Fprintf(&b, "%q (= \"20ms\"), %q (= \"10ms\") or %q", ProfileDefault, ProfileFast, ProfileCustom)
	return b.String()
}

// Realtime is the [realtime] table: how the heartbeat, receive and publish
// thread is scheduled (DESIGN §8).
type Realtime struct {
	// Enabled asks for SCHED_FIFO on the real-time thread (default true).
	// When the process is not permitted it (no CAP_SYS_NICE, RLIMIT_RTPRIO
	// below Priority), the agent says so once at start and runs at the
	// normal policy. A profile that needs it (NeedsRealtime) is refused
	// both when it is not permitted (at start) and when Enabled is false
	// (by Validate, so fmagent -check-config sees it).
	Enabled bool `toml:"enabled"`
	// Priority is the heartbeat loop's SCHED_FIFO priority, 2..98 (default
	// 10: above every normal thread, below the kernel's threaded interrupt
	// handlers at 50). The agent's other threads run at Priority-1, so
	// that the loop preempts them: hence not 1, SCHED_FIFO's lowest.
	Priority int `toml:"priority"`
	// LockMemory: mlockall(MCL_CURRENT|MCL_FUTURE) at start when permitted
	// (default true).
	LockMemory bool `toml:"lock_memory"`
}

// The range of realtime.priority.
const (
	MinRealtimePriority = 2
	MaxRealtimePriority = 98
)

// DefaultRealtime is the [realtime] table's defaults.
func DefaultRealtime() Realtime { return Realtime{Enabled: true, Priority: 10, LockMemory: true} }

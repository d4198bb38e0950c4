package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/fmagent/fmagent/agent/core"
)

// Profile is a named detector timing; the table of them is the core's
// (core.Profiles), defined there once.
type Profile = core.Profile

// RealtimeRefusal says why a profile that NeedsRealtime is refused without
// SCHED_FIFO: a profile the machine cannot hold is refused at start, with
// the reason (issue 13), whether real-time scheduling is switched off in the
// file (config.Validate) or not permitted (the agent's rtSetup).
func RealtimeRefusal(p Profile) string {
	return fmt.Sprintf("timing profile %q (%v × %d) needs SCHED_FIFO on the heartbeat thread: at the normal policy, under CPU load, it waits behind other threads for a time slice (milliseconds), so heartbeats are late and peers are falsely declared down within the %v bound", p.Name, p.Interval, p.Misses, p.Bound())
}

// Profiles, fastest first.
var Profiles = core.Profiles

// Profile names.
const (
	ProfileDefault = "default" // the 20 ms profile
	ProfileFast    = "fast"    // the 10 ms profile (needs SCHED_FIFO; DESIGN §8)
	ProfileCustom  = "custom"  // interval and misses from the file
)

// profileAliases map the older names to the profiles named for their bound.
var profileAliases = map[string]string{ProfileDefault: core.DefaultProfile, ProfileFast: "10ms"}

// LookupProfile finds a named profile (or its alias).
func LookupProfile(name string) (Profile, bool) {
	if a, ok := profileAliases[name]; ok {
		name = a
	}
	return core.LookupProfile(name)
}

// profileChoices is the validation message's list of profiles.
func profileChoices() string {
	var b strings.Builder
	for _, p := range Profiles {
		fmt.Fprintf(&b, "%q (%v × %d), ", p.Name, p.Interval, p.Misses)
	}
	fmt.Fprintf(&b, "%q (= %q), %q (= %q) or %q", ProfileDefault, profileAliases[ProfileDefault], ProfileFast, profileAliases[ProfileFast], ProfileCustom)
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
	// Priority is the heartbeat loop's SCHED_FIFO priority, 1..98 (default
	// 10: above every normal thread, below the kernel's threaded interrupt
	// handlers at 50). The agent's other threads run at the normal policy,
	// nice -20 (transport.SetProcessNice says why not SCHED_FIFO).
	Priority int `toml:"priority"`
	// LockMemory: mlockall(MCL_CURRENT|MCL_FUTURE|MCL_ONFAULT) at start when permitted
	// (default true).
	LockMemory bool `toml:"lock_memory"`
	// CPUs, when set, pins every thread of the agent to these CPUs
	// (sched_setaffinity; default: none, the kernel places them). On one
	// CPU the real-time loop's hand-offs to Go's scheduler stay on it: a
	// wake-up on another, idle CPU costs an interrupt and, on a virtual
	// machine, a vCPU exit (transport.PinProcess; docs/bench.md: half the
	// idle CPU, down propagation a fifth faster). But on one CPU the loop
	// at SCHED_FIFO also preempts the threads it may wait for inside Go's
	// runtime: under a CPU hog GC pauses reached 50 ms at p99 (20 ms
	// unpinned), and once in five soak runs a loop waited about a second,
	// until the kernel's real-time throttling (soak/cmd/rtinversion
	// reproduces it); the agent warns at start when it may run on one CPU
	// only. Choose CPUs no other real-time task is pinned to: the loop
	// cannot move off them. A CPU the process may not use is refused at
	// start.
	CPUs []int `toml:"cpus"`
	// TraceDir, when set, keeps Go's flight recorder running (the last
	// seconds of the runtime's execution trace, in memory) and writes it
	// to a file in this directory when the real-time loop ticks late by
	// half the detection bound or more: what every goroutine, thread and
	// the garbage collector did meanwhile, for `go tool trace`. At most
	// one file every TraceEvery, the TraceKeep newest kept. The tracer
	// costs CPU (an idle agent at 10 ms × 5: about 0.3 % of a core more,
	// docs/bench.md; more under load): off by default ("").
	TraceDir string `toml:"trace_dir"`
}

// The flight recorder's files (Realtime.TraceDir).
const (
	TraceEvery = 10 * time.Second
	TraceKeep  = 10
)

// The range of realtime.priority.
const (
	MinRealtimePriority = 1
	MaxRealtimePriority = 98
)

// MaxCPU bounds realtime.cpus: the kernel's CPU mask as sched_setaffinity
// takes it here (unix.CPUSet).
const MaxCPU = 1024

// DefaultRealtime is the [realtime] table's defaults.
func DefaultRealtime() Realtime {
	return Realtime{Enabled: true, Priority: 10, LockMemory: true, CPUs: []int{}}
}

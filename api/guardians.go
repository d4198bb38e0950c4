package api

import (
	"context"
	"time"
)

// WatchdogStatus is the watchdog part of Status: which watchdogs the agent
// kicks, whether it is kicking them and why not, and the health of its
// critical loops (the signal the kicks rest on).
type WatchdogStatus struct {
	// Watchdogs are the kicked watchdogs: device paths and "systemd".
	// Empty: none (the loops' health is still checked).
	Watchdogs []string `json:"watchdogs"`
	Identity  string   `json:"identity,omitempty"` // the device driver's (WDIOC_GETSUPPORT)
	// TimeoutMS is the shortest timeout in force; PeriodMS how often the
	// agent decides and kicks.
	TimeoutMS int64     `json:"timeout_ms"`
	PeriodMS  int64     `json:"period_ms"`
	Kicking   bool      `json:"kicking"`
	Reason    string    `json:"reason,omitempty"` // why not kicking
	LastKick  time.Time `json:"last_kick"`
	Kicks     uint64    `json:"kicks"`
	// BootStatus is the device's boot status: "normal", "watchdog reset
	// (...)", or "unknown" (no device, or the driver lacks the ioctl).
	BootStatus string `json:"boot_status"`
	// SelfFence: the node stops kicking when isolated (see DESIGN §2).
	SelfFence bool         `json:"self_fence"`
	Fenced    bool         `json:"fenced"`
	Loops     []LoopHealth `json:"loops"`
}

// LoopHealth is one critical loop of the agent.
type LoopHealth struct {
	Name         string    `json:"name"`
	Healthy      bool      `json:"healthy"`
	LastProgress time.Time `json:"last_progress"`
	BusyMS       int64     `json:"busy_ms"` // how long its current work has lasted (0: idle)
}

// Daemon is one supervised daemon (a [[daemons]] table of the agent's
// configuration), as `fmctl daemons` shows it.
type Daemon struct {
	Name   string `json:"name"`
	Entity string `json:"entity"` // node/<id>/proc/<name>
	// State: "running", "backoff" (waiting to restart), "stopped" (exited,
	// no restart by policy), "failed" (restart limit hit), "starting".
	State    string `json:"state"`
	PID      int32  `json:"pid"` // 0 when not running
	Adopted  bool   `json:"adopted"`
	Restarts int    `json:"restarts"` // restarts within the current window
	// LastExit is the last exit status ("exit 1", "signal killed",
	// "unknown" for an adopted process), "" if it never exited.
	LastExit  string    `json:"last_exit,omitempty"`
	BackoffMS int64     `json:"backoff_ms"` // the delay before the next restart
	NextStart time.Time `json:"next_start,omitzero"`
	Critical  bool      `json:"critical"`
	// Escalated: the restart limit was hit and the escalation applied.
	Escalated bool `json:"escalated"`
}

// DaemonsRequest has no fields.
type DaemonsRequest struct{}

// Validate implements the request check; there is nothing to check.
func (r *DaemonsRequest) Validate() error { return nil }

// DaemonLister is implemented by a Handler that supervises daemons; the
// server answers OpDaemons with it (unknown_op if the Handler lacks it).
type DaemonLister interface {
	Daemons(ctx context.Context) ([]Daemon, error)
}

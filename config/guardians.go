package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// FenceMode is watchdog.self_fence: "auto" (on with a watchdog device, off
// without one), "on" or "off". The TOML booleans true and false mean "on"
// and "off" (the setting was a boolean before).
type FenceMode string

// Self-fence modes.
const (
	FenceAuto FenceMode = "auto"
	FenceOn   FenceMode = "on"
	FenceOff  FenceMode = "off"
)

// UnmarshalTOML accepts a boolean or one of the mode names.
func (m *FenceMode) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case bool:
		if v {
			*m = FenceOn
		} else {
			*m = FenceOff
		}
		return nil
	case string:
		*m = FenceMode(v)
		return nil
	}
	return fmt.Errorf("must be \"auto\", \"on\", \"off\", true or false, not %T", v)
}

// Enabled says whether self-fencing is on, given whether a watchdog device
// is in use.
func (m FenceMode) Enabled(device bool) bool {
	switch m {
	case FenceOn:
		return true
	case FenceOff:
		return false
	}
	return device
}

// Restart policies of a daemon.
const (
	RestartNever     = "never"
	RestartOnFailure = "on-failure"
	RestartAlways    = "always"
)

// Escalations of a critical daemon that cannot be kept up.
const (
	EscalateAlarm    = "alarm"     // a critical alarm on its entity, nothing more
	EscalateNodeDown = "node-down" // the node leaves the cluster: its entities go down, the master fails over
	EscalateFence    = "fence"     // stop kicking the watchdog
)

// Daemon is one [[daemons]] table: a process the agent supervises, either
// started by it (command) or adopted (pidfile, pid), as the entity
// node/<node_id>/proc/<name>.
type Daemon struct {
	Name string `toml:"name"`
	// Command and Args start the daemon (Command an absolute path). Empty
	// for a daemon only adopted.
	Command string   `toml:"command"`
	Args    []string `toml:"args"`
	// Env is added to the agent's environment ("KEY=value").
	Env     []string `toml:"env"`
	User    string   `toml:"user"`
	Group   string   `toml:"group"`
	WorkDir string   `toml:"workdir"`
	// PidFile adopts the process whose PID it holds, if that process
	// started before the file was written (a reused PID did not).
	PidFile string `toml:"pidfile"`
	// Restart is "never", "on-failure" (the default) or "always".
	Restart string `toml:"restart"`
	// Backoff is the first delay before a restart, doubled after each
	// restart up to BackoffMax.
	Backoff    time.Duration `toml:"backoff"`
	BackoffMax time.Duration `toml:"backoff_max"`
	// At most Limit restarts within Window; then a critical alarm and no
	// more restarts.
	Limit  int           `toml:"limit"`
	Window time.Duration `toml:"window"`
	// Critical daemons escalate (Escalate) when they cannot be kept up.
	Critical bool   `toml:"critical"`
	Escalate string `toml:"escalate"`
}

// Daemon defaults.
const (
	DefaultBackoff    = time.Second
	DefaultBackoffMax = 30 * time.Second
	DefaultLimit      = 5
	DefaultWindow     = time.Minute
	DefaultWDTimeout  = 30 * time.Second
	DefaultFenceAfter = 10 * time.Second
)

// ApplyDefaults fills what a [[daemons]] table left out (Load calls it;
// a Config built in code calls it before Validate).
func (d *Daemon) ApplyDefaults() {
	if d.Restart == "" {
		d.Restart = RestartOnFailure
	}
	if d.Backoff == 0 {
		d.Backoff = DefaultBackoff
	}
	if d.BackoffMax == 0 {
		d.BackoffMax = max(DefaultBackoffMax, d.Backoff)
	}
	if d.Limit == 0 {
		d.Limit = DefaultLimit
	}
	if d.Window == 0 {
		d.Window = DefaultWindow
	}
	if d.Escalate == "" {
		d.Escalate = EscalateAlarm
	}
}

var daemonNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// validateGuardians checks [watchdog] and [[daemons]].
func (c *Config) validateGuardians(add func(*Error)) {
	w := c.Watchdog
	if w.Device != "" && w.Device != "auto" && !filepath.IsAbs(w.Device) {
		add(bad("watchdog.device", w.Device, "must be an absolute path, \"auto\" (/dev/watchdog0, then /dev/watchdog) or \"\" for none"))
	}
	switch w.SelfFence {
	case FenceAuto, FenceOn, FenceOff:
	default:
		add(bad("watchdog.self_fence", string(w.SelfFence), "must be \"auto\" (on with a device), \"on\" or \"off\""))
	}
	if w.Timeout < time.Second || w.Timeout > time.Hour {
		add(bad("watchdog.timeout", w.Timeout, "must be between 1s and 1h (whole seconds: drivers count in seconds)"))
	}
	if det := c.Timing.Detection(); w.FenceTimeout <= det {
		add(bad("watchdog.fence_timeout", w.FenceTimeout, "must be longer than the detection time, interval × misses = %v", det))
	}
	seen := map[string]int{}
	for i := range c.Daemons {
		d := &c.Daemons[i]
		k := fmt.Sprintf("daemons[%d].", i)
		if !daemonNameRE.MatchString(d.Name) {
			add(bad(k+"name", d.Name, "must be 1-64 letters, digits, '.', '_' or '-' (the entity is node/<node_id>/proc/<name>)"))
		} else if j, dup := seen[d.Name]; dup {
			add(bad(k+"name", d.Name, "is also daemons[%d]'s name", j))
		} else {
			seen[d.Name] = i
		}
		if d.Command == "" && d.PidFile == "" {
			add(&Error{Key: k + "command", Reason: "a daemon needs a command to start it, or a pidfile to adopt it"})
		}
		if d.Command != "" && !filepath.IsAbs(d.Command) {
			add(bad(k+"command", d.Command, "must be an absolute path"))
		}
		if d.PidFile != "" && !filepath.IsAbs(d.PidFile) {
			add(bad(k+"pidfile", d.PidFile, "must be an absolute path"))
		}
		if d.WorkDir != "" && !filepath.IsAbs(d.WorkDir) {
			add(bad(k+"workdir", d.WorkDir, "must be an absolute path"))
		}
		for j, e := range d.Env {
			if n, _, ok := strings.Cut(e, "="); !ok || n == "" {
				add(bad(fmt.Sprintf("%senv[%d]", k, j), e, "must be KEY=value"))
			}
		}
		switch d.Restart {
		case RestartNever, RestartOnFailure, RestartAlways:
			if d.Restart != RestartNever && d.Command == "" {
				add(bad(k+"restart", d.Restart, "needs a command to restart the daemon with (an adopted daemon without one: restart = \"never\")"))
			}
		default:
			add(bad(k+"restart", d.Restart, "must be \"never\", \"on-failure\" or \"always\""))
		}
		if d.Backoff < 10*time.Millisecond {
			add(bad(k+"backoff", d.Backoff, "must be at least 10ms (a duration string with a unit)"))
		}
		if d.BackoffMax < d.Backoff {
			add(bad(k+"backoff_max", d.BackoffMax, "must be at least backoff (%v)", d.Backoff))
		}
		if d.Limit < 1 || d.Limit > 1000 {
			add(bad(k+"limit", d.Limit, "must be in 1..1000"))
		}
		if d.Window < time.Second {
			add(bad(k+"window", d.Window, "must be at least 1s (a duration string with a unit)"))
		}
		switch d.Escalate {
		case EscalateAlarm, EscalateNodeDown, EscalateFence:
		default:
			add(bad(k+"escalate", d.Escalate, "must be \"alarm\", \"node-down\" or \"fence\""))
		}
	}
}

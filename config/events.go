package config

import (
	"fmt"
	"path/filepath"
	"slices"
	"time"
)

// Log formats (log_format).
const (
	LogText = "text" // logfmt-like key=value lines (the default)
	LogJSON = "json" // one JSON object per line, for journald/Loki/ELK
)

// Hook event kinds (hooks.on): what a notify script may be run for.
var HookKinds = []string{"node", "link", "role", "alarm", "state"}

// DefaultHookTimeout bounds one run of a notify script.
const DefaultHookTimeout = 10 * time.Second

// Hook is one notify script ([[hooks]]), like keepalived's notify or a
// pacemaker alert agent: run for every event of the kinds in On, with the
// event in environment variables and as JSON on stdin (docs/hooks.md).
type Hook struct {
	// Command is the script's absolute path; Args are passed to it.
	Command string   `toml:"command"`
	Args    []string `toml:"args"`
	// On lists the event kinds: "node" (a node up or down), "link" (a
	// node's link up or down), "role" (this node's role: master, vice,
	// member; the master and epoch), "alarm" (raised or cleared anywhere in
	// the cluster), "state" (any other entity up or down). Empty: all.
	On []string `toml:"on"`
	// Timeout bounds one run (a duration string); the script is killed
	// after it. Default 10s.
	Timeout time.Duration `toml:"timeout"`
}

// Wants reports whether the hook runs for events of kind k.
func (h *Hook) Wants(k string) bool { return len(h.On) == 0 || slices.Contains(h.On, k) }

// validateEvents checks log_format and [[hooks]]. It fills a hook's default
// timeout.
func (c *Config) validateEvents(add func(*Error)) {
	switch c.LogFormat {
	case "", LogText, LogJSON:
	default:
		add(bad("log_format", c.LogFormat, "must be %q or %q", LogText, LogJSON))
	}
	for i := range c.Hooks {
		h := &c.Hooks[i]
		k := fmt.Sprintf("hooks[%d].", i)
		if h.Command == "" || !filepath.IsAbs(h.Command) {
			add(bad(k+"command", h.Command, "must be an absolute path to an executable"))
		}
		for j, on := range h.On {
			if !slices.Contains(HookKinds, on) {
				add(bad(fmt.Sprintf("%son[%d]", k, j), on, "must be one of %q", HookKinds))
			}
		}
		switch {
		case h.Timeout == 0:
			h.Timeout = DefaultHookTimeout
		case h.Timeout < 0 || h.Timeout > time.Hour:
			add(bad(k+"timeout", h.Timeout.String(), "must be a duration between 1ns and 1h"))
		}
	}
}

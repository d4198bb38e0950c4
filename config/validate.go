package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fmagent/fmagent/agent/plugin"
)

// Error is one refused setting.
type Error struct {
	File   string // the config file, "" when the value came from a flag or the code
	Line   int    // 1-based; 0 when unknown (e.g. a default or a flag)
	Col    int    // 1-based; 0 when unknown
	Key    string // dotted TOML key, e.g. "timing.misses"; "" for syntax errors
	Value  string // the value as written in TOML, "" if not relevant
	Reason string
	// Flag names the command-line flag that set the value, if one did.
	Flag string

	err error // the cause, if any (Unwrap)
}

// Unwrap returns the error behind the refusal, if any (config.ErrKeyFile for
// a key file).
func (e *Error) Unwrap() error { return e.err }

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
			if e.Col > 0 {
				fmt.Fprintf(&b, ":%d", e.Col)
			}
		}
		b.WriteString(": ")
	}
	if e.Flag != "" {
		fmt.Fprintf(&b, "flag -%s: ", e.Flag)
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		if e.Value != "" {
			b.WriteString(" = ")
			b.WriteString(e.Value)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// tomlValue formats v the way it would be written in TOML.
func tomlValue(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case time.Duration:
		return strconv.Quote(v.String())
	case netip.Addr:
		if !v.IsValid() {
			return `""`
		}
		return strconv.Quote(v.String())
	}
	return fmt.Sprint(v)
}

func bad(key string, v any, format string, args ...any) *Error {
	return &Error{Key: key, Value: tomlValue(v), Reason: fmt.Sprintf(format, args...)}
}

// Validate checks every field and returns every problem, each an *Error
// (joined with errors.Join), or nil.
func (c *Config) Validate() error {
	var errs []*Error
	add := func(e *Error) { errs = append(errs, e) }

	if c.NodeID == 0 {
		add(bad("node_id", c.NodeID, "must be at least 1 (0 means \"no node\" on the wire)"))
	}
	if c.ClusterID == 0 {
		add(bad("cluster_id", c.ClusterID, "must be at least 1"))
	}
	for i := range c.Networks {
		n := &c.Networks[i]
		k := "networks." + n.Name + "."
		if n.Interface == "" {
			add(bad(k+"interface", n.Interface, "must name the network's interface, e.g. \"eth1\""))
		}
		switch {
		case !n.Group.Is4() || !n.Group.IsMulticast():
			add(bad(k+"group", n.Group, "must be an IPv4 multicast address (224.0.0.0/4); use one in 239.0.0.0/8, the administratively scoped range"))
		case netip.MustParsePrefix("224.0.0.0/24").Contains(n.Group):
			add(bad(k+"group", n.Group, "is in 224.0.0.0/24, reserved for routing protocols on the local link; use one in 239.0.0.0/8"))
		}
		if n.Port < 1 || n.Port > 65535 {
			add(bad(k+"port", n.Port, "must be in 1..65535"))
		}
		switch hp := n.HeartbeatPort; {
		case hp == 0 && n.Port == 65535:
			add(bad(k+"port", n.Port, "leaves no room for the heartbeat port (port + 1 unless heartbeat_port is set): use 1..65534"))
		case hp != 0 && (hp < 1 || hp > 65535):
			add(bad(k+"heartbeat_port", hp, "must be in 1..65535 (0 or unset: port + 1)"))
		case hp != 0 && hp == n.Port:
			add(bad(k+"heartbeat_port", hp, "is the group port: heartbeats need a port of their own"))
		}
		if n.TTL < 1 || n.TTL > 255 {
			add(bad(k+"ttl", n.TTL, "must be in 1..255"))
		}
		if n.Source.IsValid() && (!n.Source.Is4() || n.Source.IsMulticast() || n.Source.IsUnspecified()) {
			add(bad(k+"source", n.Source, "must be one of this host's IPv4 unicast addresses"))
		}
	}
	a, b := c.Networks[0], c.Networks[1]
	if a.Group.IsValid() && a.Group == b.Group {
		add(bad("networks.b.group", b.Group, "is also networks.a's group: each network needs its own group"))
	}

	t := c.Timing
	if _, ok := LookupProfile(t.Profile); !ok && t.Profile != ProfileCustom {
		add(bad("timing.profile", t.Profile, "must be %s", profileChoices()))
	}
	if p, ok := LookupProfile(t.Profile); ok && p.NeedsRealtime && !c.Realtime.Enabled {
		add(bad("realtime.enabled", false, "%s", RealtimeRefusal(p)+": set realtime.enabled = true (the agent needs CAP_SYS_NICE or RLIMIT_RTPRIO; the unit file grants it), or choose timing.profile = \"20ms\""))
	}
	switch r := c.Realtime; {
	case r.Priority < MinRealtimePriority || r.Priority > MaxRealtimePriority:
		add(bad("realtime.priority", r.Priority, "must be in %d..%d (99 is the kernel's watchdog and migration threads')", MinRealtimePriority, MaxRealtimePriority))
	}
	seenCPU := map[int]bool{}
	for _, cpu := range c.Realtime.CPUs {
		switch {
		case cpu < 0 || cpu >= MaxCPU:
			add(bad("realtime.cpus", c.Realtime.CPUs, "CPU %d: must be in 0..%d", cpu, MaxCPU-1))
		case seenCPU[cpu]:
			add(bad("realtime.cpus", c.Realtime.CPUs, "CPU %d is listed twice", cpu))
		}
		seenCPU[cpu] = true
	}
	intervalOK := false
	switch {
	case t.Interval <= 0:
		add(bad("timing.interval", t.Interval, "must be positive"))
	case t.Interval < MinInterval:
		add(bad("timing.interval", t.Interval, "must be at least %v: Go's timers cannot keep a shorter period regular (DESIGN §8)", MinInterval))
	case t.Interval > MaxInterval:
		add(bad("timing.interval", t.Interval, "must be at most %v", MaxInterval))
	default:
		intervalOK = true
	}
	if t.Misses < MinMisses {
		add(bad("timing.misses", t.Misses, "must be at least %d (a VM stall of ~20 ms must not read as a failure; DESIGN §8)", MinMisses))
	} else if t.Misses > 1000 {
		add(bad("timing.misses", t.Misses, "must be at most 1000"))
	}
	if intervalOK && t.Misses >= MinMisses && t.StaleTimeout <= t.Detection() {
		add(bad("timing.stale_timeout", t.StaleTimeout, "must be longer than the detection time, interval × misses = %v", t.Detection()))
	}

	if len(c.Plugins) == 0 {
		add(&Error{Key: "plugins", Reason: "the plugin chain is empty: no report would ever be decided (the default chain is " + defaultChainNames() + ")"})
	}
	for i, p := range c.Plugins {
		if strings.TrimSpace(p.Name) == "" {
			add(bad(fmt.Sprintf("plugins[%d].name", i), p.Name, "must name a plugin"))
		}
	}
	absPath := func(key, p string, optional bool) {
		if p == "" && optional {
			return
		}
		if !filepath.IsAbs(p) {
			add(bad(key, p, "must be an absolute path"))
		}
	}
	absPath("key_file", c.KeyFile, true)
	for i, p := range c.AcceptKeyFiles {
		absPath(fmt.Sprintf("accept_key_files[%d]", i), p, false)
	}
	absPath("paths.state_dir", c.Paths.StateDir, false)
	absPath("realtime.trace_dir", c.Realtime.TraceDir, true)
	absPath("paths.socket", c.Paths.Socket, false)
	if s := c.Paths.Shm; s == "" || strings.ContainsRune(s, '/') || s == "." || s == ".." || len(s) > 255 {
		add(bad("paths.shm", s, "must be a file name under /dev/shm (no '/')"))
	}
	for i, u := range c.API.AllowUsers {
		if u == "" || strings.ContainsAny(u, " \t:") {
			add(bad(fmt.Sprintf("api.allow_users[%d]", i), u, "must be a user name or numeric uid"))
		}
	}
	for i, g := range c.API.AllowGroups {
		if g == "" || strings.ContainsAny(g, " \t:") {
			add(bad(fmt.Sprintf("api.allow_groups[%d]", i), g, "must be a group name or numeric gid"))
		}
	}
	c.validateAPI(add)
	if err := CheckListen(c.Metrics.Listen, c.Metrics.AllowRemote); err != nil {
		add(bad("metrics.listen", c.Metrics.Listen, "%v", err))
	}
	c.validateGuardians(add)
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add(bad("log_level", c.LogLevel, "must be \"debug\", \"info\", \"warn\" or \"error\""))
	}
	c.validShm(add)
	c.validateEvents(add)
	if len(errs) == 0 {
		return nil
	}
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// CheckLoopbackListen accepts "" (no endpoint) or host:port with a loopback
// host (127.0.0.0/8, ::1 or localhost): the endpoint has no authentication.
func CheckLoopbackListen(addr string) error { return CheckListen(addr, false) }

// CheckListen is CheckLoopbackListen, except that with allowRemote any
// host (or none: ":9464") is accepted.
func CheckListen(addr string, allowRemote bool) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("must be host:port: %v", err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("port %q must be a number in 0..65535", port)
	}
	if host == "localhost" || allowRemote {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Unmap().IsLoopback() {
		return fmt.Errorf("must be a loopback address (127.0.0.1, [::1] or localhost): the metrics endpoint has no authentication; to serve another host, set metrics.allow_remote = true and firewall the port")
	}
	return nil
}

// defaultChainNames lists the default plugin chain for an error message.
func defaultChainNames() string {
	var names []string
	for _, p := range plugin.DefaultSpecs() {
		names = append(names, p.Name)
	}
	return strings.Join(names, ", ")
}

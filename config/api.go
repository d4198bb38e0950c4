package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// writeOpNames are the ops an [[api.grants]] table may name.
var writeOpNames = []string{"register", "unregister", "report", "raise", "clear", "set_state", "switchover"}

// SocketFileMode returns SocketMode as a file mode (Validate checked it).
func (a *API) SocketFileMode() os.FileMode {
	m, _ := strconv.ParseUint(a.SocketMode, 8, 32)
	return os.FileMode(m)
}

func (c *Config) validateAPI(add func(*Error)) {
	a := &c.API
	if m, err := strconv.ParseUint(a.SocketMode, 8, 32); err != nil || m&^0o777 != 0 || !strings.HasPrefix(a.SocketMode, "0") {
		add(bad("api.socket_mode", a.SocketMode, "must be an octal permission string like \"0660\""))
	} else if m&0o600 != 0o600 {
		add(bad("api.socket_mode", a.SocketMode, "must let the owner read and write (0600 at least)"))
	}
	for _, kv := range []struct {
		key string
		v   string
	}{{"api.socket_owner", a.SocketOwner}, {"api.socket_group", a.SocketGroup}} {
		if strings.ContainsAny(kv.v, " \t:") {
			add(bad(kv.key, kv.v, "must be a name or numeric id"))
		}
	}
	for i, g := range a.Grants {
		k := fmt.Sprintf("api.grants[%d]", i)
		if len(g.Users) == 0 && len(g.Groups) == 0 {
			add(&Error{Key: k, Reason: "names no users and no groups"})
		}
		for j, op := range g.Ops {
			ok := false
			for _, n := range writeOpNames {
				ok = ok || n == op
			}
			if !ok {
				add(bad(fmt.Sprintf("%s.ops[%d]", k, j), op, "must be one of %s", strings.Join(writeOpNames, ", ")))
			}
		}
	}
	pos := func(key string, v, lo, hi int) {
		if v < lo || v > hi {
			add(bad(key, v, "must be in %d..%d", lo, hi))
		}
	}
	pos("api.max_conns", a.MaxConns, 1, 1<<20)
	pos("api.max_conns_per_uid", a.MaxConnsPerUID, 1, 1<<20)
	pos("api.max_in_flight", a.MaxInFlight, 1, 1<<16)
	pos("api.write_burst", a.WriteBurst, 1, 1<<30)
	if a.MaxConnsPerUID > a.MaxConns {
		add(bad("api.max_conns_per_uid", a.MaxConnsPerUID, "must not be over api.max_conns (%d)", a.MaxConns))
	}
	if !(a.WriteRate > 0 && a.WriteRate <= 1e9) {
		add(bad("api.write_rate", a.WriteRate, "must be a positive number of writes per second"))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"api.idle_timeout", a.IdleTimeout}, {"api.frame_timeout", a.FrameTimeout}} {
		if d.v < 100*time.Millisecond || d.v > 24*time.Hour {
			add(bad(d.key, d.v, "must be in 100ms..24h"))
		}
	}
}

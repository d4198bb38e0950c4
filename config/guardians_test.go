package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDaemonsAndWatchdog(t *testing.T) {
	p := writeConfig(t, `
[watchdog]
device = "auto"
timeout = "60s"
self_fence = true
fence_timeout = "5s"

[[daemons]]
name = "billing"
command = "/bin/sh"
args = ["-c", "sleep 100"]
env = ["A=1"]
critical = true
escalate = "fence"

[[daemons]]
name = "db"
pidfile = "/run/db.pid"
restart = "never"
`)
	c, err := Load(p)
	require.NoError(t, err)
	assert.Equal(t, "auto", c.Watchdog.Device)
	assert.Equal(t, 60*time.Second, c.Watchdog.Timeout)
	assert.Equal(t, FenceOn, c.Watchdog.SelfFence)
	assert.True(t, c.Watchdog.SelfFence.Enabled(false))
	assert.True(t, FenceAuto.Enabled(true))
	assert.False(t, FenceAuto.Enabled(false), "auto: off without a device")
	assert.Equal(t, 5*time.Second, c.Watchdog.FenceTimeout)
	require.Len(t, c.Daemons, 2)
	b := c.Daemons[0]
	assert.Equal(t, []string{"-c", "sleep 100"}, b.Args)
	assert.Equal(t, RestartOnFailure, b.Restart, "default policy")
	assert.Equal(t, DefaultBackoff, b.Backoff)
	assert.Equal(t, DefaultLimit, b.Limit)
	assert.Equal(t, EscalateFence, b.Escalate)
	assert.Equal(t, RestartNever, c.Daemons[1].Restart)
	assert.Equal(t, EscalateAlarm, c.Daemons[1].Escalate)
}

// A bad [[daemons]] table is refused with the file, the line of its header
// (or of the key) and the reason.
func TestDaemonErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		line       int
		reason     string
	}{
		{"no command", "[[daemons]]\nname = \"x\"\n", 1, `daemons[0].command: a daemon needs a command`},
		{"bad name", "[[daemons]]\nname = \"a/b\"\ncommand = \"/bin/true\"\n", 1, `daemons[0].name = "a/b": must be`},
		{"second bad", "[[daemons]]\nname = \"a\"\ncommand = \"/bin/true\"\n\n[[daemons]]\nname = \"b\"\ncommand = \"/bin/true\"\nrestart = \"sometimes\"\n", 5, `daemons[1].restart = "sometimes"`},
		{"duplicate", "[[daemons]]\nname = \"a\"\ncommand = \"/bin/true\"\n[[daemons]]\nname = \"a\"\ncommand = \"/bin/true\"\n", 4, `is also daemons[0]'s name`},
		{"relative command", "[[daemons]]\nname = \"a\"\ncommand = \"true\"\n", 1, `must be an absolute path`},
		{"escalate", "[[daemons]]\nname = \"a\"\ncommand = \"/bin/true\"\nescalate = \"panic\"\n", 1, `daemons[0].escalate = "panic"`},
		{"adopted restart", "[[daemons]]\nname = \"a\"\npidfile = \"/run/a.pid\"\n", 1, `needs a command`},
		{"bare backoff", "[[daemons]]\nname = \"a\"\ncommand = \"/bin/true\"\nbackoff = 5\n", 4, `daemons[0].backoff = 5: must be a duration string`},
		{"unknown daemon key", "[[daemons]]\nname = \"a\"\ncommand = \"/bin/true\"\nretsart = \"always\"\n", 4, `daemons.retsart: unknown key`},
		{"self_fence", "[watchdog]\nself_fence = \"maybe\"\n", 2, `watchdog.self_fence = "maybe"`},
		{"wd timeout", "[watchdog]\ntimeout = \"100ms\"\n", 2, `watchdog.timeout = "100ms": must be between 1s and 1h`},
		{"wd timeout bare", "[watchdog]\ntimeout = 30\n", 2, `must be a duration string`},
		{"fence timeout", "[watchdog]\nfence_timeout = \"10ms\"\n", 2, `watchdog.fence_timeout = "10ms": must be longer than the detection time`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeConfig(t, tc.body)
			_, err := Load(p)
			require.Error(t, err)
			msg := err.Error()
			prefix := fmt.Sprintf("%s:%d", p, tc.line)
			assert.True(t, strings.HasPrefix(msg, prefix), "message %q must start with %q", msg, prefix)
			assert.Contains(t, msg, tc.reason)
			var ce *Error
			require.True(t, errors.As(err, &ce))
		})
	}
}

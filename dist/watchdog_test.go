package dist

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/watchdog"
)

func serviceKeys(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("fmagent.service")
	require.NoError(t, err)
	defer f.Close()
	set := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' || l[0] == '[' {
			continue
		}
		k, v, _ := strings.Cut(l, "=")
		set[k] = v
	}
	require.NoError(t, sc.Err())
	return set
}

// The unit and the code agree on the watchdog: under the unit's
// WatchdogSec, an agent configured with a watchdog device (the default
// timeout) kicks systemd too, from the same guard, well within WatchdogSec;
// the agent's own stall window is shorter than WatchdogSec, so a stalled
// loop is what gets the agent killed, not a slow kick. (Before, an agent
// with a device never sent WATCHDOG=1 and was killed every WatchdogSec.)
func TestUnitWatchdogAgreesWithAgent(t *testing.T) {
	keys := serviceKeys(t)
	sec, err := time.ParseDuration(keys["WatchdogSec"])
	require.NoError(t, err, "WatchdogSec=%q", keys["WatchdogSec"])
	assert.Equal(t, "SIGABRT", keys["WatchdogSignal"])
	assert.Equal(t, "process", keys["KillMode"], "daemons must outlive an agent restart to be adopted")

	// systemd's side: WATCHDOG_USEC from the unit, NOTIFY_SOCKET ours.
	sock := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	require.NoError(t, err)
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", strconv.FormatInt(sec.Microseconds(), 10))
	t.Setenv("WATCHDOG_PID", "")
	sd, err := watchdog.NewSystemd()
	require.NoError(t, err)
	require.Equal(t, sec, sd.Timeout())

	// A device with the configuration's default timeout, kicked together.
	def := config.Default()
	require.True(t, def.Watchdog.Systemd, "systemd's watchdog is kicked by default")
	dev := &watchdog.Fake{T: def.Watchdog.Timeout, Label: "/dev/watchdog0"}
	g := &watchdog.Guard{Kickers: []watchdog.Kicker{dev, sd}, Health: &watchdog.Health{}}
	period := watchdog.PeriodFor(g.Kickers)
	assert.LessOrEqual(t, period, sec/2, "sd_watchdog_enabled(3): notify at least every half WatchdogSec")
	assert.Less(t, period, def.Watchdog.Timeout/2)

	// Kick for two WatchdogSec periods' worth of steps: every step reaches
	// both.
	for i := 0; i < 3; i++ {
		require.True(t, g.Step(time.Now()))
		require.NoError(t, c.SetReadDeadline(time.Now().Add(2*time.Second)))
		b := make([]byte, 32)
		n, err := c.Read(b)
		require.NoError(t, err)
		assert.Equal(t, "WATCHDOG=1", string(b[:n]))
	}
	assert.Equal(t, 3, dev.Kicks())
	assert.Equal(t, period, g.Status().Period)
	assert.Less(t, g.Status().Period, sec, "a stalled loop is noticed before systemd's timeout")
}

package agent

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/config"
)

// The agent refuses, before opening anything, a profile that needs SCHED_FIFO
// when real-time scheduling is switched off (a config built in code, which
// config.Validate did not see); a slower profile starts with a warning.
func TestRtSetupRefusesRealtimeOffForTheFastProfile(t *testing.T) {
	for _, tc := range []struct {
		profile string
		refused bool
	}{{"10ms", true}, {"fast", true}, {"20ms", false}, {"50ms", false}} {
		cfg := config.Default()
		cfg.Timing.Profile = tc.profile
		cfg.Realtime = config.Realtime{Enabled: false, Priority: 10}
		var logs bytes.Buffer
		a := &agent{cfg: cfg, log: slog.New(slog.NewTextHandler(&logs, nil))}
		err := a.rtSetup()
		if tc.refused {
			require.ErrorContains(t, err, `realtime.enabled = false: timing profile "10ms" (2ms × 5) needs SCHED_FIFO`, tc.profile)
			require.ErrorContains(t, err, "set realtime.enabled = true, or choose a slower profile")
			continue
		}
		require.NoError(t, err, tc.profile)
		require.Contains(t, logs.String(), "realtime.enabled = false: the heartbeat thread runs at the normal scheduling policy")
		require.Zero(t, a.rtPrio)
	}
}

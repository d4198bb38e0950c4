package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
)

// Issue 12, "one source for every default": a configuration that sets
// nothing and a core.Config that sets nothing run with the same timing and
// limits (the core's setDefaults and config.Default read core's constants).
func TestDefaultsAreTheCores(t *testing.T) {
	c := Default()
	require.Equal(t, core.DefaultProfile, c.Timing.Profile)
	require.Equal(t, core.DefaultInterval, c.Timing.Interval)
	require.Equal(t, core.DefaultMisses, c.Timing.Misses)
	require.Equal(t, core.DefaultStale, c.Timing.StaleTimeout)
	require.Equal(t, core.DefaultMaxAlarms, c.MaxAlarms)
	require.LessOrEqual(t, c.MaxAlarms, MaxMaxAlarms)
	require.Equal(t, core.MinMisses, MinMisses)

	// The core, given no timing and no limit, takes the same.
	n := core.New(core.Config{Node: 1, Key: []byte("k")}, time.Unix(0, 0))
	require.Equal(t, c.MaxAlarms, n.Table().MaxAlarms())
	p, ok := LookupProfile(ProfileDefault)
	require.True(t, ok)
	require.Equal(t, c.Timing.Detection(), p.Bound())
}

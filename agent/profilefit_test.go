package agent

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/config"
)

// A late tick overruns the profile when the machine's part of it (not a
// yield of the loop's, not a wait for the agent's lock) is longer than
// (misses − 1) × interval; the worst such part is kept whatever its size.
func TestProfileFitCountsTheMachinesOverruns(t *testing.T) {
	ms := time.Millisecond
	tol := fitTolerance(config.Timing{Interval: 2 * ms, Misses: 5})
	require.Equal(t, 8*ms, tol)
	var f profileFit
	for _, c := range []struct {
		name              string
		late, yield, wait time.Duration
		overrun           bool
	}{
		{"woken 5 ms late", 5 * ms, 0, 0, false},
		{"woken 13 ms late: a stalled vCPU", 13 * ms, 0, 0, true},
		{"13 ms late, 10 of them a yield of ours", 13 * ms, 10 * ms, 0, false},
		{"13 ms late, 9 of them waiting for our lock", 13 * ms, 0, 9 * ms, false},
		{"woken exactly at the tolerance", 8 * ms, 0, 0, false},
		{"20 ms late, 2 of them a yield", 20 * ms, 2 * ms, 0, true},
	} {
		tick := lateTick{late: c.late, yield: c.yield, lockWait: c.wait}
		assert.Equal(t, c.overrun, f.observe(&tick, tol), c.name)
	}
	assert.Equal(t, uint64(2), f.overruns.Load())
	assert.Equal(t, 18*ms, time.Duration(f.worst.Load()), "the longest waking part")
}

// The agent warns with the figures and the fastest named profile that
// would hold: at the first overrun, then at most every fitWarnEvery while
// they go on, never with none new.
func TestProfileFitWarnsOnceAWhile(t *testing.T) {
	var buf bytes.Buffer
	a := &agent{log: slog.New(slog.NewTextHandler(&buf, nil)),
		cfg: &config.Config{Timing: config.Timing{Profile: "10ms", Interval: 2 * time.Millisecond, Misses: 5}}}
	t0 := time.Unix(1000, 0)
	warnings := func() int { return strings.Count(buf.String(), fitMsg) }

	a.warnFit(t0)
	assert.Zero(t, warnings(), "no overrun, no warning")

	tick := lateTick{late: 13 * time.Millisecond}
	a.fit.observe(&tick, fitTolerance(a.cfg.Timing))
	a.warnFit(t0.Add(time.Second))
	require.Equal(t, 1, warnings())
	out := buf.String()
	assert.Contains(t, out, "profile=10ms")
	assert.Contains(t, out, "tolerance=8ms")
	assert.Contains(t, out, "worst_wake=13ms")
	assert.Contains(t, out, "overruns=1")
	assert.Contains(t, out, `timing.profile = \"20ms\"`, "the 20 ms profile tolerates 16 ms")

	a.fit.observe(&tick, fitTolerance(a.cfg.Timing))
	a.warnFit(t0.Add(time.Minute))
	assert.Equal(t, 1, warnings(), "within fitWarnEvery: counted, not warned again")
	a.warnFit(t0.Add(time.Second + fitWarnEvery))
	assert.Equal(t, 2, warnings(), "fitWarnEvery later, with a new overrun")
	assert.Contains(t, buf.String(), "overruns=2 new_overruns=1")
	a.warnFit(t0.Add(time.Second + 3*fitWarnEvery))
	assert.Equal(t, 2, warnings(), "nothing new: no warning")
}

func TestFitAdvice(t *testing.T) {
	assert.Contains(t, fitAdvice(13*time.Millisecond), `"20ms"`)
	assert.Contains(t, fitAdvice(16*time.Millisecond), `"50ms"`, "the 20 ms profile tolerates 16 ms: a 16 ms stall is not below it")
	assert.Contains(t, fitAdvice(45*time.Millisecond), "no named profile")
}

// The real-time loop observes a late tick without allocating.
func TestProfileFitObserveAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	var f profileFit
	tick := lateTick{late: 20 * time.Millisecond}
	allocs := testing.AllocsPerRun(1000, func() { f.observe(&tick, 8*time.Millisecond) })
	assert.Zero(t, allocs)
}

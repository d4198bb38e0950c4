package soak

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The probe's summary lines give the worst wake-up over the CPUs and the
// episodes summed; its per-episode lines are not summaries.
func TestParseStallProbe(t *testing.T) {
	out := "cpu 1: at +6.330 s, 100.2 ms late\ncpu 0: worst 2.965 ms, episodes 0\ncpu 1: worst 100.204 ms, episodes 1\n"
	worst, n := parseStallProbe(out)
	assert.Equal(t, 100204*time.Microsecond, worst)
	assert.Equal(t, 1, n)
}

// The probe's episode lines are spans of time from its start.
func TestParseStallEpisodes(t *testing.T) {
	start := time.Unix(1000, 0)
	out := "cpu 1: at +6.330 s, 100.2 ms late\ncpu 0: worst 2.965 ms, episodes 0\ncpu 0: at +7.5 s, 25 ms late\n"
	eps := parseStallEpisodes(out, start)
	require.Len(t, eps, 2)
	assert.Equal(t, start.Add(6330*time.Millisecond), eps[0].to)
	assert.Equal(t, start.Add(6330*time.Millisecond-100200*time.Microsecond), eps[0].from)
	assert.Equal(t, start.Add(7475*time.Millisecond), eps[1].from)
}

// Overlapping silences are one; a silence counts as the machine's when a
// stall, widened by the tolerance, overlaps it.
func TestAttributeSilences(t *testing.T) {
	at := func(ms int) time.Time { return time.Unix(0, 0).Add(time.Duration(ms) * time.Millisecond) }
	silences := []span{
		{at(1000), at(1100)}, // one agent on network a ...
		{at(1005), at(1102)}, // ... and on b: one silence, in the stall below
		{at(2000), at(2030)}, // ends 10 ms before the stall starts: in it within 15 ms
		{at(5000), at(5040)}, // the agents' own
		{at(4950), at(4990)}, // before it, apart: its own too
	}
	stalls := []span{{at(1000), at(1101)}, {at(2040), at(2100)}}
	merged, inStall := attribute(silences, stalls, 15*time.Millisecond)
	assert.Equal(t, 4, merged)
	assert.Equal(t, 2, inStall)
	merged, inStall = attribute(silences, nil, 15*time.Millisecond)
	assert.Equal(t, 4, merged)
	assert.Zero(t, inStall)
	merged, _ = attribute(nil, stalls, time.Millisecond)
	assert.Zero(t, merged)
}

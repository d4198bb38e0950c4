package soak

import (
	"strings"
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
// stall, widened by the tolerance, overlaps it, and otherwise as a silent
// agent's own when one of its late ticks overlaps it.
func TestAttributeSilences(t *testing.T) {
	at := func(ms int) time.Time { return time.Unix(0, 0).Add(time.Duration(ms) * time.Millisecond) }
	sil := func(from, to, node int) silence { return silence{span{at(from), at(to)}, node} }
	silences := []silence{
		sil(1000, 1100, 1), // one agent on network a ...
		sil(1005, 1102, 1), // ... and on b: one silence, in the stall below
		sil(2000, 2030, 2), // ends 10 ms before the stall starts: in it within 15 ms
		sil(5000, 5040, 3), // agent 3's own, in its late tick
		sil(4950, 4990, 4), // before it, apart: agent 4's, which logged no late tick
		sil(7000, 7030, 5), // agent 5's and agent 1's at once: one silence, ...
		sil(7010, 7040, 1), // ... in agent 1's late tick
		sil(8000, 8030, 2), // agent 2's, while agent 3 was late: unexplained
	}
	stalls := []span{{at(1000), at(1101)}, {at(2040), at(2100)}}
	late := []lateTick{
		{span{at(5008), at(5039)}, 3, "yield"},
		{span{at(1000), at(1100)}, 1, "wake"}, // in the machine's stall: the machine's
		{span{at(7012), at(7038)}, 1, "lock_wait"},
		{span{at(8000), at(8030)}, 3, "yield"},
	}
	a := attribute(silences, stalls, late, 15*time.Millisecond, 5*time.Millisecond)
	assert.Equal(t, 6, a.merged)
	assert.Equal(t, 2, a.inStall)
	assert.Equal(t, map[string]int{"yield": 1, "lock_wait": 1}, a.ownLate)
	a = attribute(silences, nil, nil, 15*time.Millisecond, 5*time.Millisecond)
	assert.Equal(t, 6, a.merged)
	assert.Zero(t, a.inStall)
	assert.Empty(t, a.ownLate)
	a = attribute(nil, stalls, late, time.Millisecond, time.Millisecond)
	assert.Zero(t, a.merged)
}

// An agent's late ticks are read from its JSON log: the lines with the
// late-tick message, with their deadline, lateness and cause.
func TestParseLateTicks(t *testing.T) {
	log := `{"time":"2026-12-01T21:00:00Z","level":"INFO","msg":"serving"}
{"time":"2026-12-01T21:00:01Z","level":"WARN","msg":"real-time loop late: this node's heartbeat went out late, and its peers heard it silent as long","due":"2026-12-01T21:00:00.5Z","late":23000000,"in_yield":22000000,"in_lock_wait":0,"waking":1000000,"cause":"yield","hint":"h"}
not json real-time loop late:
{"time":"2026-12-01T21:00:01Z","level":"WARN","msg":"real-time loop late again: further late ticks this second","ticks":3}
`
	got, err := parseLateTicks(strings.NewReader(log), 4)
	require.NoError(t, err)
	require.Len(t, got, 1)
	due := time.Date(2026, 12, 1, 21, 0, 0, 5e8, time.UTC)
	assert.True(t, due.Equal(got[0].from))
	assert.True(t, due.Add(23*time.Millisecond).Equal(got[0].to))
	assert.Equal(t, 4, got[0].node)
	assert.Equal(t, "yield", got[0].cause)
}

package soak

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The probe's summary lines give the worst wake-up over the CPUs and the
// episodes summed; its per-episode lines are not summaries.
func TestParseStallProbe(t *testing.T) {
	out := "cpu 1: at +6.330 s, 100.2 ms late\ncpu 0: worst 2.965 ms, episodes 0\ncpu 1: worst 100.204 ms, episodes 1\n"
	worst, n := parseStallProbe(out)
	assert.Equal(t, 100204*time.Microsecond, worst)
	assert.Equal(t, 1, n)
}

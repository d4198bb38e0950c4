package agent

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fmagent_gc_pauses_total counts every stop-the-world pause under +Inf,
// cumulatively (never fewer under a larger bound), and grows with each
// collection: a soak takes the difference of two scrapes.
func TestGCPauseCounts(t *testing.T) {
	runtime.GC()
	before := gcPauseCounts(gcPauseBounds)
	runtime.GC()
	runtime.GC()
	after := gcPauseCounts(gcPauseBounds)
	require.Len(t, after, len(gcPauseBounds))
	assert.Equal(t, "+Inf", gcPauseLabels[len(gcPauseLabels)-1])
	for i := 1; i < len(after); i++ {
		assert.GreaterOrEqual(t, after[i], after[i-1], "cumulative: bound %s", gcPauseLabels[i])
	}
	assert.GreaterOrEqual(t, after[len(after)-1]-before[len(before)-1], uint64(2), "two collections, at least two pauses")
}

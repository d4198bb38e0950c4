package soak

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Only what happened between the two scrapes counts: a late start-up (in
// the 0.05 bucket before the hog) is not the hog's.
func TestWindowQuantiles(t *testing.T) {
	before := map[string]float64{
		`x_bucket{le="0.001"}`: 100, `x_bucket{le="0.01"}`: 100, `x_bucket{le="0.05"}`: 101, `x_bucket{le="+Inf"}`: 101,
	}
	after := map[string]float64{
		`x_bucket{le="0.001"}`: 290, `x_bucket{le="0.01"}`: 299, `x_bucket{le="0.05"}`: 301, `x_bucket{le="+Inf"}`: 301,
		`other{le="1"}`: 7,
	}
	mx, p99 := windowQuantiles(before, after, "x_bucket", "le")
	assert.Equal(t, 0.05, mx, "one observation of the window in the 0.05 bucket")
	assert.Equal(t, 0.01, p99, "199 of 200 at most 0.01")

	after[`x_bucket{le="0.05"}`] = 300 // the late one was before
	after[`x_bucket{le="+Inf"}`] = 300
	mx, _ = windowQuantiles(before, after, "x_bucket", "le")
	assert.Equal(t, 0.01, mx)

	after[`x_bucket{le="+Inf"}`] = 302 // one beyond every finite bound
	mx, _ = windowQuantiles(before, after, "x_bucket", "le")
	assert.True(t, math.IsInf(mx, 1))

	mx, p99 = windowQuantiles(before, before, "x_bucket", "le")
	assert.Zero(t, mx)
	assert.Zero(t, p99)
	mx, _ = windowQuantiles(nil, map[string]float64{}, "x_bucket", "le")
	assert.Zero(t, mx)
}

// Between two scrapes, the observations above a bucket's bound are the
// window's +Inf count less its count at that bound.
func TestWindowCountAbove(t *testing.T) {
	const h = "fmagent_rt_yield_seconds_bucket"
	before := map[string]float64{h + `{le="0.01"}`: 100, h + `{le="0.05"}`: 101, h + `{le="+Inf"}`: 102}
	after := map[string]float64{h + `{le="0.01"}`: 300, h + `{le="0.05"}`: 304, h + `{le="+Inf"}`: 306}
	assert.Equal(t, 4.0, windowCountAbove(before, after, h, "le", "0.01"))
	assert.Equal(t, 1.0, windowCountAbove(before, after, h, "le", "0.05"))
	assert.Zero(t, windowCountAbove(before, after, h, "le", "0.02"), "no such bucket")
}

package bench

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Dist is a set of latency samples.
type Dist []time.Duration

// Quantile returns the q-quantile (0 < q <= 1) by the nearest-rank method:
// the smallest sample with at least q of the samples at or below it. With
// 200 samples p99 is the third largest, with 30 it is the largest.
func (d Dist) Quantile(q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	k := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(k, len(s)-1))]
}

// P50, P90, P99 and Max are the usual quantiles.
func (d Dist) P50() time.Duration { return d.Quantile(0.50) }
func (d Dist) P90() time.Duration { return d.Quantile(0.90) }
func (d Dist) P99() time.Duration { return d.Quantile(0.99) }
func (d Dist) Max() time.Duration { return d.Quantile(1) }

// String is "p50 … p90 … p99 … max … (n=…)".
func (d Dist) String() string {
	if len(d) == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %8s  p90 %8s  p99 %8s  max %8s  (n=%d)",
		FormatDuration(d.P50()), FormatDuration(d.P90()), FormatDuration(d.P99()), FormatDuration(d.Max()), len(d))
}

// FormatDuration prints a duration in µs below 10 ms, in ms above.
func FormatDuration(d time.Duration) string {
	if d < 10*time.Millisecond && d > -10*time.Millisecond {
		return fmt.Sprintf("%.0fµs", float64(d)/1e3)
	}
	return fmt.Sprintf("%.1fms", float64(d)/1e6)
}

// Ratio is a/b, 0 if b is 0.
func Ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

package plugin_test

import (
	"testing"

	"github.com/fmagent/fmagent/agent/plugin"
)

// BenchmarkChainRunFullHistory is the worst case of the default chain: every
// one of the History's reports is inside the window (a storm of 400 fault
// reports a second), and each new fault makes threshold and blame scan all of
// them. With a quiet history a Run costs well under a microsecond.
func BenchmarkChainRunFullHistory(b *testing.B) {
	v := cluster(b, 5)
	var view plugin.View = v
	c := plugin.DefaultChain()
	out := make([]plugin.Verdict, 0, 8)
	rs := []*plugin.Report{v.fault(1, svc, "slow"), v.fault(3, procDB, "slow"), v.fault(4, svc, "slow")}
	for i := range plugin.DefaultHistorySize {
		c.Run(view, rs[i%len(rs)], out[:0])
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		v.now++
		r := rs[i%len(rs)]
		r.At = v.now
		out = c.Run(view, r, out[:0])
	}
}

// BenchmarkChainRunQuiet is the usual case: a few reports in the window.
func BenchmarkChainRunQuiet(b *testing.B) {
	v := cluster(b, 5)
	var view plugin.View = v
	c := plugin.DefaultChain()
	out := make([]plugin.Verdict, 0, 8)
	r := v.fault(4, svc, "slow")
	b.ReportAllocs()
	for b.Loop() {
		v.now += 6e9 // at most two reports in a 10 s window: threshold and blame pass
		r.At = v.now
		out = c.Run(view, r, out[:0])
	}
}

package core_test

import (
	"fmt"
	"testing"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/wire"
)

// BenchmarkApplySnapshot is a follower receiving the whole table (it
// joined, or rejoined after it was declared down) and replacing its own
// with it: every chunk stepped, the last one applying the table, on the
// real-time loop.
func BenchmarkApplySnapshot(b *testing.B) {
	for _, size := range []int{1024, 4096} {
		b.Run(fmt.Sprintf("entities=%d", size), func(b *testing.B) {
			p := newLoadedPair(b, size)
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				var pkts [][]byte
				core.SendSnapshot(p.a, 2)
				for _, pk := range p.a.Ready().Packets {
					pkts = append(pkts, append([]byte(nil), pk.Data...))
				}
				b.StartTimer()
				core.WantSnapshot(p.b)
				for _, d := range pkts {
					stepAny(p.b, p.now, wire.NetA, d)
				}
				if rd := p.b.Ready(); !rd.Reset {
					b.Fatalf("the snapshot (%d datagrams) was not applied", len(pkts))
				}
			}
		})
	}
}

package core_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/wire"
)

// newLoadedPair is a formed pair whose table holds about size entities:
// the two nodes and their links, and processes registered by node 2 (half
// of them with an alarm), so that the master's tick is measured against
// the table a real cluster carries, not the benchmark's handful.
func newLoadedPair(tb testing.TB, size int) *pair {
	cfg := func(id wire.NodeID) core.Config {
		return core.Config{Node: id, Cluster: 9, Key: []byte("k"), Priority: 100, Eligible: true,
			MaxEntities: size + 64, MaxEntitiesPerOwner: size + 64}
	}
	p := &pair{a: core.New(cfg(1), t0), b: core.New(cfg(2), t0), now: t0, results: map[wire.NodeID][]core.Result{}}
	p.run(200 * time.Millisecond)
	require.Equal(tb, wire.RoleMaster, p.a.Role().Role)
	for i := p.a.Table().Len(); i < size; i++ {
		name := fmt.Sprintf("node/2/proc/%d", i)
		p.b.Submit(p.now, core.Request{Kind: wire.ReportRegister, Name: name, EntityKind: wire.KindProcess})
		if i%2 == 0 {
			p.b.Submit(p.now, core.Request{Kind: wire.ReportRaise, Name: name, EntityKind: wire.KindProcess, Severity: wire.SevMinor, Cause: "slow"})
		}
		if i%64 == 0 {
			p.flush()
		}
	}
	p.flush()
	p.run(20 * time.Millisecond)
	require.GreaterOrEqual(tb, p.a.Table().Len(), size)
	require.Equal(tb, p.a.Table().Digest(), p.b.Table().Digest())
	return p
}

// BenchmarkMasterTick is the master's steady-state tick (its heartbeat,
// the peers judged, membership, links and alarms kept) against the size
// of the table: the real-time loop runs it every interval, before anything
// it sends.
//
// cache=cold evicts the CPU's caches before every tick (outside the
// timing), as the milliseconds between two ticks of a busy node do.
func BenchmarkMasterTick(b *testing.B) {
	evict := make([]byte, 64<<20)
	for _, cache := range []string{"warm", "cold"} {
		for _, size := range []int{16, 1024, 4096, 16384} {
			b.Run(fmt.Sprintf("cache=%s/entities=%d", cache, size), func(b *testing.B) {
				p := newLoadedPair(b, size)
				now := p.now
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					if cache == "cold" {
						b.StopTimer()
						for i := 0; i < len(evict); i += 64 {
							evict[i]++
						}
						b.StartTimer()
					}
					// Within the detection time of the last heartbeat
					// from node 2: the steady state, nothing judged.
					now = now.Add(time.Microsecond)
					p.a.Tick(now)
					p.a.Ready()
				}
			})
		}
	}
}

// BenchmarkSendSnapshot is the master's answer to a node that needs the
// whole table (a node that joins or rejoins, or one further behind than
// the retransmit ring): the table walked, encoded into datagrams and each
// sealed, on the real-time loop.
func BenchmarkSendSnapshot(b *testing.B) {
	for _, size := range []int{1024, 4096} {
		b.Run(fmt.Sprintf("entities=%d", size), func(b *testing.B) {
			p := newLoadedPair(b, size)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				core.SendSnapshot(p.a, 2)
				if rd := p.a.Ready(); len(rd.Packets) == 0 {
					b.Fatal("no snapshot sent")
				}
			}
		})
	}
}

// BenchmarkReassertLedger is the tick at which a node re-asserts what its
// clients registered (after every master change): 800 registrations of
// node 2's, queued and sent to the master in one tick.
func BenchmarkReassertLedger(b *testing.B) {
	p := newLoadedPair(b, 800)
	require.Positive(b, core.LedgerLen(p.b))
	b.ResetTimer()
	for range b.N {
		core.DirtyLedger(p.b)
		p.now = p.now.Add(time.Millisecond)
		p.b.Tick(p.now)
		b.StopTimer()
		p.flush() // the master answers; nothing left outstanding
		b.StartTimer()
	}
}

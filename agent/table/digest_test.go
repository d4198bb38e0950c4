package table_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// versioned is randomChange with, half the time, a write version, so that
// the entities' Ver and Born and the alarms' Ver move too, and a third of
// the registers flagged implicit.
func versioned(r *rand.Rand, seq uint64) *wire.Change {
	c := randomChange(r, seq)
	if c.Kind == wire.ChangeRegister && r.IntN(3) == 0 {
		c.Flags |= wire.ChangeImplicit
	}
	if r.IntN(2) == 0 {
		c.Ver = wire.WriteVersion{Epoch: uint64(r.IntN(3) + 1), Seq: seq, Node: wire.NodeID(r.IntN(3) + 1)}
	}
	return c
}

// digestHistory applies a random history to a table: changes of every kind
// over a small name space, now and then a Reset (a follower about to take a
// snapshot) or a rebuild of the table from its own SnapshotChanges (every
// entity new, and unhashed). After each step it calls step with the table
// and whether the history asks for a digest now: after 1 change, or 2, 3,
// 7, 30 or 200 (so entities change many times, and come and go, between
// two digests).
func digestHistory(t *testing.T, seed uint64, step func(tb *table.Table, at string, digest bool)) {
	gaps := []int{1, 1, 1, 2, 3, 7, 30, 200}
	r := rand.New(rand.NewPCG(seed, 3))
	tb := table.New(3)
	var snap []wire.Change
	seq := uint64(0)
	next := 1
	for i := 1; i <= 1500; i++ {
		at := fmt.Sprintf("seed %d step %d", seed, i)
		switch r.IntN(300) {
		case 0:
			tb.Reset()
			seq = 0
		case 1:
			snap = tb.SnapshotChanges(snap[:0])
			tb.Reset()
			for j := range snap {
				require.NoError(t, tb.Apply(&snap[j]), at)
			}
			tb.SetSeq(seq)
		}
		seq++
		if tb.Apply(versioned(r, seq)) != nil {
			seq-- // refused: the master would not have ordered it
		}
		next--
		step(tb, at, next == 0)
		if next == 0 {
			next = gaps[r.IntN(len(gaps))]
		}
	}
}

// TestDigestIncremental: the digest kept up to date change by change equals
// the one computed from every entity afresh, and the one of another table
// rebuilt from the first one's snapshot (on which every entity is new), at
// random points of random histories.
func TestDigestIncremental(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		r := rand.New(rand.NewPCG(seed, 4))
		other := table.New(3)
		var snap []wire.Change
		digestHistory(t, seed, func(tb *table.Table, at string, digest bool) {
			if !digest {
				return
			}
			d := tb.Digest()
			require.Equal(t, tb.DigestFromScratch(), d, at)
			require.Equal(t, d, tb.Digest(), "%s: cached", at)
			if r.IntN(4) == 0 {
				snap = tb.SnapshotChanges(snap[:0])
				other.Reset()
				for i := range snap {
					require.NoError(t, other.Apply(&snap[i]), at)
				}
				other.SetSeq(tb.Seq())
				require.Equal(t, d, other.Digest(), "%s: rebuilt from the snapshot", at)
			}
		})
	}
}

// TestDigestBookkeeping: between digests too, the dirty list holds exactly
// the entities changed since they were last hashed (each in the table, once),
// and the sum is that of the entities' hashes.
func TestDigestBookkeeping(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		digestHistory(t, seed, func(tb *table.Table, at string, digest bool) {
			require.NoError(t, tb.CheckDigestState(), at)
			if digest {
				_ = tb.Digest()
				require.NoError(t, tb.CheckDigestState(), "%s: after Digest", at)
			}
		})
	}
}

// TestDirtyListBounded: entities that come and go while nobody asks for a
// digest are not kept by the dirty list (a node nobody polls).
func TestDirtyListBounded(t *testing.T) {
	tb := table.New(3)
	for i := range 10000 {
		n := fmt.Sprintf("svc/%d", i)
		require.NoError(t, tb.Apply(reg(n, wire.KindService, 1, wire.StateUp, 1)))
		require.NoError(t, tb.Apply(raise(n, "x", wire.SevMinor)))
		if i%3 != 0 {
			require.NoError(t, tb.Apply(unreg(n)))
		}
	}
	require.NoError(t, tb.CheckDigestState()) // at most Len entities listed
	require.Equal(t, tb.DigestFromScratch(), tb.Digest())
}

// BenchmarkDigest: a table of 4,096 entities with one alarm each, one entity
// changed and then the digest taken, as when Status is polled while the
// table changes. apply-only is the change alone, for what Apply costs.
func BenchmarkDigest(b *testing.B) {
	const n = 4096
	tb := table.New(4)
	names := make([]string, n)
	seq := uint64(0)
	for i := range names {
		names[i] = fmt.Sprintf("node/%d/proc/p%04d", i%16+1, i)
		seq++
		if err := tb.Apply(at(reg(names[i], wire.KindProcess, wire.NodeID(i%16+1), wire.StateUp, 1), seq, int64(seq), 1)); err != nil {
			b.Fatal(err)
		}
		seq++
		if err := tb.Apply(at(raise(names[i], "heartbeat-missed", wire.SevMajor), seq, int64(seq), 1)); err != nil {
			b.Fatal(err)
		}
	}
	// Each entity's state flips every time its turn comes: a real change.
	changes := make([][2]*wire.Change, n)
	for i := range changes {
		changes[i][0] = state(names[i], wire.StateDown, 1)
		changes[i][1] = state(names[i], wire.StateUp, 1)
	}
	for _, bc := range []struct {
		name   string
		digest bool
	}{{"one-changed", true}, {"apply-only", false}} {
		b.Run(bc.name, func(b *testing.B) {
			_ = tb.Digest()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				c := changes[i%n][(i/n)%2]
				seq++
				c.Seq, c.At = seq, int64(seq)
				if err := tb.Apply(c); err != nil {
					b.Fatal(err)
				}
				if bc.digest {
					_ = tb.Digest()
				}
				i++
			}
		})
	}
}

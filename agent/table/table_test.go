package table_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// Change builders. Seq and At are filled in by the caller where they matter.

func reg(name string, kind wire.EntityKind, owner wire.NodeID, st wire.State, inc uint64) *wire.Change {
	return &wire.Change{
		Kind: wire.ChangeRegister, Entity: table.ID(name), Name: []byte(name),
		EntityKind: kind, Owner: owner, State: st, Incarnation: inc,
	}
}

func state(name string, st wire.State, inc uint64) *wire.Change {
	return &wire.Change{Kind: wire.ChangeState, Entity: table.ID(name), State: st, Incarnation: inc}
}

func raise(name, cause string, sev wire.Severity) *wire.Change {
	return &wire.Change{Kind: wire.ChangeRaise, Entity: table.ID(name), Cause: []byte(cause), Severity: sev}
}

func clearA(name, cause string) *wire.Change {
	return &wire.Change{Kind: wire.ChangeClear, Entity: table.ID(name), Cause: []byte(cause)}
}

func unreg(name string) *wire.Change {
	return &wire.Change{Kind: wire.ChangeUnregister, Entity: table.ID(name)}
}

func at(c *wire.Change, seq uint64, t int64, by wire.NodeID) *wire.Change {
	c.Seq, c.At, c.By = seq, t, by
	return c
}

func TestNames(t *testing.T) {
	assert.Equal(t, "node/3", table.NodeName(3))
	assert.Equal(t, "node/3/link/a", table.LinkName(3, wire.NetA))
	assert.Equal(t, "node/42/link/b", table.LinkName(42, wire.NetB))
	assert.Equal(t, "node/7/proc/sshd", table.ProcName(7, "sshd"))
	for _, n := range []wire.NodeID{0, 1, 9, 10, 4294967295} {
		assert.Equal(t, table.ID(table.NodeName(n)), table.NodeEntityID(n))
		for _, net := range []wire.Net{wire.NetA, wire.NetB} {
			assert.Equal(t, table.ID(table.LinkName(n, net)), table.LinkEntityID(n, net))
		}
	}
	allocs := testing.AllocsPerRun(100, func() {
		_ = table.NodeEntityID(12345)
		_ = table.LinkEntityID(12345, wire.NetB)
	})
	assert.Zero(t, allocs, "NodeEntityID/LinkEntityID are on the core's hot path")
}

// TestApply runs sequences of changes against a fresh table (max 2 alarms)
// and checks each change's error and the final entity.
func TestApply(t *testing.T) {
	const svc = "svc/billing"
	type step struct {
		c   *wire.Change
		err error
	}
	tests := []struct {
		name  string
		steps []step
		check func(t *testing.T, tb *table.Table)
	}{
		{
			name:  "register creates",
			steps: []step{{reg(svc, wire.KindService, 3, wire.StateUp, 7), nil}},
			check: func(t *testing.T, tb *table.Table) {
				e, ok := tb.Lookup(svc)
				require.True(t, ok)
				assert.Equal(t, table.ID(svc), e.ID)
				assert.Equal(t, svc, e.Name)
				assert.Equal(t, wire.KindService, e.Kind)
				assert.Equal(t, wire.NodeID(3), e.Owner)
				assert.Equal(t, wire.StateUp, e.State)
				assert.Equal(t, uint64(7), e.Incarnation)
			},
		},
		{
			name: "re-register same name updates and keeps alarms",
			steps: []step{
				{reg(svc, wire.KindService, 3, wire.StateUp, 1), nil},
				{raise(svc, "overload", wire.SevMajor), nil},
				{reg(svc, wire.KindCustom, 4, wire.StateDown, 2), nil},
			},
			check: func(t *testing.T, tb *table.Table) {
				e, _ := tb.Lookup(svc)
				assert.Equal(t, wire.KindCustom, e.Kind)
				assert.Equal(t, wire.NodeID(4), e.Owner)
				assert.Equal(t, wire.StateDown, e.State)
				assert.Equal(t, uint64(2), e.Incarnation)
				require.Len(t, e.Alarms, 1)
				assert.Equal(t, 1, tb.Len())
			},
		},
		{
			name: "state sets state and incarnation",
			steps: []step{
				{reg(svc, wire.KindService, 3, wire.StateUp, 1), nil},
				{state(svc, wire.StateDown, 5), nil},
			},
			check: func(t *testing.T, tb *table.Table) {
				e, _ := tb.Lookup(svc)
				assert.Equal(t, wire.StateDown, e.State)
				assert.Equal(t, uint64(5), e.Incarnation)
			},
		},
		{
			name: "alarms sorted by cause, refresh keeps origin, limit refuses new causes",
			steps: []step{
				{reg(svc, wire.KindService, 3, wire.StateUp, 1), nil},
				{at(raise(svc, "zeta", wire.SevMinor), 2, 200, 5), nil},
				{at(raise(svc, "alpha", wire.SevMajor), 3, 300, 6), nil},
				{raise(svc, "mid", wire.SevMajor), table.ErrTooManyAlarms},
				{at(raise(svc, "zeta", wire.SevCritical), 4, 400, 7), nil},
			},
			check: func(t *testing.T, tb *table.Table) {
				e, _ := tb.Lookup(svc)
				require.Len(t, e.Alarms, 2)
				assert.Equal(t, "alpha", e.Alarms[0].Cause)
				assert.Equal(t, "zeta", e.Alarms[1].Cause)
				z := e.Alarms[1]
				assert.Equal(t, wire.SevCritical, z.Severity)
				assert.Equal(t, int64(200), z.RaisedAt, "refresh keeps the first raise time")
				assert.Equal(t, wire.NodeID(5), z.RaisedBy)
				assert.Equal(t, uint64(4), z.Seq)
				assert.Equal(t, uint64(4), tb.Seq())
			},
		},
		{
			name: "clear removes; clearing an absent alarm is a no-op",
			steps: []step{
				{reg(svc, wire.KindService, 3, wire.StateUp, 1), nil},
				{raise(svc, "a", wire.SevMinor), nil},
				{raise(svc, "b", wire.SevMinor), nil},
				{clearA(svc, "a"), nil},
				{clearA(svc, "a"), nil},
				{clearA(svc, "never"), nil},
			},
			check: func(t *testing.T, tb *table.Table) {
				e, _ := tb.Lookup(svc)
				require.Len(t, e.Alarms, 1)
				assert.Equal(t, "b", e.Alarms[0].Cause)
				_, ok := e.Alarm("a")
				assert.False(t, ok)
				_, ok = e.Alarm("b")
				assert.True(t, ok)
			},
		},
		{
			name: "unregister removes",
			steps: []step{
				{reg(svc, wire.KindService, 3, wire.StateUp, 1), nil},
				{unreg(svc), nil},
				{unreg(svc), nil}, // absent: a tombstone, not an error
			},
			check: func(t *testing.T, tb *table.Table) {
				_, ok := tb.Lookup(svc)
				assert.False(t, ok)
				assert.Zero(t, tb.Len())
			},
		},
		{
			name: "changes against an unknown entity",
			steps: []step{
				{state(svc, wire.StateDown, 1), table.ErrUnknownEntity},
				{raise(svc, "x", wire.SevMinor), table.ErrUnknownEntity},
				{clearA(svc, "x"), nil}, // tombstones: a clear or unregister
				{unreg(svc), nil},       // of what is absent is remembered
			},
			check: func(t *testing.T, tb *table.Table) { assert.Zero(t, tb.Len()) },
		},
		{
			name: "register with an ID that is not the name's hash",
			steps: []step{
				{reg(svc, wire.KindService, 3, wire.StateUp, 1), nil},
				{&wire.Change{Kind: wire.ChangeRegister, Entity: table.ID(svc), Name: []byte("svc/other"),
					EntityKind: wire.KindService, State: wire.StateUp}, table.ErrBadID},
			},
			check: func(t *testing.T, tb *table.Table) {
				e, _ := tb.Lookup(svc)
				assert.Equal(t, svc, e.Name)
				_, ok := tb.Lookup("svc/other")
				assert.False(t, ok)
			},
		},
		{
			name: "malformed changes",
			steps: []step{
				{reg(svc, wire.KindService, 3, wire.StateUp, 1), nil},
				{reg("", wire.KindService, 3, wire.StateUp, 1), table.ErrInvalid},
				{reg(string(make([]byte, wire.MaxName+1)), wire.KindService, 3, wire.StateUp, 1), table.ErrInvalid},
				{reg("svc/x", 0, 3, wire.StateUp, 1), table.ErrInvalid},
				{reg("svc/x", wire.KindService, 3, 0, 1), table.ErrInvalid},
				{state(svc, 9, 1), table.ErrInvalid},
				{raise(svc, "", wire.SevMinor), table.ErrInvalid},
				{raise(svc, string(make([]byte, wire.MaxCause+1)), wire.SevMinor), table.ErrInvalid},
				{raise(svc, "x", 0), table.ErrInvalid},
				{raise(svc, "x", wire.SevCritical+1), table.ErrInvalid},
				{clearA(svc, ""), table.ErrInvalid},
				{&wire.Change{Kind: 0, Entity: table.ID(svc)}, table.ErrInvalid},
				{&wire.Change{Kind: wire.ChangeUnregister + 1, Entity: table.ID(svc)}, table.ErrInvalid},
			},
			check: func(t *testing.T, tb *table.Table) {
				assert.Equal(t, 1, tb.Len())
				e, _ := tb.Lookup(svc)
				assert.Empty(t, e.Alarms)
				assert.Equal(t, wire.StateUp, e.State)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := table.New(2)
			for i, s := range tc.steps {
				before := tb.Digest()
				seq := tb.Seq()
				assert.ErrorIs(t, tb.Check(s.c), s.err, "check step %d", i)
				assert.Equal(t, before, tb.Digest(), "Check must not change the table (step %d)", i)
				err := tb.Apply(s.c)
				if s.err == nil {
					require.NoError(t, err, "step %d", i)
					continue
				}
				require.ErrorIs(t, err, s.err, "step %d", i)
				assert.Equal(t, before, tb.Digest(), "a refused change changes nothing (step %d)", i)
				assert.Equal(t, seq, tb.Seq(), "a refused change does not advance seq (step %d)", i)
			}
			tc.check(t, tb)
		})
	}
}

func TestApplyRecordsChange(t *testing.T) {
	tb := table.New(0)
	assert.Equal(t, table.DefaultMaxAlarms, tb.MaxAlarms())
	require.NoError(t, tb.Apply(at(reg("node/1", wire.KindNode, 1, wire.StateUp, 1), 10, 1000, 1)))
	require.NoError(t, tb.Apply(at(state("node/1", wire.StateDown, 1), 11, 2000, 2)))
	e, _ := tb.Get(table.NodeEntityID(1))
	assert.Equal(t, int64(2000), e.ChangedAt)
	assert.Equal(t, uint64(11), e.ChangedSeq)
	assert.Equal(t, wire.NodeID(2), e.ChangedBy)
	assert.Equal(t, uint64(11), tb.Seq())

	// Seq never goes backwards, and a no-op clear still advances it.
	require.NoError(t, tb.Apply(at(clearA("node/1", "none"), 5, 3000, 2)))
	assert.Equal(t, uint64(11), tb.Seq())
	require.NoError(t, tb.Apply(at(clearA("node/1", "none"), 12, 3000, 2)))
	assert.Equal(t, uint64(12), tb.Seq())
	assert.Equal(t, uint64(11), e.ChangedSeq, "a no-op clear leaves the entity alone")

	tb.SetSeq(100)
	assert.Equal(t, uint64(100), tb.Seq())
}

func TestRegisterIsIdempotent(t *testing.T) {
	tb := table.New(4)
	c := at(reg("node/2/proc/db", wire.KindProcess, 2, wire.StateUp, 3), 1, 10, 2)
	require.NoError(t, tb.Apply(c))
	require.NoError(t, tb.Apply(at(raise("node/2/proc/db", "slow", wire.SevMinor), 2, 20, 4)))
	d := tb.Digest()
	// The owner re-asserts after a failover: same content, same digest.
	require.NoError(t, tb.Apply(at(reg("node/2/proc/db", wire.KindProcess, 2, wire.StateUp, 3), 3, 30, 2)))
	require.NoError(t, tb.Apply(at(raise("node/2/proc/db", "slow", wire.SevMinor), 4, 40, 2)))
	assert.Equal(t, d, tb.Digest())
	assert.Equal(t, 1, tb.Len())
}

func TestRangeAndContained(t *testing.T) {
	tb := table.New(4)
	names := []string{
		table.NodeName(1), table.LinkName(1, wire.NetA), table.LinkName(1, wire.NetB),
		table.ProcName(1, "sshd"), "svc/owned-by-1",
		table.NodeName(2), table.LinkName(2, wire.NetA),
	}
	owners := []wire.NodeID{1, 1, 1, 1, 1, 2, 2}
	for i, n := range names {
		require.NoError(t, tb.Apply(reg(n, wire.KindCustom, owners[i], wire.StateUp, 1)))
	}
	var ids []uint64
	tb.Range(func(e *table.Entity) bool { ids = append(ids, e.ID); return true })
	require.Len(t, ids, len(names))
	assert.IsIncreasing(t, ids)

	n := 0
	tb.Range(func(*table.Entity) bool { n++; return n < 3 })
	assert.Equal(t, 3, n, "Range stops when fn returns false")

	got := tb.Contained(1, nil)
	assert.IsIncreasing(t, got)
	want := []uint64{table.ID(names[1]), table.ID(names[2]), table.ID(names[3]), table.ID(names[4])}
	assert.ElementsMatch(t, want, got)
	assert.NotContains(t, got, table.NodeEntityID(1))
	assert.Equal(t, []uint64{table.LinkEntityID(2, wire.NetA)}, tb.Contained(2, nil))
	assert.Empty(t, tb.Contained(3, nil))

	buf := make([]uint64, 0, 8)
	assert.Zero(t, testing.AllocsPerRun(100, func() { buf = tb.Contained(1, buf[:0]) }))
}

func TestLookupWrongName(t *testing.T) {
	tb := table.New(1)
	require.NoError(t, tb.Apply(reg("svc/a", wire.KindService, 1, wire.StateUp, 1)))
	_, ok := tb.Lookup("svc/b")
	assert.False(t, ok)
	_, ok = tb.Get(table.ID("svc/b"))
	assert.False(t, ok)
}

// TestDigestSensitivity: every replicated field moves the digest.
func TestDigestSensitivity(t *testing.T) {
	base := func() *table.Table {
		tb := table.New(4)
		require.NoError(t, tb.Apply(at(reg("svc/a", wire.KindService, 1, wire.StateUp, 1), 1, 10, 1)))
		require.NoError(t, tb.Apply(at(raise("svc/a", "x", wire.SevMinor), 2, 20, 1)))
		return tb
	}
	ref := base().Digest()
	assert.Equal(t, ref, base().Digest(), "same changes, same digest")

	variants := map[string]*wire.Change{
		"state":       state("svc/a", wire.StateDown, 1),
		"incarnation": state("svc/a", wire.StateUp, 2),
		"owner":       reg("svc/a", wire.KindService, 2, wire.StateUp, 1),
		"kind":        reg("svc/a", wire.KindCustom, 1, wire.StateUp, 1),
		"severity":    raise("svc/a", "x", wire.SevMajor),
		"new alarm":   raise("svc/a", "y", wire.SevMinor),
		"clear":       clearA("svc/a", "x"),
		"new entity":  reg("svc/b", wire.KindService, 1, wire.StateUp, 1),
		"unregister":  unreg("svc/a"),
	}
	for name, c := range variants {
		tb := base()
		require.NoError(t, tb.Apply(c), name)
		assert.NotEqual(t, ref, tb.Digest(), name)
	}

	// Alarm origin: raised at another time or by another node.
	for name, c := range map[string]*wire.Change{
		"raised-at": at(raise("svc/a", "x", wire.SevMinor), 2, 21, 1),
		"raised-by": at(raise("svc/a", "x", wire.SevMinor), 2, 20, 9),
	} {
		tb := table.New(4)
		require.NoError(t, tb.Apply(at(reg("svc/a", wire.KindService, 1, wire.StateUp, 1), 1, 10, 1)))
		require.NoError(t, tb.Apply(c))
		assert.NotEqual(t, ref, tb.Digest(), name)
	}

	// A renamed entity (a different name) never has the same digest.
	tb := table.New(4)
	require.NoError(t, tb.Apply(at(reg("svc/A", wire.KindService, 1, wire.StateUp, 1), 1, 10, 1)))
	require.NoError(t, tb.Apply(at(raise("svc/A", "x", wire.SevMinor), 2, 20, 1)))
	assert.NotEqual(t, ref, tb.Digest())
}

func TestDigestAllocs(t *testing.T) {
	tb := table.New(4)
	for i := range 50 {
		n := fmt.Sprintf("svc/%d", i)
		require.NoError(t, tb.Apply(reg(n, wire.KindService, 1, wire.StateUp, 1)))
		require.NoError(t, tb.Apply(raise(n, "some-rather-long-cause", wire.SevMinor)))
	}
	noop := clearA("svc/1", "absent")
	_ = tb.Digest()
	allocs := testing.AllocsPerRun(100, func() {
		require.NoError(t, tb.Apply(noop)) // invalidates the cached digest
		_ = tb.Digest()
	})
	assert.Zero(t, allocs)
}

// randomChange returns a change over a small name space, so registers,
// re-registers, raises, clears and unregisters all collide often.
func randomChange(r *rand.Rand, seq uint64) *wire.Change {
	name := fmt.Sprintf("node/%d/proc/p%d", r.IntN(3)+1, r.IntN(8))
	cause := fmt.Sprintf("cause-%d", r.IntN(6))
	var c *wire.Change
	switch r.IntN(6) {
	case 0, 1:
		c = reg(name, wire.EntityKind(r.IntN(5)+1), wire.NodeID(r.IntN(3)+1),
			wire.State(r.IntN(2)+1), uint64(r.IntN(4)))
	case 2:
		c = state(name, wire.State(r.IntN(2)+1), uint64(r.IntN(4)))
	case 3:
		c = raise(name, cause, wire.Severity(r.IntN(5)+1))
	case 4:
		c = clearA(name, cause)
	default:
		c = unreg(name)
	}
	return at(c, seq, int64(seq)*1000, wire.NodeID(r.IntN(3)+1))
}

// TestSnapshotRebuild: random changes on A; B rebuilt from A's snapshot has
// A's digest, entities and seq, at every stage.
func TestSnapshotRebuild(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		r := rand.New(rand.NewPCG(seed, 0))
		a := table.New(3)
		b := table.New(3)
		var snap []wire.Change
		seq := uint64(0)
		for round := range 20 {
			for range 25 {
				seq++
				if a.Apply(randomChange(r, seq)) != nil {
					seq-- // refused: the master would not have ordered it
				}
			}
			snap = a.SnapshotChanges(snap[:0])
			for i := range snap {
				require.Equal(t, a.Seq(), snap[i].Seq)
			}
			b.Reset()
			require.Zero(t, b.Len())
			for i := range snap {
				require.NoError(t, b.Apply(&snap[i]), "seed %d round %d change %d", seed, round, i)
			}
			b.SetSeq(a.Seq())
			require.Equal(t, a.Digest(), b.Digest(), "seed %d round %d", seed, round)
			require.Equal(t, a.Len(), b.Len())
			require.Equal(t, a.Seq(), b.Seq())
			a.Range(func(ea *table.Entity) bool {
				eb, ok := b.Get(ea.ID)
				require.True(t, ok)
				assert.Equal(t, ea.Name, eb.Name)
				assert.Equal(t, ea.State, eb.State)
				require.Equal(t, len(ea.Alarms), len(eb.Alarms))
				for i := range ea.Alarms {
					assert.Equal(t, ea.Alarms[i].Cause, eb.Alarms[i].Cause)
					assert.Equal(t, ea.Alarms[i].RaisedAt, eb.Alarms[i].RaisedAt)
					assert.Equal(t, ea.Alarms[i].RaisedBy, eb.Alarms[i].RaisedBy)
				}
				return true
			})
		}
	}
}

// TestSameChangesSameDigest: two tables fed the same random stream agree, and
// a single extra change makes them disagree.
func TestSameChangesSameDigest(t *testing.T) {
	r1 := rand.New(rand.NewPCG(7, 7))
	r2 := rand.New(rand.NewPCG(7, 7))
	a, b := table.New(3), table.New(3)
	for seq := uint64(1); seq <= 500; seq++ {
		ea := a.Apply(randomChange(r1, seq))
		eb := b.Apply(randomChange(r2, seq))
		require.Equal(t, ea, eb)
		require.Equal(t, a.Digest(), b.Digest())
	}
	require.NoError(t, b.Apply(reg("svc/extra", wire.KindService, 1, wire.StateUp, 1)))
	assert.NotEqual(t, a.Digest(), b.Digest())
}

func TestReset(t *testing.T) {
	tb := table.New(2)
	empty := tb.Digest()
	require.NoError(t, tb.Apply(at(reg("svc/a", wire.KindService, 1, wire.StateUp, 1), 9, 1, 1)))
	assert.NotEqual(t, empty, tb.Digest())
	tb.Reset()
	assert.Zero(t, tb.Len())
	assert.Zero(t, tb.Seq())
	assert.Equal(t, empty, tb.Digest())
	_, ok := tb.Lookup("svc/a")
	assert.False(t, ok)
	assert.Empty(t, tb.SnapshotChanges(nil))
	require.NoError(t, tb.Apply(reg("svc/a", wire.KindService, 1, wire.StateUp, 1)))
	assert.Equal(t, 1, tb.Len())
}

// TestIndexesFollowTheTable: after every change of a random history (kinds
// and owners changed by registering again, unregisters, a reset midway),
// RangeNodes walks exactly the node entities Range finds, in the same
// order, and Owned counts exactly what a walk counts.
func TestIndexesFollowTheTable(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		r := rand.New(rand.NewPCG(seed, 1))
		tb := table.New(3)
		for seq := uint64(1); seq <= 400; seq++ {
			if seq == 200 {
				tb.Reset()
			}
			_ = tb.Apply(randomChange(r, seq)) // refused changes change nothing
			var want, got []uint64
			owned := map[wire.NodeID]int{}
			tb.Range(func(e *table.Entity) bool {
				switch e.Kind {
				case wire.KindNode:
					want = append(want, e.ID)
				case wire.KindLink:
				default:
					owned[e.Owner]++
				}
				return true
			})
			tb.RangeNodes(func(e *table.Entity) bool {
				got = append(got, e.ID)
				assert.Equal(t, wire.KindNode, e.Kind)
				return true
			})
			require.Equal(t, want, got, "seed %d seq %d: the node index", seed, seq)
			for o := wire.NodeID(0); o <= 4; o++ {
				require.Equal(t, owned[o], tb.Owned(o), "seed %d seq %d: entities owned by %d", seed, seq, o)
			}
		}
	}
	tb := table.New(3)
	for _, id := range []wire.NodeID{3, 1, 2} {
		require.NoError(t, tb.Apply(reg(table.NodeName(id), wire.KindNode, id, wire.StateUp, 1)))
	}
	n := 0
	tb.RangeNodes(func(*table.Entity) bool { n++; return n < 2 })
	assert.Equal(t, 2, n, "RangeNodes stops when fn returns false")
}

package agent

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/wire"
)

// registerRows puts n service entities of node 2 straight into a's table
// (as a snapshot would have), from seq on, and returns the next seq.
func registerRows(tb testing.TB, a *agent, prefix string, n int, seq uint64) uint64 {
	tb.Helper()
	tab := a.core.Table()
	for i := range n {
		name := fmt.Sprintf("%s/%d", prefix, i)
		seq++
		require.NoError(tb, tab.Apply(&wire.Change{Seq: seq, Kind: wire.ChangeRegister, Entity: table.ID(name), Name: []byte(name),
			EntityKind: wire.KindService, Owner: 2, State: wire.StateUp, Incarnation: 1, At: int64(seq), By: 1}))
	}
	return seq
}

// After a snapshot replaced the table, shared memory is the table: what
// changed in any field the segment shows (a change of ChangedBy or of an
// alarm's RaisedBy alone included) is written, what is gone is removed,
// what is new is added; and only those make journal entries, however many
// entities are published again unchanged.
func TestResetPublishIsTheTable(t *testing.T) {
	a, _ := soloAgent(t)
	a.mu.Lock()
	defer a.mu.Unlock()
	tab := a.core.Table()
	seq := registerRows(t, a, "svc", 300, tab.Seq())
	e := func(i int) *table.Entity {
		x, ok := tab.Get(table.ID(fmt.Sprintf("svc/%d", i)))
		require.True(t, ok)
		return x
	}
	seq++
	require.NoError(t, tab.Apply(&wire.Change{Seq: seq, Kind: wire.ChangeRaise, Entity: e(4).ID, Cause: []byte("hot"),
		Severity: wire.SevMajor, At: 5, By: 3}))
	a.publish(&core.Ready{Reset: true})

	// What a new master's snapshot may bring: changes of every field
	// the segment shows, some without a new seq.
	e(1).State = wire.StateDown
	e(2).ChangedBy = 7
	e(3).ChangedAt++
	e(4).Alarms[0].RaisedBy = 5
	seq++
	require.NoError(t, tab.Apply(&wire.Change{Seq: seq, Kind: wire.ChangeRaise, Entity: e(5).ID, Cause: []byte("cold"),
		Severity: wire.SevMinor, At: 6, By: 3}))
	for i := 10; i < 20; i++ {
		seq++
		require.NoError(t, tab.Apply(&wire.Change{Seq: seq, Kind: wire.ChangeUnregister, Entity: e(i).ID}))
	}
	registerRows(t, a, "new", 5, seq)
	before := a.journal.cursor
	a.publish(&core.Ready{Reset: true})
	// The journal as when every entity was published again: e(1)'s
	// state, e(5)'s alarm, 10 gone, 5 new (a change of who made a change
	// or of its time alone is in the segment, not news).
	require.Equal(t, uint64(1+1+10+5), a.journal.cursor-before, "journal entries")

	r, err := shmem.Open(a.cfg.ShmPath())
	require.NoError(t, err)
	defer r.Close()
	got, _, err := r.Snapshot(nil)
	require.NoError(t, err)
	require.Equal(t, tab.Len(), len(got), "entities in the segment")
	var want shmem.Entity
	for i := range got {
		x, ok := tab.Get(got[i].ID)
		require.True(t, ok, "%s in the segment, not in the table", got[i].NameString())
		toShm(x, &want)
		require.True(t, want.Equal(&got[i]), "%s: segment %+v, table %+v", x.Name, got[i], want)
	}
}

// BenchmarkResetPublish is the publication of a table a snapshot replaced,
// 4,096 entities, on the real-time loop: rejoin=unchanged is a node that
// gets the same table again (it was declared down and rejoins: every
// entity equal to what it published), first=... is the first table a node
// gets (every entity new to its segment, its staging and the agent's
// shadow grow once; a new agent each time, so the segment's pages are
// touched for the first time too, which an agent with mlockall has done
// when it created the segment).
func BenchmarkResetPublish(b *testing.B) {
	b.Run("rejoin=unchanged", func(b *testing.B) {
		a, _ := soloAgent(b)
		a.mu.Lock()
		defer a.mu.Unlock()
		registerRows(b, a, "svc", 4096, a.core.Table().Seq())
		a.publish(&core.Ready{Reset: true})
		b.ReportAllocs()
		for b.Loop() {
			a.publish(&core.Ready{Reset: true})
		}
	})
	b.Run("first", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			a, _ := soloAgent(b)
			a.mu.Lock()
			registerRows(b, a, "svc", 4096, a.core.Table().Seq())
			b.StartTimer()
			a.publish(&core.Ready{Reset: true})
			b.StopTimer()
			a.mu.Unlock()
			b.StartTimer()
		}
	})
}

package agent

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/wire"
)

// loadedTable is a table of size process entities, every other one with
// two alarms.
func loadedTable(tb testing.TB, size int) *table.Table {
	t := table.New(8)
	fillTable(tb, t, size)
	return t
}

// fillTable adds to t what loadedTable holds.
func fillTable(tb testing.TB, t *table.Table, size int) {
	seq := t.Seq()
	apply := func(c *wire.Change) {
		seq++
		c.Seq = seq
		require.NoError(tb, t.Apply(c))
	}
	for i := range size {
		name := fmt.Sprintf("node/2/proc/%d", i)
		apply(&wire.Change{Kind: wire.ChangeRegister, Entity: table.ID(name), Name: []byte(name), EntityKind: wire.KindProcess,
			Owner: 2, State: wire.StateUp, Incarnation: 1})
		if i%2 == 0 {
			for _, cause := range []string{"b-slow", "d-full"} {
				apply(&wire.Change{Kind: wire.ChangeRaise, Entity: table.ID(name), Cause: []byte(cause), Severity: wire.SevMinor})
			}
		}
	}
}

// A row copy is the table as it was when copied: the changes applied
// after it (an alarm refreshed and one removed, which Apply does in place
// in the entity's alarm slice, alarms inserted, a state change, an
// unregister) do not show in it.
func TestRowCopyIsTheTableWhenCopied(t *testing.T) {
	tab := loadedTable(t, 64)
	rc := newRowCopy()
	defer rc.release()
	var want []api.Entity
	tab.Range(func(e *table.Entity) bool {
		rc.add(e)
		want = append(want, toAPI(e))
		return true
	})
	seq := tab.Seq()
	tab.Range(func(e *table.Entity) bool {
		for _, c := range []wire.Change{
			// In place first (a refresh, then a removal that shifts the
			// rest down in the same array), before an insertion may move
			// the alarms to a new one.
			{Kind: wire.ChangeRaise, Entity: e.ID, Cause: []byte("d-full"), Severity: wire.SevCritical},
			{Kind: wire.ChangeClear, Entity: e.ID, Cause: []byte("b-slow")},
			{Kind: wire.ChangeRaise, Entity: e.ID, Cause: []byte("a-first"), Severity: wire.SevMajor},
			{Kind: wire.ChangeRaise, Entity: e.ID, Cause: []byte("c-mid"), Severity: wire.SevCritical},
			{Kind: wire.ChangeState, Entity: e.ID, State: wire.StateDown, Incarnation: 1},
		} {
			seq++
			c.Seq = seq
			require.NoError(t, tab.Apply(&c))
		}
		return true
	})
	name := "node/2/proc/3"
	seq++
	require.NoError(t, tab.Apply(&wire.Change{Kind: wire.ChangeUnregister, Entity: table.ID(name), Seq: seq}))

	rows := rc.entities()
	require.Len(t, rows, len(want))
	for i := range rows {
		require.Equal(t, want[i], toAPI(&rows[i]), "row %d", i)
	}
}

// BenchmarkListLockHeld is how long a list of the whole table holds the
// agent's lock (which the real-time loop takes at every wake-up), 4,096
// entities: convert=under-lock is how List was (every entity turned into
// the API's type while the lock was held), after-copy how it is (the rows
// copied into the buffers of the last list, turned into the API's type
// after).
func BenchmarkListLockHeld(b *testing.B) {
	tab := loadedTable(b, 4096)
	b.Run("convert=under-lock", func(b *testing.B) {
		for range b.N {
			var out []api.Entity
			tab.Range(func(e *table.Entity) bool { out = append(out, toAPI(e)); return true })
		}
	})
	b.Run("convert=after-copy", func(b *testing.B) {
		for range b.N {
			rc := newRowCopy()
			tab.Range(func(e *table.Entity) bool { rc.add(e); return true })
			b.StopTimer()
			rc.release()
			b.StartTimer()
		}
	})
	// after-gc: a collection between two lists, as a list flood's garbage
	// makes happen; only the copy (what the lock covers) is timed. Run
	// with -benchtime Nx: the collections are not timed but are slow.
	b.Run("convert=after-copy/after-gc", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			runtime.GC()
			rc := newRowCopy() // before the lock, as List does
			b.StartTimer()
			tab.Range(func(e *table.Entity) bool { rc.add(e); return true })
			b.StopTimer()
			rc.release()
			b.StartTimer()
		}
	})
}

// BenchmarkTableSaveLockHeld is the table save's work at 4,096 entities:
// step=copy-all is what it did under the agent's lock at every save until
// the evening of 2 December 2026 (copyTable's walk of the whole table), and
// still does at the first save and after a snapshot; step=copy-changes what
// it does at the others (16 entities changed since the last save);
// step=encode what it did there too until 2 December 2026 and does after
// the lock is released now (mergeCopy and encodeTable; encode-all after a
// whole copy).
func BenchmarkTableSaveLockHeld(b *testing.B) {
	a := &agent{}
	a.core = core.New(core.Config{Node: 1, Cluster: 9, Key: []byte("k"), Priority: 100, Eligible: true}, time.Now())
	tab := a.core.Table()
	fillTable(b, tab, 4096)
	ts := &a.tsave
	var changed []uint64
	tab.Range(func(e *table.Entity) bool {
		if len(changed) < 16 {
			changed = append(changed, e.ID)
		}
		return true
	})
	for _, step := range []string{"copy-all", "copy-changes"} {
		b.Run("step="+step, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				ts.full = step == "copy-all"
				ts.changed = append(ts.changed[:0], changed...)
				a.copyTable()
				b.StopTimer()
				a.mergeCopy()
				b.StartTimer()
			}
		})
	}
	// Off the lock: the changes merged into the saver's copy and the
	// table encoded (encode), or a whole table's copy merged and encoded
	// (encode-all).
	for _, step := range []string{"encode", "encode-all"} {
		b.Run("step="+step, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				b.StopTimer()
				ts.full = step == "encode-all"
				ts.changed = append(ts.changed[:0], changed...)
				a.copyTable()
				b.StartTimer()
				a.mergeCopy()
				if _, err := a.encodeTable(tableHeader{seq: tab.Seq()}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// bulkAgent is an agent with just what queueBulk uses: the bulk sender's
// queues and one peer's addresses.
func bulkAgent(peer wire.NodeID) *agent {
	a := &agent{bulkq: make(chan *bulkJob, 4)}
	a.bulkFree = make(chan *bulkJob, cap(a.bulkq)+1)
	for n := range a.addrs {
		a.addrs[n] = map[wire.NodeID]netip.AddrPort{peer: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(40000+n))}
	}
	return a
}

// BenchmarkQueueBulk is the real-time loop's copy of a snapshot (300
// datagrams of 1,400 bytes, about 4,000 entities) for the bulk sender:
// job=given-back fills a job the sender gave back, as the agent does;
// job=new a new one each time (allocated at the packets' size at once).
func BenchmarkQueueBulk(b *testing.B) {
	const peer = wire.NodeID(2)
	rd := &core.Ready{}
	for range 300 {
		rd.Packets = append(rd.Packets, core.Packet{To: peer, Nets: 1<<wire.NumNets - 1, Data: make([]byte, 1400)})
	}
	for _, back := range []bool{true, false} {
		name := "job=new"
		if back {
			name = "job=given-back"
		}
		b.Run(name, func(b *testing.B) {
			a := bulkAgent(peer)
			b.ReportAllocs()
			for range b.N {
				a.queueBulk(rd)
				if job := <-a.bulkq; back {
					a.bulkDone(job)
				}
			}
		})
	}
}

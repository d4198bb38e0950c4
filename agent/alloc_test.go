package agent

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/persist"
	"github.com/fmagent/fmagent/wire"
)

// soloAgent starts (without its goroutines) a one-node agent that may form
// a cluster alone, and drives its core by hand until it is master.
func soloAgent(t testing.TB) (*agent, time.Time) {
	t.Helper()
	ga, gb, port := testNet(t)
	cfg := newTestConfig(t, 1, uint32(rand.IntN(1<<30)+1000), ga, gb, port, t.TempDir())
	cfg.AllowAlone = true
	a := &agent{cfg: cfg, log: slog.New(slog.DiscardHandler)}
	require.NoError(t, a.start())
	t.Cleanup(func() {
		a.ln.Close()
		a.closeAll()
	})
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := 0; i < 100 && a.core.Role().Master != a.self; i++ {
		now = now.Add(10 * time.Millisecond)
		a.core.Tick(now)
		a.handleReady()
	}
	require.Equal(t, a.self, a.core.Role().Master, "a lone node with allow_alone becomes master")
	return a, now
}

// allocAgent is soloAgent for counting allocations, with a.mu held until
// the test ends. Under the race detector, whose instrumentation allocates,
// the count means nothing and the test is skipped.
func allocAgent(t *testing.T) (*agent, time.Time) {
	t.Helper()
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	a, now := soloAgent(t)
	a.mu.Lock()
	t.Cleanup(a.mu.Unlock)
	return a, now
}

// Publishing a changed entity to shared memory allocates nothing.
func TestPublishAllocs(t *testing.T) {
	a, _ := allocAgent(t)
	id := table.NodeEntityID(a.self)
	_, ok := a.core.Table().Get(id)
	require.True(t, ok)
	rd := &core.Ready{Changed: []uint64{id, id}}
	a.publish(rd)
	seq := a.shm.Seq()
	allocs := testing.AllocsPerRun(200, func() { a.publish(rd) })
	require.Zero(t, allocs, "allocations per publish")
	require.Greater(t, a.shm.Seq(), seq, "every publish commits")
}

// Stepping a peer's heartbeat and handling the Ready allocates nothing.
func TestReceivePathAllocs(t *testing.T) {
	a, now := allocAgent(t)
	codec := wire.NewCodec(a.cfg.ClusterID, config.InsecureKey(a.cfg.ClusterID))
	const n = 400
	pkts := make([][]byte, n)
	for i := range pkts {
		h := wire.Header{Sender: 2, Incarnation: 7, Seq: uint64(i + 1)}
		hb := wire.Heartbeat{Role: wire.RoleMember, Priority: 50, Eligible: true, Master: a.self}
		var err error
		pkts[i], err = codec.AppendHeartbeat(nil, &h, &hb)
		require.NoError(t, err)
	}
	i := 0
	step := func() {
		now = now.Add(100 * time.Microsecond)
		_, err := a.core.StepHeartbeat(now, wire.NetA, pkts[i])
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		a.addrs[wire.NetA][2] = a.tr.LocalAddr(wire.NetA)
		a.handleReady()
		i++
	}
	// Warm up: the peer comes up, the master registers it.
	for range 50 {
		step()
	}
	a.core.Tick(now)
	a.handleReady()
	for range 50 {
		step()
	}
	allocs := testing.AllocsPerRun(200, step)
	require.Zero(t, allocs, "allocations per received heartbeat")
}

// Copying the table for its save (under the agent's lock: the whole table,
// or the rows changed since the last save), merging the copy into the
// saver's own and encoding it (off the lock) allocate nothing once the
// buffers have grown.
func TestEncodeTableAllocs(t *testing.T) {
	a, now := allocAgent(t)
	var ids []uint64
	for i := range 50 {
		name := fmt.Sprintf("svc/e%d", i)
		a.core.Submit(now, core.Request{Kind: wire.ReportRegister, Name: name, EntityKind: wire.KindService})
		a.core.Submit(now, core.Request{Kind: wire.ReportRaise, Name: name, EntityKind: wire.KindService, Severity: wire.SevMajor, Cause: "c"})
		a.handleReady()
		ids = append(ids, table.ID(name))
	}
	require.Greater(t, a.core.Table().Len(), 50)
	save := func(full bool) []byte {
		ts := &a.tsave
		ts.full = full
		ts.changed = append(ts.changed[:0], ids[:10]...)
		_, hdr := a.copyTable()
		if !a.mergeCopy() {
			t.Fatal("the saver's copy disagrees with the table")
		}
		b, err := a.encodeTable(hdr)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tb, err := persist.DecodeTable(save(true))
	require.NoError(t, err)
	require.Len(t, tb.Entities, a.core.Table().Len())
	require.Equal(t, a.core.Table().Seq(), tb.Seq)
	for _, full := range []bool{true, false} {
		allocs := testing.AllocsPerRun(50, func() { save(full) })
		require.Zero(t, allocs, "allocations per table save's copy and encoding (whole table: %v)", full)
	}
}

// A snapshot's packets handed to the bulk sender are copied, on the
// real-time loop, into a job the sender gave back: once one has come back
// big enough, nothing is allocated; and each packet is copied whole, to
// every network it is for.
func TestQueueBulkAllocs(t *testing.T) {
	a, _ := allocAgent(t)
	const peer = wire.NodeID(2)
	for n := range a.addrs {
		a.addrs[n][peer] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(40000+n))
	}
	rd := &core.Ready{}
	for i := range 2 * bulkMin {
		data := make([]byte, 1000+i)
		data[0], data[len(data)-1] = byte(i), byte(i)
		rd.Packets = append(rd.Packets, core.Packet{To: peer, Nets: 1<<wire.NumNets - 1, Data: data})
	}
	rd.Packets = append(rd.Packets, core.Packet{To: peer, Prio: true, Nets: 1, Data: []byte("not bulk")})
	sendOne := func() *bulkJob {
		a.queueBulk(rd)
		job := <-a.bulkq
		a.bulkDone(job) // as bulkLoop does once it has sent them
		return job
	}
	job := sendOne()
	require.Len(t, job.pkts, 2*bulkMin*wire.NumNets)
	for _, p := range job.pkts {
		got := job.data[p.off : p.off+p.n]
		i := int(got[0])
		require.Equal(t, rd.Packets[i].Data, got, "packet %d", i)
		require.Equal(t, a.addrs[p.net][peer], p.to)
	}
	require.Zero(t, testing.AllocsPerRun(50, func() { sendOne() }), "allocations per queued snapshot")
}

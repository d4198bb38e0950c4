package agent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/persist"
	"github.com/fmagent/fmagent/wire"
)

// On the fake network (bindtest): what is tested is when the agents save
// the table, not sockets.
//
// Issue 13: every change woke each eligible node's table saver at once and
// cost a save and an fsync per change, on every node, at the moment the
// table's readers were woken. A burst of changes no client of a node waits
// for is now saved on that node once when it begins (at the real-time
// loop's next tick) and then at most every tableSaveEvery while it lasts;
// its end reaches every node's disk all the same. The writer's own node
// still saves each write before answering it.
func TestTableSavedOncePerPollWhileChangesLast(t *testing.T) {
	tc, _ := startFakeClusterWith(t, 3, func(c *config.Config) {
		c.Metrics.Listen = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	})
	waitFormed(t, tc)
	saves := func(nd *testNode) float64 {
		return metricsOf(t, nd.cfg.Metrics.Listen)["fmagent_table_saves_total"]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	writer := tc.nodes[0]
	c := writer.client(t)
	const name = "svc/burst"
	_, err := c.Register(ctx, name, client.KindService)
	require.NoError(t, err)
	// Settle: the registration's saves are done when every node's count
	// holds still for a few polls.
	before := make([]float64, len(tc.nodes))
	require.Eventually(t, func() bool {
		same := true
		for i, nd := range tc.nodes {
			n := saves(nd)
			same = same && n == before[i]
			before[i] = n
		}
		return same
	}, 5*time.Second, 5*tableSaveEvery)

	const changes = 60
	start := time.Now()
	for i := range changes {
		st := client.StateDown
		if i%2 == 1 {
			st = client.StateUp
		}
		_, err := c.SetState(ctx, name, st)
		require.NoError(t, err)
	}
	burst := time.Since(start)
	// The last change (up) on every node's disk, though no client of the
	// other nodes waited for it.
	for _, nd := range tc.nodes {
		require.Eventually(t, func() bool {
			tab, err := persist.LoadTable(nd.cfg.Paths.StateDir)
			if err != nil || tab == nil {
				return false
			}
			for _, e := range tab.Entities {
				if e.Name == name {
					return wire.State(e.State) == wire.StateUp
				}
			}
			return false
		}, 5*time.Second, 10*time.Millisecond, "node %d: the burst's last change on disk", nd.id)
	}
	time.Sleep(3 * tableSaveEvery) // the last polls, which find nothing
	// One save at the burst's start, one a poll while it lasted, and the
	// poll after its end that found its last changes.
	bound := 2 + float64(burst/tableSaveEvery) + 1
	for _, nd := range tc.nodes {
		n := saves(nd) - before[nd.id-1]
		if nd == writer {
			require.GreaterOrEqual(t, n, float64(changes), "the writer's node saves each write before answering it")
			continue
		}
		require.LessOrEqual(t, n, bound, "node %d: %v saves for %d changes in %v", nd.id, n, changes, burst)
		require.Positive(t, n, "node %d", nd.id)
	}
	t.Logf("%d changes in %v: at most %v saves on the other nodes", changes, burst, bound)
}

// The loop hands the table saver's kick and a membership state to the
// agent's other threads only once the segment's readers have had the
// CPUs: not within quietAfterPublish of the last commit, unless the
// hand-off has waited quietMax (commits that never stop).
func TestHandOffWaitsForTheReaders(t *testing.T) {
	a := &agent{saveq: make(chan core.Persist, 1)}
	a.tsave.kick = make(chan struct{}, 1)
	kicked := func() bool {
		select {
		case <-a.tsave.kick:
			return true
		default:
			return false
		}
	}
	queued := func() (core.Persist, bool) {
		select {
		case st := <-a.saveq:
			return st, true
		default:
			return core.Persist{}, false
		}
	}
	t0 := time.Unix(1000, 0)

	// A commit, the table dirty, a membership state kept: nothing handed
	// over within quietAfterPublish of the commit.
	a.lastPub = t0
	a.tsave.dirty.Store(true)
	a.saveLater(&core.Persist{Incarnation: 7, Generation: 3, Members: []wire.NodeID{1, 2}})
	_, q := queued()
	require.False(t, q, "saveLater keeps the state for the loop")
	a.handOffQuiet(t0.Add(quietAfterPublish / 2))
	require.False(t, kicked(), "no kick right after a commit")
	_, q = queued()
	require.False(t, q, "no membership hand-off right after a commit")

	// Once the readers have had their time: both at the next tick.
	a.handOffQuiet(t0.Add(quietAfterPublish))
	require.True(t, kicked(), "the saver kicked once quiet")
	st, q := queued()
	require.True(t, q, "the membership state handed over once quiet")
	require.Equal(t, uint64(3), st.Generation)
	require.Equal(t, []wire.NodeID{1, 2}, st.Members)

	// Nothing pending: nothing to do, whatever the time.
	a.tsave.dirty.Store(false)
	a.handOffQuiet(t0.Add(time.Second))
	require.False(t, kicked())
	require.True(t, a.handOffSince.IsZero())

	// Commits that never stop: the hand-off waits at most quietMax.
	a.tsave.dirty.Store(true)
	start := t0.Add(2 * time.Second)
	for at := start; at.Sub(start) < quietMax; at = at.Add(time.Millisecond) {
		a.lastPub = at
		a.handOffQuiet(at)
		require.False(t, kicked(), "held back %v after the first try", at.Sub(start))
	}
	a.lastPub = start.Add(quietMax)
	a.handOffQuiet(start.Add(quietMax))
	require.True(t, kicked(), "kicked after quietMax although a commit was just made")

	// The saver already polling needs no kick.
	a.tsave.polling.Store(true)
	a.handOffQuiet(t0.Add(10 * time.Second))
	require.False(t, kicked())
}

// The table save copies only what changed since the last save into the
// saver's own copy of the table: after any history (registrations, alarms
// raised and cleared, states, unregistrations, a snapshot replacing the
// table), and with saves between a change's Submit (which applies it to
// the master's table) and the handling of its Ready, every save is the
// table as it was when copied, and the saver's copy never needed its
// safety net (a whole copy when its count is wrong).
func TestTableSaveFollowsTheTable(t *testing.T) {
	a, now := soloAgent(t)
	a.tsave.on = true
	a.mu.Lock()
	defer a.mu.Unlock()
	rng := rand.New(rand.NewPCG(7, 13))
	kinds := []wire.ReportKind{wire.ReportRegister, wire.ReportRaise, wire.ReportClear, wire.ReportDown, wire.ReportUp, wire.ReportUnregister}
	saves, full := 0, 0
	for step := range 3000 {
		name := fmt.Sprintf("svc/%d", rng.IntN(200))
		k := kinds[rng.IntN(len(kinds))]
		a.core.Submit(now, core.Request{Kind: k, Name: name, EntityKind: wire.KindService,
			Cause: fmt.Sprintf("c%d", rng.IntN(3)), Severity: wire.SevMinor})
		// The loop handles the Ready before the save, or after it (the
		// master applied the change at Submit: it is in the table).
		readyFirst := rng.IntN(2) == 0
		if readyFirst {
			a.handleReady()
		}
		if rng.IntN(500) == 0 {
			a.tableChanged(&core.Ready{Reset: true}) // as a snapshot's
			full++
		}
		if rng.IntN(20) != 0 {
			if !readyFirst {
				a.handleReady()
			}
			continue
		}
		saves++
		_, hdr := a.copyTable()
		require.True(t, a.mergeCopy(), "step %d: the saver's copy has %d rows, the table %d", step, len(a.tsave.mirror), a.core.Table().Len())
		b, err := a.encodeTable(hdr)
		require.NoError(t, err)
		got, err := persist.DecodeTable(b)
		require.NoError(t, err)
		var want []persist.Entity
		a.core.Table().Range(func(e *table.Entity) bool {
			var pe persist.Entity
			persistRow(e, &pe)
			want = append(want, pe)
			return true
		})
		require.Equal(t, want, got.Entities, "step %d: the saved table", step)
		require.Equal(t, a.core.Table().Seq(), got.Seq)
		if !readyFirst {
			a.handleReady()
		}
	}
	require.Greater(t, saves, 100)
	require.Positive(t, full)
}

package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

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

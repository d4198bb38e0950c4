package agent

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/config"
	fmmetrics "github.com/fmagent/fmagent/metrics"
	"github.com/fmagent/fmagent/transport"
)

// fmagent_gc_pauses_total and fmagent_gc_stopping_total count every
// stop-the-world pause under +Inf, cumulatively (never fewer under a larger
// bound), and grow with each collection: a soak takes the difference of two
// scrapes.
func TestGCPauseCounts(t *testing.T) {
	for _, name := range []string{gcPausesTotal, gcPausesStopping} {
		runtime.GC()
		before := gcPauseCounts(name, gcPauseBounds)
		runtime.GC()
		runtime.GC()
		after := gcPauseCounts(name, gcPauseBounds)
		require.Len(t, after, len(gcPauseBounds))
		assert.Equal(t, "+Inf", gcPauseLabels[len(gcPauseLabels)-1])
		for i := 1; i < len(after); i++ {
			assert.GreaterOrEqual(t, after[i], after[i-1], "%s cumulative: bound %s", name, gcPauseLabels[i])
		}
		assert.GreaterOrEqual(t, after[len(after)-1]-before[len(before)-1], uint64(2), "%s: two collections, at least two pauses", name)
	}
	// Each pause's stopping part is no longer than the pause: under every
	// bound at least as many stoppings as pauses (read second, the
	// stoppings also count any pause begun since).
	total := gcPauseCounts(gcPausesTotal, gcPauseBounds)
	stopping := gcPauseCounts(gcPausesStopping, gcPauseBounds)
	for i := range total {
		assert.GreaterOrEqual(t, stopping[i], total[i], "under %s", gcPauseLabels[i])
	}
}

// The real-time loop's yields to Go's scheduler are counted and timed: at
// most one every yieldEvery, each no longer than the longest, which
// fmagent_rt_yield_max_seconds gives.
func TestYieldMetrics(t *testing.T) {
	dir := t.TempDir()
	ga, gb, port := testNet(t)
	cfg := newTestConfig(t, 1, uint32(time.Now().UnixNano()%(1<<30)+1000), ga, gb, port, dir)
	cfg.AllowAlone = true
	cfg.Metrics.Listen = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	runNode(t, cfg)
	var m map[string]float64
	require.Eventually(t, func() bool {
		m, _ = scrapeMetrics(cfg.Metrics.Listen)
		return m["fmagent_rt_yield_seconds_count"] >= 20
	}, 10*time.Second, 50*time.Millisecond, "yields counted")
	// Ten more yields (however loaded the machine), never more than one
	// every yieldEvery.
	n0, t0 := m["fmagent_rt_yield_seconds_count"], time.Now()
	require.Eventually(t, func() bool {
		m, _ = scrapeMetrics(cfg.Metrics.Listen)
		return m["fmagent_rt_yield_seconds_count"] >= n0+10
	}, 10*time.Second, 20*time.Millisecond, "yields go on")
	n := m["fmagent_rt_yield_seconds_count"] - n0
	assert.LessOrEqual(t, n, time.Since(t0).Seconds()/yieldEvery.Seconds()+2, "at most one every yieldEvery")
	assert.Positive(t, m["fmagent_rt_yield_seconds_sum"])
	assert.Positive(t, m["fmagent_rt_yield_max_seconds"])
	assert.LessOrEqual(t, m["fmagent_rt_yield_seconds_sum"]/m["fmagent_rt_yield_seconds_count"], m["fmagent_rt_yield_max_seconds"])
	// The yields' moves, from the loop's own thread: a yield in place
	// comes back on another thread rarely (none is woken for it), and
	// carrying SCHED_FIFO there is never refused to an agent that had it.
	moves, ok := m["fmagent_rt_yield_moves_total"]
	require.True(t, ok, "fmagent_rt_yield_moves_total exported")
	failures, ok := m["fmagent_rt_yield_move_failures_total"]
	require.True(t, ok, "fmagent_rt_yield_move_failures_total exported")
	assert.Zero(t, failures)
	assert.LessOrEqual(t, moves, m["fmagent_rt_yield_seconds_count"], "a move is a yield's")
}

// The real-time loop's lock: taken at once, nothing is observed; held by
// another goroutine, the loop's wait is timed.
func TestRTLockWait(t *testing.T) {
	a := &agent{}
	a.m = newMetrics(fmmetrics.NewRegistry(), a)
	var elapsed time.Duration
	// On a thread of its own, as the loop's goroutine is.
	require.NoError(t, transport.RunLockedWith(transport.ThreadOptions{}, func(th *transport.Locked) {
		a.rtThread.Store(th)
		a.rtLock()
		a.mu.Unlock()
		assert.Zero(t, a.m.lockWait.Count(), "uncontended: not timed")

		held := make(chan struct{})
		go func() {
			a.mu.Lock() // the lock is its holder's to unlock (a PI futex)
			close(held)
			// Released only once the loop's thread waits for it: after a
			// fixed sleep, a thread kept off the CPU by a busy machine
			// (make test beside two CPU burners) came to the lock after it
			// was free, and nothing was timed.
			for deadline := time.Now().Add(10 * time.Second); !a.mu.Contended() && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(5 * time.Millisecond)
			a.mu.Unlock()
		}()
		<-held
		start := time.Now()
		a.rtLock() // waits for the goroutine above
		elapsed = time.Since(start)
		a.mu.Unlock()
	}))
	require.Equal(t, uint64(1), a.m.lockWait.Count())
	wait := a.m.lockWait.Sum()
	assert.Positive(t, wait)
	assert.LessOrEqual(t, wait, elapsed.Seconds(), "the wait is within the call")
	assert.InDelta(t, wait, time.Duration(a.m.lockWaitMax.Load()).Seconds(), 1e-9, "the longest is the only one")
}

// fmagent_tombstones counts the clears and unregisters a node's table keeps
// to refuse older writes re-asserted later, replicated like the rest of the
// table: the other node's scrape shows this node's clients' writes.
// fmagent_tombstones_forgotten_total is exported, zero below the bound
// (the bound itself: table's TestTombstonesForgottenCounted).
func TestTombstoneMetrics(t *testing.T) {
	tc := startCluster(t, 2, func(c *config.Config) { c.Metrics.Listen = fmt.Sprintf("127.0.0.1:%d", freePort(t)) })
	c := tc.nodes[0].client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	registerOnceMaster(t, ctx, c, "svc/tomb-a")
	_, err := c.Register(ctx, "svc/tomb-b", client.KindService)
	require.NoError(t, err)
	for _, cause := range []string{"disk", "fan", "disk"} { // disk flaps: one tombstone still
		_, err = c.Raise(ctx, "svc/tomb-a", cause, client.SevMajor)
		require.NoError(t, err)
		_, err = c.Clear(ctx, "svc/tomb-a", cause)
		require.NoError(t, err)
	}
	_, err = c.Unregister(ctx, "svc/tomb-b")
	require.NoError(t, err)

	addr := tc.nodes[1].cfg.Metrics.Listen
	var m map[string]float64
	require.Eventually(t, func() bool {
		m = metricsOf(t, addr)
		return m[`fmagent_tombstones{kind="alarm"}`] == 2 && m[`fmagent_tombstones{kind="entity"}`] == 1
	}, 10*time.Second, 20*time.Millisecond, "two alarms cleared and one entity unregistered, in the other node's table: %v alarm, %v entity",
		m[`fmagent_tombstones{kind="alarm"}`], m[`fmagent_tombstones{kind="entity"}`])
	for _, kind := range []string{"alarm", "entity"} {
		v, ok := m[`fmagent_tombstones_forgotten_total{kind="`+kind+`"}`]
		require.True(t, ok, "fmagent_tombstones_forgotten_total{kind=%q} exported", kind)
		require.Zero(t, v, kind)
	}
}

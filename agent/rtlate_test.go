package agent

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A late tick's cause is the largest of its parts; the part of a yield that
// counts is the one past the deadline.
func TestLateTickCause(t *testing.T) {
	due := time.Unix(1000, 0)
	ms := time.Millisecond
	at := func(d time.Duration) time.Time { return due.Add(d) }
	for _, c := range []struct {
		name     string
		from, to time.Time     // the last yield
		woke     time.Duration // when the loop woke, after the deadline
		late     time.Duration // when it ticked
		lockWait time.Duration
		yield    time.Duration
		work     time.Duration
		waking   time.Duration
		cause    int
	}{
		{"yield across the deadline", at(-2 * ms), at(30 * ms), 31 * ms, 31 * ms, 0, 30 * ms, 0, 1 * ms, lateYield},
		{"yield all after the deadline", at(5 * ms), at(25 * ms), 30 * ms, 30 * ms, 0, 20 * ms, 0, 10 * ms, lateYield},
		{"yield ended before the deadline", at(-9 * ms), at(-1 * ms), 40 * ms, 40 * ms, 0, 0, 0, 40 * ms, lateWake},
		{"lock wait", time.Time{}, time.Time{}, 5 * ms, 50 * ms, 45 * ms, 0, 0, 5 * ms, lateLockWait},
		{"woken late", at(-3 * ms), at(1 * ms), 58 * ms, 60 * ms, 2 * ms, 1 * ms, 0, 57 * ms, lateWake},
		{"parts above late: waking 0", at(-1 * ms), at(20 * ms), 15 * ms, 25 * ms, 10 * ms, 20 * ms, 0, 0, lateYield},
		// Woken before the deadline (for a request), worked past it.
		{"work after waking in time", time.Time{}, time.Time{}, -1 * ms, 40 * ms, 0, 0, 40 * ms, 0, lateWork},
		{"work with a lock wait in it", time.Time{}, time.Time{}, -1 * ms, 40 * ms, 15 * ms, 0, 25 * ms, 0, lateWork},
		{"woke late, then worked", time.Time{}, time.Time{}, 20 * ms, 30 * ms, 3 * ms, 0, 7 * ms, 20 * ms, lateWake},
	} {
		l := lateTick{due: due, late: c.late, yield: yieldPast(c.from, c.to, due), lockWait: c.lockWait,
			work: workPast(at(c.woke), due, at(c.late), c.lockWait)}
		assert.Equal(t, c.yield, l.yield, c.name)
		assert.Equal(t, c.work, l.work, c.name)
		assert.Equal(t, c.waking, l.waking(), c.name)
		assert.Equal(t, lateCauseNames[c.cause], lateCauseNames[l.cause()], c.name)
	}
}

// The log keeps lateLogCap late ticks between two passes and counts the
// others.
func TestLateLogKeepsAndCounts(t *testing.T) {
	var l lateLog
	for i := range lateLogCap + 3 {
		l.record(lateTick{late: time.Duration(i)})
	}
	got, dropped := l.take(nil)
	require.Len(t, got, lateLogCap)
	assert.Equal(t, 3, dropped)
	assert.Equal(t, time.Duration(lateLogCap-1), got[lateLogCap-1].late, "in the order recorded")
	got, dropped = l.take(got[:0])
	assert.Empty(t, got, "taken: empty")
	assert.Zero(t, dropped)
}

// Recording a late tick (the real-time loop does) allocates nothing.
func TestLateLogRecordAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	var l lateLog
	tick := lateTick{due: time.Now(), late: time.Second}
	allocs := testing.AllocsPerRun(1000, func() {
		l.record(tick)
		if l.n == lateLogCap {
			l.n = 0
		}
	})
	assert.Zero(t, allocs, "allocations per record")
}

// A pass logs the lateLinesPerPass longest late ticks one by one, in the
// order they came, with their parts and cause, and sums up the rest in one
// line.
func TestLogLateLines(t *testing.T) {
	var buf bytes.Buffer
	a := &agent{log: slog.New(slog.NewJSONHandler(&buf, nil))}
	due := time.Date(2026, 12, 1, 21, 0, 0, 123456789, time.UTC)
	ms := time.Millisecond
	ticks := []lateTick{
		{due: due, late: 40 * ms, yield: 35 * ms},
		{due: due, late: 9 * ms, yield: 8 * ms}, // one of the two shortest
		{due: due, late: 40 * ms, yield: 35 * ms},
		{due: due, late: 90 * ms, lockWait: 80 * ms},
		{due: due, late: 8 * ms, lockWait: 7 * ms}, // the other
		{due: due, late: 40 * ms, yield: 35 * ms},
		{due: due.Add(ms), late: 60 * ms},
	}
	a.logLate(ticks, 4)
	lines := jsonLines(buf.String(), "")
	require.Len(t, lines, lateLinesPerPass+1)
	var lates []time.Duration
	for _, l := range lines[:lateLinesPerPass] {
		assert.Equal(t, lateTickMsg, l["msg"])
		lates = append(lates, time.Duration(l["late"].(float64)))
	}
	assert.Equal(t, []time.Duration{40 * ms, 40 * ms, 90 * ms, 40 * ms, 60 * ms}, lates, "the longest, in order")
	first := lines[0]
	assert.True(t, strings.HasPrefix(lateTickMsg, "real-time loop late:"), "soak (soak/soak.go: lateTickMsg) finds the lines by this prefix")
	assert.Equal(t, "2026-12-01T21:00:00.123456789Z", first["due"])
	assert.EqualValues(t, 35*ms, first["in_yield"])
	assert.EqualValues(t, 5*ms, first["waking"])
	assert.Equal(t, "yield", first["cause"])
	assert.Equal(t, "lock_wait", lines[2]["cause"])
	assert.EqualValues(t, 80*ms, lines[2]["in_lock_wait"])
	assert.Equal(t, "wake", lines[4]["cause"])
	sum := lines[lateLinesPerPass]
	assert.EqualValues(t, 2+4, sum["ticks"], "the two not logged one by one and the four not kept")
	assert.EqualValues(t, 9*ms, sum["worst_late"])
	assert.EqualValues(t, 1, sum["yield"])
	assert.EqualValues(t, 1, sum["lock_wait"])
	assert.EqualValues(t, 4, sum["not_kept"])

	buf.Reset()
	a.logLate(nil, 0)
	assert.Zero(t, buf.Len(), "nothing late, nothing logged")
}

// jsonLines parses the JSON log lines in s whose msg is msg (every line
// when msg is empty); other lines are skipped.
func jsonLines(s, msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(s, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && (msg == "" || m["msg"] == msg) {
			out = append(out, m)
		}
	}
	return out
}

// A running agent whose real-time loop waits for its lock past a deadline
// logs that late tick with the wait as its cause, and counts it.
func TestLateTickOnLockWait(t *testing.T) {
	started := make(chan *agent, 1)
	testHookStarted = func(a *agent) { started <- a }
	defer func() { testHookStarted = nil }()
	ga, gb, port := testNet(t)
	cfg := newTestConfig(t, 1, uint32(time.Now().UnixNano()%(1<<30)+1000), ga, gb, port, t.TempDir())
	cfg.AllowAlone = true
	logs := runAgent(t, cfg)
	a := <-started
	require.Eventually(t, func() bool { return a.m.yieldTime.Count() >= 2 }, 5*time.Second, 10*time.Millisecond, "the loop runs")

	// Held for 30 heartbeat intervals: the loop wakes for its next
	// deadline and waits for the lock.
	const hold = 300 * time.Millisecond
	a.mu.Lock()
	time.Sleep(hold)
	a.mu.Unlock()

	var late []map[string]any
	require.Eventually(t, func() bool {
		for _, l := range jsonLines(logs.String(), lateTickMsg) {
			if l["cause"] == "lock_wait" {
				late = append(late, l)
			}
		}
		return len(late) > 0
	}, 5*time.Second, 50*time.Millisecond, "the late tick is logged within the logger's second")
	l := late[0]
	wait := time.Duration(l["in_lock_wait"].(float64))
	// At least the hold less one interval (the deadline came within an
	// interval of the lock being taken), and within the tick's lateness.
	assert.GreaterOrEqual(t, wait, hold-cfg.Timing.Interval)
	assert.LessOrEqual(t, wait, time.Duration(l["late"].(float64)))
	_, err := time.Parse(time.RFC3339Nano, l["due"].(string))
	assert.NoError(t, err)
	assert.GreaterOrEqual(t, a.m.lateTicks[lateLockWait].Value(), uint64(1), "counted")
}

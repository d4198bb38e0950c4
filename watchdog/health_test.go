package watchdog

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// Busy and Idle run on the receive path for every batch: no allocation.
func TestHealthAlloc(t *testing.T) {
	h := &Health{}
	l := h.Loop("receive-a", false)
	allocs := testing.AllocsPerRun(1000, func() {
		l.Busy()
		l.Idle()
		l.Beat()
	})
	assert.Zero(t, allocs)
}

func TestHealthCheck(t *testing.T) {
	h := &Health{}
	idle := h.Loop("idle", false)
	busy := h.Loop("busy", false)
	periodic := h.Loop("periodic", true)
	now := time.Now()
	idle.last.Store(now.Add(-time.Hour).UnixNano()) // waiting for input that never came: healthy
	busy.Busy()
	busy.busy.Store(now.Add(-2 * time.Second).UnixNano())
	periodic.Beat()
	loops, stalled := h.Check(now, time.Second)
	assert.Equal(t, []string{"busy"}, stalled)
	assert.Len(t, loops, 3)
	assert.Equal(t, 2*time.Second, loops[1].BusyFor)
	busy.Busy() // nested: keeps the first start
	_, stalled = h.Check(now, time.Second)
	assert.Equal(t, []string{"busy"}, stalled)
	_, stalled = h.Check(now.Add(2*time.Second), time.Second)
	assert.Equal(t, []string{"busy", "periodic"}, stalled, "a periodic loop that stopped going round")
}

// A loop that goes round less often than the guard checks (the API probe,
// once a second without a watchdog) is judged by its own window when that
// is the longer.
func TestHealthLoopWithin(t *testing.T) {
	h := &Health{}
	slow := h.LoopWithin("slow", 3*time.Second)
	now := time.Now()
	slow.last.Store(now.UnixNano())
	_, stalled := h.Check(now.Add(2*time.Second), time.Second)
	assert.Empty(t, stalled, "two seconds without a beat, within its three")
	_, stalled = h.Check(now.Add(4*time.Second), time.Second)
	assert.Equal(t, []string{"slow"}, stalled, "four seconds without a beat")
	_, stalled = h.Check(now.Add(4*time.Second), 10*time.Second)
	assert.Empty(t, stalled, "the check's window when that is the longer")
	slow.busy.Store(now.UnixNano())
	_, stalled = h.Check(now.Add(2*time.Second), time.Second)
	assert.Empty(t, stalled, "busy two seconds, within its three")
}

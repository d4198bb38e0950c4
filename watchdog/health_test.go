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

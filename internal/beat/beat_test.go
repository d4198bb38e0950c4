package beat

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestUntil(t *testing.T) {
	base := time.Unix(1000, 0)
	s := time.Second
	for _, c := range []struct {
		now  time.Duration // after base
		want time.Duration
	}{
		{0, s},     // on a beat: the next one
		{1, s - 1}, // just after
		{s - 1, 1}, // just before
		{5*s + 300*time.Millisecond, 700 * time.Millisecond},
		{-300 * time.Millisecond, 300 * time.Millisecond}, // base ahead
		{-2*s - 300*time.Millisecond, 300 * time.Millisecond},
	} {
		require.Equal(t, c.want, Until(base, base.Add(c.now), s), "now = base%+v", c.now)
	}
}

// Two passes of one period started at different instants are called at
// the same beats: on the base's phase, whatever their start.
func TestEveryOnOnePhase(t *testing.T) {
	const period = 40 * time.Millisecond
	base := time.Now()
	done := make(chan struct{})
	type call struct {
		pass int
		at   time.Time
	}
	calls := make(chan call, 64)
	for pass := range 2 {
		go func() {
			time.Sleep(time.Duration(pass) * 13 * time.Millisecond) // different starts
			n := 0
			Every(done, base, period, func(now time.Time) bool {
				calls <- call{pass, now}
				n++
				return n < 3 // false ends Every
			})
		}()
	}
	for range 6 {
		c := <-calls
		// A timer fires at or after its instant, never before: the call is
		// at most a scheduling delay past a beat (generous: a busy host).
		off := c.at.Sub(base) % period
		require.Less(t, off, period/2, "pass %d called %v after a beat, not on the base's phase", c.pass, off)
		require.GreaterOrEqual(t, c.at.Sub(base), period, "pass %d called before the first beat", c.pass)
	}
	close(done)
	select {
	case c := <-calls:
		t.Fatalf("pass %d called again after fn returned false", c.pass)
	case <-time.After(2 * period):
	}
}

// done ends Every while it waits for a beat.
func TestEveryDone(t *testing.T) {
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		Every(done, time.Now(), time.Hour, func(time.Time) bool { t.Error("called"); return true })
		close(ended)
	}()
	close(done)
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("Every did not end when done was closed")
	}
}

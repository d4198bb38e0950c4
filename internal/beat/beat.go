// Package beat runs a process's periodic passes on one phase.
//
// An idle agent's background passes (the watchdog guard's step, the API
// probe, the renicing of new threads, the late-tick log, the exit watch's
// recheck) each ran on a timer of its own, started whenever its goroutine
// happened to start: five wake-ups a second at five different instants.
// On the virtual machines this project is measured on a thread's wake-up
// from an idle CPU costs 30–130 µs whatever the thread then does, so the
// wake-ups, not the passes, were the cost. Passes that fall on whole
// periods since one base instant come due together, and Go's scheduler
// runs every timer that is due at one wake-up.
package beat

import "time"

// Until is how long from now to the next instant base + k·period (k a whole
// number) strictly after now. period must be positive.
func Until(base, now time.Time, period time.Duration) time.Duration {
	since := now.Sub(base)
	if since < 0 {
		return -since % period // base is ahead: its own earlier beats
	}
	return period - since%period
}

// Every calls fn(now) at base + k·period, until done is closed or fn
// returns false. A beat missed while fn ran (or while the process was not
// scheduled) is skipped, as a time.Ticker drops ticks: the next call is at
// the next beat after fn returns. period must be positive.
func Every(done <-chan struct{}, base time.Time, period time.Duration, fn func(now time.Time) bool) {
	t := time.NewTimer(Until(base, time.Now(), period))
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			if !fn(now) {
				return
			}
		}
		t.Reset(Until(base, time.Now(), period))
	}
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/watchdog"
	"github.com/fmagent/fmagent/wire"
)

// The watchdog guard (package watchdog): the device and systemd's watchdog
// are kicked together, every guard period, while every critical loop made
// progress within the period (the receive loops, the timer loop that runs
// the core and publishes, the process-exit loop, and the API, probed
// through its own socket), the core's self-fence decision does not hold
// the kicks, and no critical daemon escalated to "fence".

// testKickers, if set, returns watchdogs added to node's configured ones
// (tests: fakes).
var testKickers func(node uint32) []watchdog.Kicker

// testDeviceIoctl, if set, is the watchdog device's driver (tests: a fake
// on a regular file).
var testDeviceIoctl watchdog.IoctlFunc

// testHookStarted, if set, is called with the agent once it has started.
var testHookStarted func(*agent)

// openGuard opens the configured watchdogs and builds the guard. mu not
// needed: called from start.
func (a *agent) openGuard() error {
	cfg := a.cfg.Watchdog
	a.health = &watchdog.Health{}
	var kickers []watchdog.Kicker
	path, err := watchdog.ResolvePath(cfg.Device)
	if err != nil {
		return fmt.Errorf("agent: watchdog.device = %q: %w", cfg.Device, err)
	}
	if path != "" {
		d, err := watchdog.OpenDevice(path, watchdog.DeviceOptions{Timeout: cfg.Timeout, Ioctl: testDeviceIoctl})
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		a.wdDev = d
		kickers = append(kickers, d)
		info := d.Info()
		a.log.Info("watchdog device", "device", path, "identity", info.Identity, "timeout_asked", cfg.Timeout,
			"timeout", d.Timeout(), "timeout_set", info.TimeoutSet, "boot_status", info.BootStatusString())
		if d.Timeout() != cfg.Timeout {
			a.log.Warn("the watchdog driver chose another timeout than asked", "asked", cfg.Timeout, "in_force", d.Timeout())
		}
		if info.WatchdogReset() {
			a.log.Error("the last reboot was caused by the watchdog", "device", path, "boot_status", info.BootStatusString())
		}
	}
	if testKickers != nil {
		kickers = append(kickers, testKickers(a.cfg.NodeID)...)
	}
	if cfg.Systemd {
		if s, err := watchdog.NewSystemd(); err == nil {
			kickers = append(kickers, s)
			a.log.Info("systemd watchdog", "timeout", s.Timeout())
		}
	}
	fence := cfg.SelfFence.Enabled(a.wdDev != nil)
	a.core.SetFence(core.FenceConfig{Enabled: fence, Timeout: cfg.FenceTimeout})
	why := "self_fence = \"" + string(cfg.SelfFence) + "\""
	if cfg.SelfFence == "auto" {
		if a.wdDev != nil {
			why += " with a watchdog device"
		} else {
			why += " without a watchdog device"
		}
	}
	a.log.Info("self-fencing", "enabled", fence, "because", why, "fence_timeout", cfg.FenceTimeout)
	a.guard = &watchdog.Guard{
		Kickers: kickers,
		Health:  a.health,
		// The fence decision, read without waiting for the lock: a lock
		// held too long is a stalled loop, which the guard must see and
		// report rather than wait behind; the last decision read stands.
		Check: func(time.Time) string {
			if a.mu.TryLock() {
				a.lastFence = a.core.Fence()
				a.mu.Unlock()
			}
			return a.lastFence.Reason()
		},
		Log: a.log.With("part", "watchdog"),
	}
	// The real-time loop receives, ticks and sends on one thread
	// (rtloop.go): one loop, which must go round at least every interval.
	a.hRT = a.health.Loop("realtime", true)
	a.hPublish = a.health.Loop("publish", false)
	a.hProc = a.health.Loop("process", false)
	a.apiEvery = apiProbeEvery(watchdog.PeriodFor(kickers))
	a.hAPI = a.health.LoopWithin("api", 3*a.apiEvery)
	return nil
}

// apiProbeEvery is how often the API probe runs for a guard period:
// three times a period, so that one failed probe is not yet a stall, but
// at most once a second. With a watchdog of 30 s (a period of 10 s) that
// is every 3.3 s; without one the guard checks every second (for fmctl
// status) and the probe ran three times a second, each a connection
// accepted, a status encoded and a dozen thread wake-ups: 0.16 % of a
// core of an idle agent that spends 1.2 % in all (docs/bench.md). Its
// window is three probes.
func apiProbeEvery(period time.Duration) time.Duration { return max(period/3, time.Second) }

// apiProbe asks the agent's own API for its status every apiEvery: the
// API is healthy while that works (accept loop, connection handling and
// the handler's lock, end to end).
func (a *agent) apiProbe(done chan struct{}) {
	p := a.apiEvery
	every(done, p, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), p)
		c, err := client.Dial(ctx, a.cfg.Paths.Socket)
		if err == nil {
			_, err = c.Status(ctx)
			c.Close()
		}
		cancel()
		if err == nil {
			a.hAPI.Beat()
		} else if !errors.Is(err, context.Canceled) {
			a.log.Debug("API probe", "err", err)
		}
		return true
	})
}

// bootAlarm raises the alarm "watchdog-reset" on this node's entity when
// the device says the last reboot was the watchdog's, once a master takes
// it.
func (a *agent) bootAlarm(done chan struct{}) {
	if a.wdDev == nil || !a.wdDev.Info().WatchdogReset() {
		return
	}
	name := fmt.Sprintf("node/%d", a.self)
	for {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-done:
				cancel()
			case <-ctx.Done():
			}
		}()
		_, err := a.write(ctx, core.Request{Kind: wire.ReportRaise, Name: name, EntityKind: wire.KindNode,
			Severity: wire.SevMajor, Cause: "watchdog-reset"}, nil)
		cancel()
		if err == nil {
			a.log.Warn("raised the alarm watchdog-reset on this node: the last reboot was the watchdog's", "entity", name)
			return
		}
		select {
		case <-done:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// watchdogStatus is the guard's state for api.Status.
func (a *agent) watchdogStatus() *api.WatchdogStatus {
	if a.guard == nil {
		return nil
	}
	g := a.guard.Status()
	out := &api.WatchdogStatus{
		Watchdogs: append([]string{}, g.Kickers...), TimeoutMS: g.Timeout.Milliseconds(), PeriodMS: g.Period.Milliseconds(),
		Kicking: g.Kicking, Reason: g.Reason, LastKick: g.LastKick, Kicks: g.Kicks, BootStatus: "unknown (no device)",
		Loops: make([]api.LoopHealth, 0, len(g.Loops)),
	}
	if a.wdDev != nil {
		out.Identity = a.wdDev.Info().Identity
		out.BootStatus = a.wdDev.Info().BootStatusString()
	}
	a.mu.Lock()
	f := a.core.Fence()
	a.mu.Unlock()
	out.SelfFence, out.Fenced = f.Enabled, f.Fenced
	for _, l := range g.Loops {
		out.Loops = append(out.Loops, api.LoopHealth{Name: l.Name, Healthy: l.Healthy, LastProgress: l.LastProgress, BusyMS: l.BusyFor.Milliseconds()})
	}
	return out
}

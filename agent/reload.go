package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/fmagent/fmagent/agent/plugin"
	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/metrics"
	"github.com/fmagent/fmagent/watchdog"
)

// Reloadable keys: what a SIGHUP applies without a restart. log_level is
// applied by the caller (cmd/fmagent owns the logger's level); the rest
// here. Every other key that changed is logged as needing a restart.
var reloadable = []string{"log_level", "plugins", "daemons", "metrics.listen", "metrics.allow_remote"}

// RunReloadable is Run, and applies each configuration received on reload
// (already loaded and validated, as after SIGHUP): the plugin chain (names
// and arguments; the report history is kept), the daemons (added ones
// start, removed ones stop, changed ones keep running: daemon.Reconfigure),
// the metrics endpoint, and it
// logs, key by key, what differs from the configuration in force but needs
// a restart. A nil reload is Run.
func RunReloadable(ctx context.Context, cfg *config.Config, log *slog.Logger, reload <-chan *config.Config) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg == nil {
		cfg = config.Default()
		cfg.AllowAlone = true
		log.Info("no configuration: running a single-node cluster on loopback (allow_alone)")
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("agent: configuration: %w", err)
	}
	// Every line names the node (issue 11: logs from several nodes are read
	// side by side).
	log = log.With("node", cfg.NodeID)
	a := &agent{cfg: cfg, log: log, reload: reload, inForce: cfg}
	if err := a.start(); err != nil {
		a.closeAll()
		a.hooks.Close()
		return err
	}
	return a.run(ctx)
}

// applyReload applies what can be applied of c and logs the rest. It runs
// on the goroutine of run (as do start and shutdown, the only other users
// of msrv and inForce).
func (a *agent) applyReload(c *config.Config) {
	changed := config.Diff(a.inForce, c)
	if len(changed) == 0 {
		a.log.Info("reload: the configuration is unchanged")
		return
	}
	next := *a.inForce
	var applied, restart []string
	for _, k := range changed {
		if !slices.Contains(reloadable, k) {
			restart = append(restart, k)
		}
	}
	if slices.Contains(changed, "log_level") {
		next.LogLevel = c.LogLevel
		applied = append(applied, "log_level")
	}
	if slices.Contains(changed, "plugins") {
		if err := a.reloadChain(c.Plugins); err != nil {
			a.log.Error("reload: plugin chain not changed", "err", err)
		} else {
			next.Plugins = c.Plugins
			applied = append(applied, "plugins")
		}
	}
	if slices.Contains(changed, "daemons") {
		r, err := a.sup.Reconfigure(c.Daemons)
		if err != nil {
			a.log.Error("reload: daemons not changed", "err", err)
		} else {
			next.Daemons = c.Daemons
			applied = append(applied, "daemons")
			a.log.Info("reload: daemons", "added", fmt.Sprint(r.Added), "removed", fmt.Sprint(r.Removed), "changed", fmt.Sprint(r.Changed))
			if len(r.NextStart) > 0 {
				a.log.Warn("reload: how these daemons are started changed; they keep running as they are, and start the new way when they next start", "daemons", fmt.Sprint(r.NextStart))
			}
		}
	}
	if slices.Contains(changed, "metrics.listen") || slices.Contains(changed, "metrics.allow_remote") {
		if err := a.restartMetrics(c.Metrics); err != nil {
			a.log.Error("reload: metrics endpoint", "listen", c.Metrics.Listen, "err", err)
		} else {
			applied = append(applied, "metrics")
		}
		// What is in force is what was asked for, even if the listen
		// failed (it is off then): a second SIGHUP tries again only if the
		// file changes again.
		next.Metrics = c.Metrics
	}
	for _, k := range restart {
		a.log.Warn("reload: changed in the configuration, takes effect at the next restart", "key", k)
	}
	a.inForce = &next
	a.log.Info("reload: configuration applied", "applied", fmt.Sprint(applied), "needs_restart", fmt.Sprint(restart))
}

// reloadChain builds the chain of specs and hands it to the core.
func (a *agent) reloadChain(ps []config.Plugin) error {
	specs := make([]plugin.Spec, len(ps))
	for i, p := range ps {
		specs[i] = plugin.Spec{Name: p.Name, Args: p.Args}
	}
	chain, err := plugin.NewChain(specs)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.core.SetChain(chain)
	a.mu.Unlock()
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	a.log.Info("reload: plugin chain replaced (report history kept)", "chain", fmt.Sprint(names))
	return nil
}

// startMetrics starts the endpoint m asks for ("" none); a.msrv is the
// running server or nil.
func (a *agent) startMetrics(m config.Metrics) error {
	if m.Listen == "" {
		return nil
	}
	srv, err := metrics.NewServerWith(m.Listen, a.reg, metrics.ServerOptions{AllowRemote: m.AllowRemote, Healthy: a.healthy})
	if err != nil {
		return err
	}
	a.msrv = srv
	a.log.Info("metrics endpoint", "addr", "http://"+srv.Addr().String()+"/metrics", "remote", m.AllowRemote)
	return nil
}

// restartMetrics stops the running endpoint and starts the one m asks for.
func (a *agent) restartMetrics(m config.Metrics) error {
	if a.msrv != nil {
		if err := a.msrv.Close(); err != nil {
			a.log.Warn("metrics endpoint close", "err", err)
		}
		a.msrv = nil
		a.log.Info("metrics endpoint stopped")
	}
	return a.startMetrics(m)
}

// health is what /healthz checks between probes.
type health struct {
	lastSent uint64
	lastMove time.Time
}

// errUnhealthy is what healthy's errors wrap.
var errUnhealthy = errors.New("unhealthy")

// healthy is /healthz: the core's lock can be taken within a second, the
// node has not fenced itself, and heartbeats are being sent (the count
// moved within the last second, or ten intervals if those are longer).
func (a *agent) healthy() error {
	deadline := time.Now().Add(time.Second)
	for !a.mu.TryLock() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: the core's lock has been held for over a second", errUnhealthy)
		}
		time.Sleep(time.Millisecond)
	}
	sent := a.core.Stats().HeartbeatsSent
	stopping := a.stopping
	a.mu.Unlock()
	var guard watchdog.GuardStatus
	if a.guard != nil {
		guard = a.guard.Status()
	}

	a.healthMu.Lock()
	defer a.healthMu.Unlock()
	now := time.Now()
	if sent != a.healthz.lastSent || a.healthz.lastMove.IsZero() {
		a.healthz.lastSent, a.healthz.lastMove = sent, now
	}
	switch {
	case stopping:
		return fmt.Errorf("%w: shutting down", errUnhealthy)
	case a.guard != nil && !guard.Kicking:
		return fmt.Errorf("%w: the watchdog is no longer kicked: %s", errUnhealthy, guard.Reason)
	}
	limit := max(time.Second, 10*a.cfg.Timing.Interval)
	if d := now.Sub(a.healthz.lastMove); d > limit {
		return fmt.Errorf("%w: no heartbeat sent for %v", errUnhealthy, d.Round(time.Millisecond))
	}
	return nil
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/daemon"
	"github.com/fmagent/fmagent/wire"
)

// ErrEscalated is returned by Run when a critical daemon configured with
// escalate = "node-down" could not be kept up: the agent said goodbye, so
// the node's entities went down everywhere and the master failed over.
var ErrEscalated = errors.New("agent: a critical daemon could not be kept up (escalate = \"node-down\")")

// CauseRestartLimit is the alarm raised on a daemon's entity when its
// restart limit is hit.
const CauseRestartLimit = "restart-limit"

// daemonEvents turns the supervisor's events into this node's reports, as
// the owner of node/<id>/proc/<name>, in order: a daemon that runs is
// registered (or brought up), one that stopped is reported down (the
// master's process plugin marks it down, every node sees it), one that hit
// its restart limit gets a critical alarm and, if critical, its escalation.
func (a *agent) daemonEvents(done chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-done
		cancel()
	}()
	for {
		var ev daemon.Event
		select {
		case <-done:
			return
		case ev = <-a.sup.Events():
		}
		a.log.Info("daemon", "daemon", ev.Name, "event", ev.Kind.String(), "pid", ev.PID, "adopted", ev.Adopted, "exit", ev.Exit)
		if ev.Kind == daemon.LimitHit && ev.Critical && ev.Escalate == config.EscalateFence {
			a.escalate(ev) // local and at once: it needs no master
		}
		for attempt := 0; ; attempt++ {
			err := a.daemonReport(ctx, ev)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			if attempt%20 == 0 {
				a.log.Warn("daemon state not reported yet; retrying", "daemon", ev.Name, "event", ev.Kind.String(), "err", err)
			}
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		if ev.Kind == daemon.LimitHit && ev.Critical && ev.Escalate != config.EscalateFence {
			a.escalate(ev) // after the critical alarm is in the table
		}
	}
}

// daemonReport writes one event to the cluster table.
func (a *agent) daemonReport(ctx context.Context, ev daemon.Event) error {
	name, id := ev.Entity, table.ID(ev.Entity)
	a.mu.Lock()
	e, have := a.core.Table().Get(id)
	var state wire.State
	if have {
		state = e.State
	}
	a.mu.Unlock()
	if ev.Kind == daemon.Removed {
		// No longer configured: its entity leaves the table (if this node
		// still holds it).
		if !have || e.Owner != a.self {
			return nil
		}
		_, err := a.write(ctx, core.Request{Kind: wire.ReportUnregister, Name: name}, nil)
		return err
	}
	if !have {
		if _, err := a.write(ctx, core.Request{Kind: wire.ReportRegister, Name: name, EntityKind: wire.KindProcess}, func(*core.Request) error {
			if e, ok := a.core.Table().Get(id); ok && (e.Name != name || e.Owner != a.self || e.Kind != wire.KindProcess) {
				return api.Errorf(api.ErrCollision, "%q is held by node %d as a %s", e.Name, e.Owner, api.KindOf(e.Kind))
			}
			return nil
		}); err != nil {
			return err
		}
		state = wire.StateUp
	}
	switch ev.Kind {
	case daemon.Up:
		if state == wire.StateUp {
			return nil
		}
		_, err := a.write(ctx, core.Request{Kind: wire.ReportUp, Name: name, EntityKind: wire.KindProcess}, nil)
		return err
	case daemon.Down:
		if state == wire.StateDown {
			return nil
		}
		_, err := a.write(ctx, core.Request{Kind: wire.ReportDown, Name: name, EntityKind: wire.KindProcess}, nil)
		return err
	case daemon.LimitHit:
		_, err := a.write(ctx, core.Request{Kind: wire.ReportRaise, Name: name, EntityKind: wire.KindProcess,
			Severity: wire.SevCritical, Cause: CauseRestartLimit}, nil)
		return err
	}
	return nil
}

// escalate applies a critical daemon's escalation.
func (a *agent) escalate(ev daemon.Event) {
	switch ev.Escalate {
	case config.EscalateFence:
		a.log.Error("critical daemon cannot be kept up: no longer kicking the watchdog", "daemon", ev.Name)
		a.guard.Hold("daemon "+ev.Name, fmt.Sprintf("critical daemon %s hit its restart limit (escalate = fence)", ev.Name))
	case config.EscalateNodeDown:
		a.log.Error("critical daemon cannot be kept up: taking this node down (goodbye to the cluster)", "daemon", ev.Name)
		select {
		case a.escalated <- fmt.Errorf("%w: %s", ErrEscalated, ev.Name):
		default:
		}
	default:
		a.log.Error("critical daemon cannot be kept up: alarm only (escalate = alarm)", "daemon", ev.Name)
	}
}

// Daemons implements api.DaemonLister.
func (h *handler) Daemons(ctx context.Context) ([]api.Daemon, error) {
	if h.a.sup == nil {
		return []api.Daemon{}, nil
	}
	return h.a.sup.Status(), nil
}

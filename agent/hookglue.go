package agent

import (
	"os/exec"
	"time"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/hooks"
	"github.com/fmagent/fmagent/transport"
	"github.com/fmagent/fmagent/wire"
)

// startHooks starts the notify scripts' runner (nil without [[hooks]]).
func (a *agent) startHooks() {
	hs := make([]hooks.Hook, len(a.cfg.Hooks))
	for i, h := range a.cfg.Hooks {
		hs[i] = hooks.Hook{Command: h.Command, Args: h.Args, On: h.On, Timeout: h.Timeout}
	}
	a.hooks = hooks.New(hs, a.log.With("part", "hooks"), a.startChild)
	if a.hooks != nil {
		a.log.Info("notify hooks", "count", len(hs))
	}
}

// startChild starts a hook's or a daemon's process from a thread at the
// normal policy and the nice value the agent was started with: a child
// takes the policy and nice value of the thread it is cloned from, which
// may be the real-time loop's (SCHED_FIFO) or one at nice -20
// (transport.SetProcessNice). a.childNice is set before any child starts.
func (a *agent) startChild(cmd *exec.Cmd) error { return transport.StartNormal(cmd, a.childNice) }

// hookKind is the hook event kind of a journal entry.
func hookKind(je *jentry) string {
	switch je.kind {
	case api.EventMaster, api.EventRole, api.EventStale, api.EventFresh:
		return hooks.KindRole
	case api.EventRaise, api.EventClear:
		return hooks.KindAlarm
	}
	switch je.ekind {
	case wire.KindNode:
		return hooks.KindNode
	case wire.KindLink:
		return hooks.KindLink
	}
	return hooks.KindState
}

// hookEntry hands a journal entry to the hooks. Nothing is built unless a
// hook wants it; the table's first load (the snapshot a starting node
// receives) is history, not news, and runs no hook. mu held.
func (a *agent) hookEntry(je *jentry) {
	if a.hooks == nil || a.journal.loading {
		return
	}
	kind := hookKind(je)
	if !a.hooks.Wants(kind) {
		return
	}
	action := string(je.kind)
	if je.kind == api.EventState {
		action = string(api.StateOf(je.state))
	}
	e := &hooks.Event{
		Kind: kind, Action: action, Node: uint32(a.self), Cluster: a.cfg.ClusterID,
		Cursor: je.cursor, Time: time.Unix(0, je.at).UTC(), Seq: je.seq,
	}
	if je.id != 0 {
		e.Entity, e.EntityKind, e.Owner = je.name, string(api.KindOf(je.ekind)), uint32(je.owner)
		e.State, e.Cause, e.By = string(api.StateOf(je.state)), je.cause, uint32(je.by)
		if je.kind == api.EventRaise {
			e.Severity = string(api.SeverityOf(je.sev))
		}
	}
	st := a.core.Role()
	e.Master, e.Epoch, e.Role = uint32(st.Master), st.Epoch, string(api.RoleOf(st.Role))
	a.hooks.Notify(e)
}

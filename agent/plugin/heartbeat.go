package plugin

import (
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// CauseLinkDown is the alarm heartbeat raises on a lost link.
const CauseLinkDown = "link-down"

func init() {
	Register("heartbeat", func(m map[string]string) (Plugin, error) {
		a := newArgs(m)
		if err := a.done(); err != nil {
			return nil, err
		}
		return HeartbeatPlugin{}, nil
	})
}

// HeartbeatPlugin (registered as "heartbeat") settles the reports of the
// master's own failure detector (SourceMembership), which is authoritative
// about nodes and links: it has already required silence on both networks
// before calling a node down.
//
//   - node down: MarkDown (the core takes the node's contained entities down
//     with it, in one change group);
//   - link down: MarkDown and alarm "link-down" (major): a single fault, the
//     node stays up on its other network, but an operator must know;
//   - link up: MarkUp and clear "link-down";
//   - node up: MarkUp.
//
// Every other report passes. No arguments.
type HeartbeatPlugin struct{}

// Name implements Plugin.
func (HeartbeatPlugin) Name() string { return "heartbeat" }

// Decide implements Plugin.
func (HeartbeatPlugin) Decide(v View, r *Report, out []Verdict) ([]Verdict, bool) {
	if r.Source != SourceMembership || (r.Kind != wire.ReportDown && r.Kind != wire.ReportUp) {
		return out, true
	}
	kind := r.EntityKind
	if kind == 0 {
		if e, ok := v.Entity(r.Entity); ok {
			kind = e.Kind
		}
	}
	switch kind {
	case wire.KindNode:
		if r.Kind == wire.ReportDown {
			return append(out, Verdict{Kind: MarkDown, Entity: r.Entity, Name: r.Name}), false
		}
		return append(out, Verdict{Kind: MarkUp, Entity: r.Entity, Name: r.Name}), false
	case wire.KindLink:
		if r.Kind == wire.ReportDown {
			return append(out,
				Verdict{Kind: MarkDown, Entity: r.Entity, Name: r.Name},
				Verdict{Kind: Raise, Entity: r.Entity, Name: r.Name, Cause: CauseLinkDown, Severity: wire.SevMajor},
			), false
		}
		return append(out,
			Verdict{Kind: MarkUp, Entity: r.Entity, Name: r.Name},
			Verdict{Kind: Clear, Entity: r.Entity, Name: r.Name, Cause: CauseLinkDown},
		), false
	}
	return out, true
}

// ownedBy returns the entity r is about if r's reporter owns it.
func ownedBy(v View, r *Report) (*table.Entity, bool) {
	e, ok := v.Entity(r.Entity)
	if !ok || e.Owner != r.From {
		return nil, false
	}
	return e, true
}

package plugin

import "github.com/fmagent/fmagent/wire"

func init() {
	Register("process", func(m map[string]string) (Plugin, error) {
		a := newArgs(m)
		if err := a.done(); err != nil {
			return nil, err
		}
		return ProcessPlugin{}, nil
	})
}

// ProcessPlugin (registered as "process") settles what an owner node says
// about its own entity (SourceOwner, From == the entity's owner): a process
// it watched exit is down, no corroboration needed, since nobody knows
// better. ReportDown gives MarkDown, ReportUp MarkUp.
//
// A report carrying an incarnation older than the table's is about a previous
// life of the entity (the exit of the instance a restart replaced, delivered
// late) and is ignored, so it cannot take the new instance down.
//
// Everything else passes, including an owner report about an entity the
// table does not hold or holds under another owner. No arguments.
type ProcessPlugin struct{}

// Name implements Plugin.
func (ProcessPlugin) Name() string { return "process" }

// Decide implements Plugin.
func (ProcessPlugin) Decide(v View, r *Report, out []Verdict) ([]Verdict, bool) {
	if r.Source != SourceOwner || (r.Kind != wire.ReportDown && r.Kind != wire.ReportUp) {
		return out, true
	}
	e, ok := ownedBy(v, r)
	if !ok {
		return out, true
	}
	if r.Incarnation != 0 && r.Incarnation < e.Incarnation {
		return append(out, Verdict{Kind: Ignore, Entity: r.Entity, Name: r.Name}), false
	}
	k := MarkDown
	if r.Kind == wire.ReportUp {
		k = MarkUp
	}
	return append(out, Verdict{Kind: k, Entity: r.Entity, Name: r.Name}), false
}

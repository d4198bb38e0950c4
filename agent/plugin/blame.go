package plugin

import (
	"errors"
	"unicode/utf8"

	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// BlamePrefix starts the cause of a blame alarm: "blamed:rpc-timeout".
const BlamePrefix = "blamed:"

// Blame defaults.
const (
	DefaultBlameWindow = int64(10e9) // 10 s
	DefaultBlameMin    = 3
)

func init() {
	Register("blame", func(m map[string]string) (Plugin, error) {
		a := newArgs(m)
		p := &BlamePlugin{
			Window:  a.duration("window", DefaultBlameWindow),
			Min:     a.int("min", DefaultBlameMin),
			Retract: a.bool("retract", false),
		}
		if err := a.done(); err != nil {
			return nil, err
		}
		if p.Min < 1 {
			return nil, errors.New("min must be at least 1")
		}
		return p, nil
	})
}

// BlamePlugin (registered as "blame") turns the accusation around. A node R
// that keeps reporting faults against an entity E that, as far as the master
// can tell, is fine, while no other node has any complaint about E, is more
// likely the broken one (its NIC, its CPU, its clock). So when, on a fault
// report from R against E:
//
//   - E is in the table, up, and not owned by R (an owner reporting its own
//     entity is not accusing anyone);
//   - E's owner node is alive in the master's membership;
//   - no node other than R reported against E within Window;
//   - R sent at least Min fault reports within Window, this one included;
//
// the verdict is Blame: alarm "blamed:<cause>" (major) on R's node entity,
// and the chain stops, so nothing happens to E. Otherwise it passes.
//
// With retract=true, a blame also clears the alarm <cause> on E if R raised
// it (passthrough raises one for each uncorroborated fault, so R's earlier
// reports may have left it there).
//
// Arguments: window (default 10s), min (default 3), retract (default false).
type BlamePlugin struct {
	Window  int64 // nanoseconds
	Min     int
	Retract bool
}

// Name implements Plugin.
func (*BlamePlugin) Name() string { return "blame" }

// Decide implements Plugin.
func (p *BlamePlugin) Decide(v View, r *Report, out []Verdict) ([]Verdict, bool) {
	if r.Kind != wire.ReportFault {
		return out, true
	}
	e, ok := v.Entity(r.Entity)
	if !ok || e.State != wire.StateUp || e.Owner == r.From || !v.NodeAlive(e.Owner) {
		return out, true
	}
	h := v.History()
	since := v.Now() - p.Window
	if h.OtherReporters(r.Entity, r.From, since) != 0 || h.ByReporter(r.From, since) < p.Min {
		return out, true
	}
	cause := r.Cause
	if cause == "" {
		cause = CauseFault
	}
	node := table.NodeEntityID(r.From)
	var name string
	if _, ok := v.Entity(node); !ok {
		name = table.NodeName(r.From)
	}
	out = append(out, Verdict{
		Kind:     Blame,
		Entity:   node,
		Name:     name,
		Cause:    truncCause(BlamePrefix + cause),
		Severity: wire.SevMajor,
	})
	if p.Retract {
		if a, ok := e.Alarm(cause); ok && a.RaisedBy == r.From {
			out = append(out, Verdict{Kind: Clear, Entity: r.Entity, Name: r.Name, Cause: cause})
		}
	}
	return out, false
}

// truncCause cuts a cause to wire.MaxCause bytes, on a rune boundary, so a
// long reported cause cannot make the table refuse the change.
func truncCause(s string) string {
	if len(s) <= wire.MaxCause {
		return s
	}
	n := wire.MaxCause
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

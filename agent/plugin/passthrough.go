package plugin

import "github.com/fmagent/fmagent/wire"

// CauseFault is the alarm cause of a fault report that gave none.
const CauseFault = "fault"

func init() {
	Register("passthrough", func(m map[string]string) (Plugin, error) {
		a := newArgs(m)
		if err := a.done(); err != nil {
			return nil, err
		}
		return PassthroughPlugin{}, nil
	})
}

// PassthroughPlugin (registered as "passthrough") is the end of the default
// chain: it takes what is left at face value.
//
//   - ReportRaise: Raise the cause (severity as reported, else indeterminate);
//   - ReportClear: Clear the cause;
//   - ReportFault: Raise the cause (or "fault") with the reported severity,
//     else minor: an uncorroborated fault is a candidate, shown to operators
//     as an alarm, never a reason to mark anything down;
//   - ReportDown / ReportUp from the entity's owner: MarkDown / MarkUp. From
//     anyone else they are ignored: a non-owner must report a fault instead.
//
// ReportRegister and ReportUnregister are the core's business (it handles
// them before the chain) and are ignored here. Passthrough never passes.
// No arguments.
type PassthroughPlugin struct{}

// Name implements Plugin.
func (PassthroughPlugin) Name() string { return "passthrough" }

// Decide implements Plugin.
func (PassthroughPlugin) Decide(v View, r *Report, out []Verdict) ([]Verdict, bool) {
	switch r.Kind {
	case wire.ReportRaise:
		sev := r.Severity
		if sev == 0 {
			sev = wire.SevIndeterminate
		}
		return append(out, Verdict{Kind: Raise, Entity: r.Entity, Name: r.Name, Cause: r.Cause, Severity: sev}), false
	case wire.ReportClear:
		return append(out, Verdict{Kind: Clear, Entity: r.Entity, Name: r.Name, Cause: r.Cause}), false
	case wire.ReportFault:
		sev := r.Severity
		if sev == 0 {
			sev = wire.SevMinor
		}
		cause := r.Cause
		if cause == "" {
			cause = CauseFault
		}
		return append(out, Verdict{Kind: Raise, Entity: r.Entity, Name: r.Name, Cause: cause, Severity: sev}), false
	case wire.ReportDown, wire.ReportUp:
		if _, ok := ownedBy(v, r); !ok {
			return out, false
		}
		k := MarkDown
		if r.Kind == wire.ReportUp {
			k = MarkUp
		}
		return append(out, Verdict{Kind: k, Entity: r.Entity, Name: r.Name}), false
	}
	return out, false
}

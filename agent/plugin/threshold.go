package plugin

import (
	"errors"

	"github.com/fmagent/fmagent/wire"
)

// CauseThreshold is threshold's alarm cause when the report gave none.
const CauseThreshold = "threshold"

// Threshold defaults.
const (
	DefaultThresholdK      = 3
	DefaultThresholdM      = 2
	DefaultThresholdWindow = int64(10e9) // 10 s
)

func init() {
	Register("threshold", func(m map[string]string) (Plugin, error) {
		a := newArgs(m)
		p := &ThresholdPlugin{
			K:      a.int("k", DefaultThresholdK),
			M:      a.int("m", DefaultThresholdM),
			Window: a.duration("window", DefaultThresholdWindow),
		}
		if err := a.done(); err != nil {
			return nil, err
		}
		if p.K < 1 || p.M < 1 {
			return nil, errors.New("k and m must be at least 1")
		}
		return p, nil
	})
}

// ThresholdPlugin (registered as "threshold") turns corroborated fault
// reports into a fact: when an entity has drawn at least K fault reports from
// at least M distinct nodes within Window (this report included), it is
// marked down and given a critical alarm (the report's cause, or
// "threshold"). One node alone never reaches M >= 2, however often it
// reports: that is blame's business.
//
// Otherwise, and for every report that is not a ReportFault, it passes.
//
// Arguments: k (default 3), m (default 2), window (default 10s; a Go duration
// with a unit).
type ThresholdPlugin struct {
	K, M   int
	Window int64 // nanoseconds
}

// Name implements Plugin.
func (*ThresholdPlugin) Name() string { return "threshold" }

// Decide implements Plugin.
func (p *ThresholdPlugin) Decide(v View, r *Report, out []Verdict) ([]Verdict, bool) {
	if r.Kind != wire.ReportFault {
		return out, true
	}
	h := v.History()
	since := v.Now() - p.Window
	if h.Count(r.Entity, since) < p.K || h.Reporters(r.Entity, since) < p.M {
		return out, true
	}
	cause := r.Cause
	if cause == "" {
		cause = CauseThreshold
	}
	return append(out,
		Verdict{Kind: MarkDown, Entity: r.Entity, Name: r.Name},
		Verdict{Kind: Raise, Entity: r.Entity, Name: r.Name, Cause: cause, Severity: wire.SevCritical},
	), false
}

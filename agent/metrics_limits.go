package agent

import (
	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/metrics"
)

// limitMetrics registers the counters of what the agent refused to serve
// or hold (issue 9): client limits and the master's bounded service.
func limitMetrics(r *metrics.Registry, a *agent, coreStat func(func(*core.Stats) uint64) func() float64) {
	r.CounterFunc("fmagent_nacks_refused_total", "Nacks and snapshot requests refused (as master): from a peer not live, or over its per-peer budget.",
		coreStat(func(s *core.Stats) uint64 { return s.NacksRefused }))
	r.CounterFunc("fmagent_reports_refused_total", "Client reports refused for their name (as master).",
		coreStat(func(s *core.Stats) uint64 { return s.ReportsRefused }))
	lim := func(f func(*api.LimitStats) uint64) func() float64 {
		return func() float64 {
			srv := a.apiSrv.Load()
			if srv == nil {
				return 0
			}
			st := srv.LimitStats()
			return float64(f(&st))
		}
	}
	for _, c := range []struct {
		reason string
		f      func(*api.LimitStats) uint64
	}{
		{"conns", func(s *api.LimitStats) uint64 { return s.ConnsRefused }},
		{"idle", func(s *api.LimitStats) uint64 { return s.IdleClosed }},
		{"frame_timeout", func(s *api.LimitStats) uint64 { return s.FrameTimeouts }},
		{"throttled", func(s *api.LimitStats) uint64 { return s.Throttled }},
	} {
		r.CounterFunc("fmagent_api_refused_total", "Client connections or writes the API limits refused or closed, by reason.", lim(c.f), "reason", c.reason)
	}
}

package netsim

import (
	"time"

	"github.com/fmagent/fmagent/wire"
)

// WidestBound is the longest detection bound any running node holds for
// node id now: the configured bound, or more for a peer that was falsely
// judged down lately (agent/core/detector.go). A crash of id is detected
// within it (plus an interval for the master's verdict to reach everyone).
func (s *Sim) WidestBound(id wire.NodeID) time.Duration {
	b := s.Opt.Interval * time.Duration(s.Opt.Misses)
	for _, n := range s.Nodes {
		if !n.Up || n.Paused || n.ID == id {
			continue
		}
		for _, p := range n.Core.Status().Peers {
			if p.Node == id && p.Bound > b {
				b = p.Bound
			}
		}
	}
	return b
}

// WidestBoundAny is the longest detection bound any running node holds for
// any peer now.
func (s *Sim) WidestBoundAny() time.Duration {
	b := s.Opt.Interval * time.Duration(s.Opt.Misses)
	for _, n := range s.Nodes {
		if n.Up && !n.Paused {
			b = max(b, s.WidestBound(n.ID))
		}
	}
	return b
}

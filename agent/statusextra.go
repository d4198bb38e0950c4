package agent

import (
	"sync"
	"time"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/version"
	"github.com/fmagent/fmagent/wire"
)

// statusExtra fills the parts of the API's Status added for operators
// (issue 11): version, timing in force, quorum, partitions, refusal.
func statusExtra(out *api.Status, st *core.Status, profile string) {
	out.Version = agentVersion()
	out.Timing = api.Timing{Profile: profile, Interval: api.Duration(st.Interval), Misses: st.Misses,
		Detection: api.Duration(st.Interval * time.Duration(st.Misses))}
	present := 0
	for _, id := range st.Members {
		if id == st.Node {
			present++
			continue
		}
		for _, p := range st.Peers {
			if p.Node == id && p.Alive {
				present++
			}
		}
	}
	out.Quorum = api.Quorum{Members: append([]wire.NodeID{}, st.Members...), Present: present, Needed: len(st.Members)/2 + 1, Ok: st.Quorum}
	out.Refused = st.Refused
	for net, parts := range st.Partitions {
		if len(parts) > 1 {
			if out.Partitions == nil {
				out.Partitions = make(map[string][][]wire.NodeID)
			}
			out.Partitions[netName(wire.Net(net))] = parts
		}
	}
}

func heardAt(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// agentVersion is this build's version (package version: the one the
// Makefile stamps, else the module's, else "(devel)" with the VCS
// revision), cut to what a heartbeat carries. It is carried in every
// heartbeat so `fmctl members` shows every peer's. Until 4 December 2026
// it read the build information itself and ignored the stamp: every
// agent built by make said "devel" in `fmctl status`.
var agentVersion = sync.OnceValue(func() string {
	v := version.String()
	if len(v) > wire.MaxVersion {
		v = v[:wire.MaxVersion]
	}
	return v
})

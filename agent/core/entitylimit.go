package core

import (
	"errors"

	"github.com/fmagent/fmagent/agent/plugin"
	"github.com/fmagent/fmagent/wire"
)

// Entity limits: the master refuses a client's registration, and a report
// that would create an entity, past either limit (issue 9: 68,131
// registrations were all answered ok while shared memory stopped at 4,096
// and the cluster ran 81 elections). Nodes and links (the master's own
// membership findings) and re-asserted writes (acknowledged before, so
// never lost) are not refused.
const (
	// DefaultMaxEntities is the cluster's entity limit when Config gives
	// none: shared memory's default capacity (config.DefaultShmEntities).
	DefaultMaxEntities = 4096
	// DefaultMaxEntitiesPerOwner is one node's limit when Config gives none.
	DefaultMaxEntitiesPerOwner = 1024
)

// ErrEntityLimit: the master refused to create an entity: the cluster holds
// Config.MaxEntities entities, or the owner Config.MaxEntitiesPerOwner.
var ErrEntityLimit = errors.New("core: entity limit reached (the cluster's or the owning node's): not registered")

// ackLimit: not applied, an entity limit is reached (ErrEntityLimit).
const ackLimit = 8

// entityLimits are the limits in force (the defaults for zero).
func (c *Config) entityLimits() (cluster, perOwner int) {
	cluster, perOwner = c.MaxEntities, c.MaxEntitiesPerOwner
	if cluster <= 0 {
		cluster = DefaultMaxEntities
	}
	if perOwner <= 0 {
		perOwner = DefaultMaxEntitiesPerOwner
	}
	return cluster, min(perOwner, cluster)
}

// overEntityLimit decides whether creating entity id, owned by owner, for
// report r would pass a limit, counting what the group g registers before
// it; if so it sets g's answer to ackLimit (the requester's client gets
// the error limit, and its audit line says so). An entity the table holds is
// never over the limit (its registration changes nothing in the count).
func (n *Node) overEntityLimit(g *group, r *plugin.Report, id uint64, owner wire.NodeID) bool {
	if r.Source == plugin.SourceMembership || !g.re.ver.IsZero() {
		return false
	}
	if _, ok := n.tab.Get(id); ok {
		return false
	}
	cluster, perOwner := n.cfg.entityLimits()
	total, mine := n.tab.Len(), 0
	for i := range g.changes {
		if c := &g.changes[i]; c.Kind == wire.ChangeRegister {
			total++
			if c.Owner == owner {
				mine++
			}
		}
	}
	if total >= cluster {
		g.code = ackLimit
		return true
	}
	if mine+n.tab.Owned(owner) >= perOwner {
		g.code = ackLimit
		return true
	}
	return false
}

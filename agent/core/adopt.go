package core

import (
	"time"

	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// Adoption: a node heard under a new incarnation without having been seen
// down restarted its agent faster than detection; the host may have kept
// running, and with it the node's services and processes. They are not
// marked down at once: for a grace period the restarted agent may adopt
// them again (it re-registers what still runs: a process by its PID and
// start time, a service as its owner), which brings them under the new
// incarnation. When the grace period is over, what the node owns that is
// still up under an older incarnation (links apart: they are judged from
// heartbeats) really died with the old agent, or its host: down.
//
// The pending adoptions are master state; a new master finds them again
// from the table (an up entity under an older incarnation than its up
// owner node's), giving each a full grace period from when it took over.

// AdoptGrace is how long a restarted node's agent has to adopt what it
// owns before the master marks it down: at least MinAdoptGrace, or 20
// detection times.
func (c *Config) AdoptGrace() time.Duration { return max(MinAdoptGrace, 20*c.Detection()) }

// MinAdoptGrace is the least adoption grace period.
const MinAdoptGrace = 2 * time.Second

type adoptions struct {
	since   time.Time // ms.since when pending was built: a new master rebuilds it
	pending map[wire.NodeID]adoption
}

type adoption struct {
	inc      uint64 // the node's new incarnation
	deadline time.Time
}

// startAdoption gives node, back under incarnation inc, the grace period to
// adopt what it owns. Master only.
func (n *Node) startAdoption(now time.Time, node wire.NodeID, inc uint64) {
	a := &n.ms.adopt
	n.adoptInit(now)
	if p, ok := a.pending[node]; ok && p.inc >= inc {
		return
	}
	a.pending[node] = adoption{inc: inc, deadline: now.Add(n.cfg.AdoptGrace())}
}

// adoptInit (re)builds the pending adoptions after this node became
// master, from the table.
func (n *Node) adoptInit(now time.Time) {
	a := &n.ms.adopt
	if a.pending != nil && a.since.Equal(n.ms.since) {
		return
	}
	a.since = n.ms.since
	if a.pending == nil {
		a.pending = make(map[wire.NodeID]adoption)
	}
	clear(a.pending)
	deadline := now.Add(n.cfg.AdoptGrace())
	n.tab.Range(func(e *table.Entity) bool {
		if e.Kind == wire.KindLink || e.Kind == wire.KindNode || e.State != wire.StateUp || !e.OwnedBy(e.Owner) {
			return true
		}
		if ne, ok := n.tab.Get(table.NodeEntityID(e.Owner)); ok && ne.State == wire.StateUp && ne.Incarnation > e.Incarnation {
			if p, ok := a.pending[e.Owner]; !ok || p.inc < ne.Incarnation {
				a.pending[e.Owner] = adoption{inc: ne.Incarnation, deadline: deadline}
			}
		}
		return true
	})
}

// adoptTick marks down, once a node's grace period is over, what it owns
// that is still up under an older incarnation. Master only.
func (n *Node) adoptTick(now time.Time) {
	n.adoptInit(now)
	a := &n.ms.adopt
	for _, node := range n.sortedAdoptions() {
		p := a.pending[node]
		if now.Before(p.deadline) {
			continue
		}
		delete(a.pending, node)
		ne, ok := n.tab.Get(table.NodeEntityID(node))
		if !ok || ne.State != wire.StateUp || ne.Incarnation != p.inc {
			continue // down again (and its entities with it), or newer still
		}
		g := &group{}
		for _, cid := range n.tab.Contained(node, nil) {
			if ce, ok := n.tab.Get(cid); ok && ce.State == wire.StateUp && ce.Kind != wire.KindLink && ce.Incarnation < p.inc {
				g.changes = append(g.changes, wire.Change{Kind: wire.ChangeState, Entity: cid, State: wire.StateDown,
					Incarnation: ce.Incarnation, By: n.cfg.Node, At: now.UnixNano()})
			}
		}
		if len(g.changes) > 0 {
			g.prio = true
			n.issue(g)
		}
	}
}

// sortedAdoptions lists the nodes with a pending adoption in ID order (the
// core's outputs must not depend on map order).
func (n *Node) sortedAdoptions() []wire.NodeID {
	var ids []wire.NodeID
	for id := range n.ms.adopt.pending {
		ids = append(ids, id)
	}
	for i := 1; i < len(ids); i++ {
		for j := i; j > 0 && ids[j] < ids[j-1]; j-- {
			ids[j], ids[j-1] = ids[j-1], ids[j]
		}
	}
	return ids
}

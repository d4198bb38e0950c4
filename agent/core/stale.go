package core

// Staleness: no word from a master for longer than the stale timeout.

import (
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// StaleCause is the alarm a node raises on itself when it has had no master
// for the stale timeout.
const StaleCause = "stale-cluster"

// raiseStaleLocal marks the node's own copy of the table: no master can
// order this change, so it is local and not numbered; the next snapshot
// from a master replaces it.
func (n *Node) raiseStaleLocal() {
	id := table.NodeEntityID(n.cfg.Node)
	if _, ok := n.tab.Get(id); !ok {
		return
	}
	c := wire.Change{Seq: n.tab.Seq(), Kind: wire.ChangeRaise, Entity: id, Severity: wire.SevMajor,
		By: n.cfg.Node, At: n.now.UnixNano(), Cause: []byte(StaleCause)}
	if n.tab.Apply(&c) == nil {
		n.rd.Changed = append(n.rd.Changed, id)
	}
}

func (n *Node) setFresh() {
	if !n.stale {
		return
	}
	n.stale = false
	n.event(Event{Kind: EvFresh})
	id := table.NodeEntityID(n.cfg.Node)
	if e, ok := n.tab.Get(id); ok && has(e.Alarm(StaleCause)) && !n.isMaster() {
		c := wire.Change{Seq: n.tab.Seq(), Kind: wire.ChangeClear, Entity: id, By: n.cfg.Node, At: n.now.UnixNano(), Cause: []byte(StaleCause)}
		if n.tab.Apply(&c) == nil {
			n.rd.Changed = append(n.rd.Changed, id)
		}
	}
}

package core

import (
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// Restore loads the cluster table a master-eligible node saved in an
// earlier life (rows, as they stood at seq) into this node's table, so that
// a full-cluster restart comes back with every registered entity and every
// alarm raised and not cleared. Call it once, after New and before the
// node hears anyone; it returns how many rows or alarms it refused (each
// also an EvRejected event).
//
// What is restored, and what is not trusted from disk (the decision lives
// here, where the simulator sees it):
//   - every entity with its kind, owner, incarnation and alarms;
//   - the state of services and custom entities as it was: their owner
//     spoke for it, and speaks again when it re-registers;
//   - nodes, links and processes come back down: their state must be
//     observed again (the master marks nodes and links up when it hears
//     them; a process comes up when its owner registers it again).
//
// The node then elects or follows as usual: a master keeps its table (this
// one, if it wins) and followers replace theirs with the master's snapshot.
func (n *Node) Restore(rows []table.Entity, seq uint64) int {
	if n.tab.Len() != 0 || n.el.State().Master != 0 {
		n.event(Event{Kind: EvRejected, Reason: "restore: the table is no longer empty"})
		return len(rows)
	}
	refused := 0
	for i := range rows {
		r := &rows[i]
		state := r.State
		switch r.Kind {
		case wire.KindNode, wire.KindLink, wire.KindProcess:
			state = wire.StateDown
		}
		c := wire.Change{Kind: wire.ChangeRegister, Entity: table.ID(r.Name), Name: []byte(r.Name), EntityKind: r.Kind,
			Owner: r.Owner, State: state, Incarnation: r.Incarnation, Seq: r.ChangedSeq, At: r.ChangedAt, By: r.ChangedBy}
		if err := n.tab.Apply(&c); err != nil {
			refused++
			n.event(Event{Kind: EvRejected, Reason: "restore " + r.Name + ": " + err.Error()})
			continue
		}
		for j := range r.Alarms {
			a := &r.Alarms[j]
			c := wire.Change{Kind: wire.ChangeRaise, Entity: c.Entity, Cause: []byte(a.Cause), Severity: a.Severity,
				Seq: a.Seq, At: a.RaisedAt, By: a.RaisedBy}
			if err := n.tab.Apply(&c); err != nil {
				refused++
				n.event(Event{Kind: EvRejected, Reason: "restore " + r.Name + " alarm " + a.Cause + ": " + err.Error()})
			}
		}
	}
	n.tab.SetSeq(max(seq, n.tab.Seq()))
	n.rd.Reset = true
	return refused
}

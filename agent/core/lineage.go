package core

import "github.com/fmagent/fmagent/wire"

// lineage is what this node knows of its table's history: the reigns whose
// groups it applied, each from its start (a follower joins a reign through
// its master's snapshot) up to the newest version that reign stamped and
// this table applied. A write whose version a reign here stamped at or
// below that was applied to this table: if the table no longer shows it, a
// newer write removed it, whether or not a tombstone still says so.
//
// It answers the one case the ledger's forgetting (ledgercover.go) leaves
// to the tombstone: a write re-asserted by a node that did not apply the
// clear or unregister that removed it (cut off from both networks when it
// was decided), to a master whose table had forgotten that tombstone since
// (bounded: table.MaxTombstones). Applied again, it undid the acknowledged
// clear (chaos -maxtombs 4, seed 424). A write from the losing side of a
// split brain was stamped by a reign this table never followed (or past
// what it applied of it), so it is never taken for one of these.
//
// Only what this node saw counts, so nothing is claimed that the table
// does not hold: a snapshot replaces the lineage with the sending master's
// reign alone, up to the newest version of that reign the snapshot
// carries; the groups of the reign the node follows, or leads, extend it.
// It is not persisted and not sent: a master knows the reign it followed
// before its own, and its own.
type lineage struct {
	reigns []reignSpan // oldest first, at most maxLineage
}

type reignSpan struct {
	epoch  uint64
	master wire.NodeID
	last   uint64 // the newest version's seq this reign stamped, applied here
}

// maxLineage bounds the reigns kept: a master keeps what it followed since
// its last snapshot, one reign or a few.
const maxLineage = 16

func (l *lineage) init() { l.reigns = make([]reignSpan, 0, maxLineage) }

func (l *lineage) reset() { l.reigns = l.reigns[:0] }

// note records that this table applied v, in the reign of master at epoch
// (the reign the node follows or leads): only a version that reign itself
// stamped extends it; a re-asserted write keeps the version another reign
// gave it, which says nothing of that reign's other writes.
func (l *lineage) note(epoch uint64, master wire.NodeID, v wire.WriteVersion) {
	if v.Epoch != epoch || v.Node != master || master == 0 {
		return
	}
	if k := len(l.reigns); k > 0 && l.reigns[k-1].epoch == epoch && l.reigns[k-1].master == master {
		l.reigns[k-1].last = max(l.reigns[k-1].last, v.Seq)
		return
	}
	if len(l.reigns) == maxLineage {
		copy(l.reigns, l.reigns[1:])
		l.reigns = l.reigns[:maxLineage-1]
	}
	l.reigns = append(l.reigns, reignSpan{epoch: epoch, master: master, last: v.Seq})
}

// holds reports whether a write acknowledged with version v was applied to
// this table.
func (l *lineage) holds(v wire.WriteVersion) bool {
	for i := range l.reigns {
		if r := &l.reigns[i]; r.epoch == v.Epoch && r.master == v.Node {
			return v.Seq <= r.last
		}
	}
	return false
}

package core

import (
	"unsafe"

	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// The ledger forgets what this node's own table shows superseded: a raise
// of an alarm the table has cleared under a newer version, and what it
// holds on an entity the table has unregistered under a newer version
// (registration, raises, the owner's state). Its own clears and
// unregisters stay: they are its word, which a master that never had them
// must still hear.
//
// Re-asserted after a master change, such a write was refused by a master
// whose table still held the clear's tombstone, and applied again by one
// whose table had forgotten it: tombstones are bounded (table.MaxTombstones,
// the oldest by last clear forgotten first), so an acknowledged clear or
// unregister was undone once enough other alarms had been cleared since. With four
// tombstones kept (chaos -maxtombs 4) that was 20 seeds of the first
// 1,500, among them 105, 362 and 905: another node's clear applied in every
// table, the raiser's ledger still holding its raise, a failover, and the
// raise back in every table. Forgetting at once leaves the tombstone needed
// only against a node that did not apply the clear: one cut off when it
// was decided (the master's lineage answers that: lineage.go), or on the
// other side of a split brain.

// clearApplied: this node's table applied a clear of alarm cause on entity
// id under version v. Called for every update applied, so it allocates
// nothing (cause, from a packet, is only looked up with).
func (l *ledger) clearApplied(id uint64, cause []byte, v wire.WriteVersion) {
	if len(l.items) == 0 {
		return
	}
	k := ledgerKey{id, unsafe.String(unsafe.SliceData(cause), len(cause))}
	if r, ok := l.items[k]; ok && r.Kind == wire.ReportRaise && r.Ver.Less(v) {
		l.del(k)
	}
}

// unregisterApplied: this node's table applied the unregister of entity id
// under version v.
func (l *ledger) unregisterApplied(id uint64, v wire.WriteVersion) {
	if l.ents[id] == 0 {
		return
	}
	for i := 0; i < len(l.order); i++ {
		k := l.order[i]
		if r := l.items[k]; k.entity == id && !isTomb(&r) && r.Ver.Less(v) {
			l.del(k)
			i--
		}
	}
}

// forgetCovered forgets what tab shows superseded (as clearApplied and
// unregisterApplied would have, had this node applied the clear or
// unregister itself), after a snapshot replaced the table.
func (l *ledger) forgetCovered(tab *table.Table) {
	for i := 0; i < len(l.order); i++ {
		if k := l.order[i]; l.covered(tab, k) {
			l.del(k)
			i--
		}
	}
}

// forgetCoveredAck forgets the write of r, just recorded, if tab shows it
// superseded already: its acknowledgement came after the update that
// superseded it. Only r's own item is looked at, so a storm of
// acknowledgements costs no more than before.
func (l *ledger) forgetCoveredAck(tab *table.Table, r *Request) {
	id := table.ID(r.Name)
	k := ledgerKey{id, r.Cause}
	switch r.Kind {
	case wire.ReportRegister:
		k.cause = ""
	case wire.ReportDown, wire.ReportUp:
		if _, ok := l.items[ledgerKey{id, stateKey}]; !ok {
			k.cause = "" // kept with the registration
		} else {
			k.cause = stateKey
		}
	case wire.ReportRaise:
	default:
		return // a clear or an unregister: this node's word
	}
	if _, ok := l.items[k]; ok && l.covered(tab, k) {
		l.del(k)
	}
}

// covered reports whether tab shows item k superseded: unregistered since
// (or registered again since: a new life, born of a newer unregister), or,
// for a raise, cleared since. This node's own clears and unregisters
// never are.
func (l *ledger) covered(tab *table.Table, k ledgerKey) bool {
	r := l.items[k]
	if isTomb(&r) {
		return false
	}
	ev, born, present := tab.EntityVersion(k.entity)
	if !present && r.Ver.Less(ev) || present && r.Ver.Less(born) {
		return true
	}
	if r.Kind == wire.ReportRaise {
		av, on := tab.AlarmVersion(k.entity, k.cause)
		return !on && r.Ver.Less(av)
	}
	return false
}

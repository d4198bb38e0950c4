package core

import (
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// The ledger keeps what re-assertion needs and no more (issue 9: a raise
// flood from one client grew the record of acknowledged raises to 300-488
// MB, and a node re-sending it after a switchover stayed wedged). Per entity
// that is its registration or unregister, the owner's word on its state, and
// its raises: maxAlarms of them once the table has caught up (the table
// never holds more alarms on an entity, so a raise beyond that was
// displaced by the master: a more severe one took its place), at most
// twice that while it is behind (boundAlarms). Tombstones are bounded apart
// (maxLedgerTombs), and entities by the master's entity limits
// (entitylimit.go); so the whole ledger is bounded.

// boundAlarms forgets this node's raises on entity id beyond maxAlarms
// (tab's limit): first those tab shows cleared since they were
// acknowledged (absent, under a newer clear: another node's, or a
// displacement; covered in ledgercover.go), which re-asserted would be
// superseded anyway: with the table up to date that is exact. The rest
// stay while the table is behind (the update that carried the last raise,
// or the displacement it caused, not yet applied here): its clear, once
// applied, takes the displaced one (clearApplied), and a master change
// decides between them (a re-asserted raise finds the entity full:
// displaced on arrival). Only beyond
// ledgerAlarmSlack times the limit, a flood the table does not keep up
// with, does the bound guess: the least severe first, then the oldest (the
// alarm the master displaces: displace in reports.go), never the newest
// (by version), the last of them the master applied, which may have
// displaced the others. It returns how many it forgot.
//
// By severity alone, it forgot the raise just acknowledged and kept one
// another node had cleared: node 1's ledger held its raise of cause-2,
// which node 2 cleared, and its raise of cause-1, applied in cause-2's
// place, one alarm allowed; cause-1, less severe, went, and after the next
// master change no table showed it (chaos -maxalarms 1, seed 878 of two
// nodes). With the table a step behind, node 5's warning displaced its
// own critical raise and the bound forgot the warning (seed 7462 of five
// nodes); and where the acknowledgement of an older raise, displaced
// since, came after the newer one's, sparing the raise just acknowledged
// instead of the newest forgot the newer, critical one (seed 7516 of 3-5
// nodes and 40 actions). Guessing at the limit itself, it forgot a raise
// no table held: node 2's raise of cause-1, acknowledged by a master that
// died, waiting to be re-asserted to the next (restarted with an empty
// table), when that master's acknowledgement of node 2's later raise of
// cause-0 came first: one alarm allowed, two held, the older forgotten,
// never re-asserted, and absent from every table although nothing had
// cleared or displaced it (seed 3191 of 3-5 nodes, 40 actions, one alarm).
func (l *ledger) boundAlarms(id uint64, tab *table.Table) int {
	maxAlarms := tab.MaxAlarms()
	if maxAlarms <= 0 || l.alarmsOn(id) <= maxAlarms {
		return 0
	}
	forgot := 0
	for i := 0; i < len(l.order); i++ {
		k := l.order[i]
		if k.entity != id || k.cause == "" || k.cause == stateKey {
			continue
		}
		if l.covered(tab, k) {
			l.del(k)
			forgot++
			i--
		}
	}
	for {
		n, least, newest := 0, -1, -1
		var lk, nk ledgerKey
		for i, k := range l.order {
			if k.entity != id || k.cause == "" || k.cause == stateKey {
				continue
			}
			r := l.items[k]
			if r.Kind != wire.ReportRaise {
				continue
			}
			n++
			if newest < 0 || l.items[nk].Ver.Less(r.Ver) {
				newest, nk = i, k
			}
		}
		if n <= ledgerAlarmSlack*maxAlarms {
			return forgot
		}
		for i, k := range l.order {
			if k.entity != id || k.cause == "" || k.cause == stateKey || i == newest {
				continue
			}
			r := l.items[k]
			if r.Kind != wire.ReportRaise {
				continue
			}
			if least < 0 || r.Severity < l.items[lk].Severity ||
				r.Severity == l.items[lk].Severity && r.Ver.Less(l.items[lk].Ver) {
				least, lk = i, k
			}
		}
		l.del(lk)
		forgot++
	}
}

// ledgerAlarmSlack: how many times an entity's alarm limit of this node's
// raises the ledger holds while its table is behind, before it guesses
// which were displaced.
const ledgerAlarmSlack = 2

// alarmsOn is how many raises on entity id the ledger holds.
func (l *ledger) alarmsOn(id uint64) int {
	n := 0
	for _, k := range l.order {
		if k.entity == id && k.cause != "" && k.cause != stateKey && l.items[k].Kind == wire.ReportRaise {
			n++
		}
	}
	return n
}

// ledgerLen is the number of writes the ledger holds (tests).
func (l *ledger) ledgerLen() int { return len(l.items) }

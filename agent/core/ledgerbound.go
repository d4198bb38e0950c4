package core

import "github.com/fmagent/fmagent/wire"

// The ledger keeps what re-assertion needs and no more (issue 9: a raise
// flood from one client grew the record of acknowledged raises to 300-488
// MB, and a node re-sending it after a switchover stayed wedged). Per entity
// that is its registration or unregister, the owner's word on its state, and
// at most maxAlarms raises: the table never holds more alarms on an entity,
// so a raise this node's ledger holds beyond that was displaced by the
// master (a more severe one took its place). Tombstones are bounded apart
// (maxLedgerTombs), and entities by the master's entity limits
// (entitylimit.go); so the whole ledger is bounded.

// boundAlarms forgets this node's raises on entity id beyond maxAlarms: the
// least severe first, then the oldest, the alarm the master displaces
// (displace in reports.go). It returns how many it forgot.
func (l *ledger) boundAlarms(id uint64, maxAlarms int) int {
	if maxAlarms <= 0 {
		return 0
	}
	forgot := 0
	for {
		n, least := 0, -1
		var lk ledgerKey
		for i, k := range l.order {
			if k.entity != id || k.cause == "" || k.cause == stateKey {
				continue
			}
			r := l.items[k]
			if r.Kind != wire.ReportRaise {
				continue
			}
			n++
			if least < 0 || r.Severity < l.items[lk].Severity ||
				r.Severity == l.items[lk].Severity && r.Ver.Less(l.items[lk].Ver) {
				least, lk = i, k
			}
		}
		if n <= maxAlarms {
			return forgot
		}
		l.del(lk)
		forgot++
	}
}

// ledgerLen is the number of writes the ledger holds (tests).
func (l *ledger) ledgerLen() int { return len(l.items) }

package core

import "github.com/fmagent/fmagent/wire"

// LedgerLen is the number of writes n's ledger holds.
func LedgerLen(n *Node) int { return n.ledger.ledgerLen() }

// SendSnapshot makes n send its whole table to node to, as it does for a
// Nack it cannot serve from its ring.
func SendSnapshot(n *Node, to wire.NodeID) { n.sendSnapshot(to) }

// DirtyLedger makes n re-assert its whole ledger at its next tick, as it
// does after a master change.
func DirtyLedger(n *Node) { n.ledger.dirty = true }

// WantSnapshot makes n accept the next snapshot, as after asking for one.
func WantSnapshot(n *Node) { n.wantSnapshot = true }

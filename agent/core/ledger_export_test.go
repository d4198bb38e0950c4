package core

import "github.com/fmagent/fmagent/wire"

// LedgerLen is the number of writes n's ledger holds.
func LedgerLen(n *Node) int { return n.ledger.ledgerLen() }

// SendSnapshot makes n send its whole table to node to, as it does for a
// Nack it cannot serve from its ring.
func SendSnapshot(n *Node, to wire.NodeID) { n.sendSnapshot(to) }

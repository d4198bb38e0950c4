package core

// LedgerLen is the number of writes n's ledger holds.
func LedgerLen(n *Node) int { return n.ledger.ledgerLen() }

package core

import "github.com/fmagent/fmagent/agent/plugin"

// SetChain replaces the master's plugin chain (a configuration reload). The
// new chain keeps the old one's report history. Only the reports handled
// from now on go through it; nothing already decided changes.
func (n *Node) SetChain(c *plugin.Chain) {
	if c == nil {
		return
	}
	c.KeepHistory(n.chain)
	n.chain = c
	n.hist = c.History()
}

package core

import "time"

// Deafened tells the core that at now this node's own receive path could
// not keep up: a socket still held datagrams after the shell read its
// budget of them (a flood arriving faster than it is rejected). The kernel
// then drops datagrams when the socket's buffer is full, peers' heartbeats
// among them, so a silence this node observes now is its own deafness, not
// the peers'. As after a stall of its own (Tick), no peer is judged silent
// until an interval after the last time it was deafened.
//
// The price: while a flood lasts, a real death goes unjudged by this node
// (its peers, if not flooded, still judge it). A flood from a non-member
// must not cause a false down, a failover and fencing (issue 9); it is
// counted and logged where it is rejected.
//
// The simulator never calls it: a simulated node is never deafened, and the
// traces do not change.
func (n *Node) Deafened(now time.Time) {
	n.advance(now)
	if t := now.Add(n.cfg.Interval); t.After(n.judgeAfter) {
		n.judgeAfter = t
	}
	n.deafCount++
}

// DeafCount is how many times the shell reported this node deafened.
func (n *Node) DeafCount() uint64 { return n.deafCount }

// JudgementNear reports whether a peer or one of its links may be judged
// silent within d of now: whether the shell must read, before this tick,
// what could have made this node deaf (Deafened). Far from any judgement a
// drop the kernel counted changes nothing this tick decides; it is seen at
// the latest at the tick that judges.
func (n *Node) JudgementNear(now time.Time, d time.Duration) bool {
	det := n.cfg.Detection()
	by := now.Add(d)
	for _, id := range n.peerIDs {
		p := n.peers[id]
		for net, h := range p.heard {
			if p.linkUp[net] && !h.Add(det).After(by) {
				return true // a link
			}
		}
		// The peer is judged by its latest word on any network.
		if last := p.lastHeard(); p.alive && !last.IsZero() && !last.Add(det).After(by) {
			return true
		}
	}
	return false
}

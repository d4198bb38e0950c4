package core

import (
	"time"

	"github.com/fmagent/fmagent/wire"
)

// The master's retransmission and snapshot service costs it far more than
// the request: one 72-byte snapshot request made it send the whole table
// (340 kB). It is given only to live members, and bounded per peer, so that
// no peer, and nobody replaying or forging one, can turn the master into an
// amplifier or keep it busy.

// retransmitPerSecond is how many changes one peer may have retransmitted
// per second, in ring sizes.
const retransmitPerSecond = 1

// mayServe reports whether the master serves m from p now: p must be a
// live member (heard on a network within the detection time, not gone),
// and retransmissions within the peer's budget per second. Refusals are
// counted.
func (n *Node) mayServe(p *peer, m *wire.Nack) bool {
	now := n.now
	heard := false
	for net := range p.heard {
		heard = heard || n.heardOn(p, net, now)
	}
	if !heard || p.left {
		n.stats.NacksRefused++
		return false
	}
	if m.From == 0 || n.ms.get(m.From) == nil {
		// A snapshot. A follower asks at most once per interval, on both
		// networks: the second copy of an ask, within half an interval of
		// the first, is not served again. Each snapshot goes out on both
		// networks, so every ask cost the master's loop four copies of the
		// whole table where one is needed and a second covers a loss (a
		// snapshot of 4,000 entities is some 300 datagrams; traced, a
		// master's loop ran 90–100 ms at a stretch in sendSnapshot). Not
		// rate-limited beyond that: a gap between snapshots delayed
		// recovery from a lost one under packet loss enough to change
		// elections in netsim's chaos runs.
		if !p.snapServed.IsZero() && now.Sub(p.snapServed) < n.cfg.Interval/2 {
			return false // not a refusal: the ask was answered
		}
		p.snapServed = now
		return true
	}
	if now.Sub(p.serveSecond) >= time.Second {
		p.serveSecond, p.servedInSec = now, 0
	}
	k := 1
	if m.To >= m.From {
		k = int(min(m.To-m.From+1, uint64(len(n.ms.ring))))
	}
	if p.servedInSec+k > retransmitPerSecond*len(n.ms.ring) {
		n.stats.NacksRefused++
		return false
	}
	p.servedInSec += k
	return true
}

package core

import (
	"time"

	"github.com/fmagent/fmagent/wire"
)

// The detector's rules beyond "silent for the bound on both networks"
// (issue 13), to tell a dead peer from a slow one or from a lossy link:
//
//   - Vouching (Lifeguard's indirect probes, without the probes: every
//     heartbeat already carries its sender's view). A peer this node has not
//     heard for its bound is not judged down while a live member's latest
//     heartbeat says it heard that peer recently (LinkRecent: within the
//     bound less three intervals, so a dead peer's last vouch is withdrawn,
//     and seen withdrawn here, before this node's own bound runs out — a
//     vouch never delays the detection of a real death). A vouch bridges at
//     most one more bound: a one-sided cut that lasts is judged as before.
//   - The stall deferral (core.go: Tick): a node whose own ticks come late
//     judges no one until it has read what waited in its receive queue,
//     and for as long as it was stalled (at most a bound), since the peers
//     may have been stalled with it.
//   - Widening after a false down (knet's pong backoff, BFD's detect
//     multiplier): a peer judged down that speaks again at the same
//     incarnation within falseDownWindow was slow, not dead (or cut off for
//     a moment; a restarted one comes back under a new incarnation).
//     Its bound is widened by one bound (up to maxWiden bounds extra) and the
//     widening halves every widenDecay it stays heard. Shown in Status and
//     in the metrics. The widening survives the new incarnation a falsely
//     judged node takes when it learns of the verdict (it spoke at the old
//     one first), but not a verdict proved true: a peer judged down whose
//     judged incarnation never speaks again, and that comes back under a
//     new one, had died (crashed, killed, restarted), and the new process
//     is judged at the configured bound. Kept, the widening made every
//     later real death of that node wait up to a bound more, for tens of
//     seconds of halvings (the end-to-end benchmark kills and restarts the
//     same nodes: detections at two bounds after one false down).
const (
	falseDownWindow = time.Second
	widenDecay      = 10 * time.Second
	maxWiden        = 4
)

// peerDetector is the detector's state of one peer.
type peerDetector struct {
	downAt   time.Time     // when this node last judged it silent
	downInc  uint64        // its incarnation then
	widen    time.Duration // extra bound after false downs, at widenAt
	widenAt  time.Time
	vouchFor time.Time // when a vouch first kept it alive in this silence
}

// DetectorStats are the detector's counters.
type DetectorStats struct {
	FalseDowns uint64 // peers judged down that spoke again within falseDownWindow
	Vouched    uint64 // judgements of silence a live member's vouch deferred
}

// DetectorStats returns the detector's counters.
func (n *Node) DetectorStats() DetectorStats { return n.detStats }

// Bound is the silence after which p is judged lost now: the configured
// bound plus what false downs added, decayed.
func (n *Node) bound(p *peer) time.Duration {
	d := n.cfg.Detection()
	w := p.det.widen
	if w == 0 {
		return d
	}
	if halvings := n.now.Sub(p.det.widenAt) / widenDecay; halvings > 0 {
		if halvings >= 16 {
			w = 0
		} else {
			w >>= uint(halvings)
		}
		if w < n.cfg.Interval {
			w = 0
		}
		p.det.widen, p.det.widenAt = w, p.det.widenAt.Add(halvings*widenDecay)
	}
	return d + w
}

// recentWindow is how recently a heartbeat's sender must have heard a peer
// to set LinkRecent for it; 0 (no vouching) with fewer than four misses.
func (n *Node) recentWindow() time.Duration {
	return n.cfg.Detection() - 3*n.cfg.Interval
}

// recent reports whether this node heard p within the recent window, for
// the LinkRecent bit of its heartbeat.
func (n *Node) recent(p *peer) bool {
	w := n.recentWindow()
	if w <= 0 {
		return false
	}
	for net := range p.heard {
		if !p.heard[net].IsZero() && n.now.Sub(p.heard[net]) <= w {
			return true
		}
	}
	return false
}

// vouched reports whether a live member's latest heartbeat says it heard
// p recently, at p's current incarnation, and the vouch has not yet
// outlasted one more bound of silence.
func (n *Node) vouched(p *peer, now time.Time) bool {
	if n.recentWindow() <= 0 {
		return false
	}
	fresh := 2 * n.cfg.Interval // a member's latest heartbeat is this recent
	for _, id := range n.peerIDs {
		m := n.peers[id]
		if m == p || !n.live(m) || !m.hbOK {
			continue
		}
		if now.Sub(m.lastHeard()) > fresh {
			continue
		}
		for i := 0; i < int(m.hb.NPeers); i++ {
			v := &m.hb.Peers[i]
			if v.Node != p.id || v.Incarnation != p.inc || v.Links&wire.LinkRecent == 0 || v.Links&wire.LinkFenced != 0 {
				continue
			}
			if p.det.vouchFor.IsZero() {
				p.det.vouchFor = now
			}
			if now.Sub(p.det.vouchFor) > n.bound(p) {
				return false // a lasting one-sided cut: judge as before
			}
			n.detStats.Vouched++
			return true
		}
	}
	return false
}

// judgedSilent records that p was judged down for silence.
func (n *Node) judgedSilent(p *peer, now time.Time) {
	p.det.downAt, p.det.downInc = now, p.inc
	p.det.vouchFor = time.Time{}
}

// heardAgain is called for every heartbeat or claim of p. If p was judged
// down and speaks again at the same incarnation within falseDownWindow of
// the verdict, it was slow, not dead (a restarted process has a new
// incarnation): the verdict was false, and p's bound is widened.
func (n *Node) heardAgain(p *peer, now time.Time) {
	p.det.vouchFor = time.Time{}
	if p.det.downAt.IsZero() {
		return
	}
	if p.inc != p.det.downInc {
		// The judged incarnation never spoke again: the verdict was true.
		p.det.downAt = time.Time{}
		p.det.widen = 0
		return
	}
	if now.Sub(p.det.downAt) > falseDownWindow {
		p.det.downAt = time.Time{}
		return
	}
	p.det.downAt = time.Time{}
	n.detStats.FalseDowns++
	d := n.cfg.Detection()
	w := n.bound(p) // the widening so far, decayed, plus one bound
	p.det.widen, p.det.widenAt = min(w, maxWiden*d), now
}

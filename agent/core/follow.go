package core

// The follower's side: hold changes until their group is complete, apply in
// seq order, ask for what is missing; and the master's answer to a nack.

import (
	"time"

	"github.com/fmagent/fmagent/wire"
)

func (n *Node) hold(c *wire.Change) {
	if c.Seq <= n.tab.Seq() {
		return
	}
	if c.Seq > n.masterSeq {
		n.masterSeq = c.Seq
	}
	if _, ok := n.pending[c.Seq]; ok {
		return
	}
	if len(n.pending) >= 4*len(n.ms.ring) {
		n.wantSnapshot = true // too far behind: a snapshot is cheaper
		return
	}
	n.pending[c.Seq] = n.held(c)
}

// applyPending applies every complete group that follows the table's seq.
func (n *Node) applyPending() {
	if n.wantSnapshot {
		return // until the snapshot sets the base, seqs mean nothing here
	}
	for {
		next := n.tab.Seq() + 1
		end := next
		for {
			hc, ok := n.pending[end]
			if !ok {
				return // incomplete group: wait (or nack)
			}
			if hc.c.Flags&wire.ChangeGroupEnd != 0 {
				break
			}
			end++
		}
		var at int64
		for s := next; s <= end; s++ {
			hc := n.pending[s]
			delete(n.pending, s)
			n.applyOne(&hc.c)
			n.free = append(n.free, hc)
			n.stats.ChangesApplied++
			at = hc.c.At
		}
		n.rd.Propagation = append(n.rd.Propagation, n.now.Sub(time.Unix(0, at)))
	}
}

func (n *Node) onNack(to wire.NodeID, m *wire.Nack) {
	n.stats.NacksServed++
	last := n.tab.Seq()
	if m.From == 0 && !n.ms.groupSnapAt.IsZero() && n.now.Sub(n.ms.groupSnapAt) < n.cfg.Interval {
		// The follower's ask at followNew, answered by the snapshot sent
		// to the group with the claim (groupSnapshot).
		n.stats.NacksCoveredByGroup++
		return
	}
	if m.From == 0 || n.ms.get(m.From) == nil {
		n.sendSnapshot(to)
		return
	}
	to2 := min(m.To, last)
	var batch [wire.MaxChanges]wire.Change
	k := 0
	for s := m.From; s <= to2; s++ {
		c := n.ms.get(s)
		if c == nil {
			n.sendSnapshot(to)
			return
		}
		batch[k] = *c
		k++
		n.stats.Retransmits++
		if k == len(batch) || s == to2 {
			n.sendChanges(to, batch[:k], false)
			k = 0
		}
	}
}

// followerTick asks for what is missing and watches for a stale cluster.
func (n *Node) followerTick(now time.Time) {
	st := n.el.State()
	if !n.stale && now.Sub(n.masterWord) > n.cfg.StaleTimeout {
		n.stale = true
		n.event(Event{Kind: EvStale})
		n.raiseStaleLocal()
	} else if n.stale && st.Master != 0 && now.Sub(n.masterWord) <= n.cfg.StaleTimeout {
		n.setFresh()
	}
	if st.Master == 0 || now.Before(n.nextNack) {
		return
	}
	if n.wantSnapshot {
		if s := &n.snap; s.id != 0 && now.Sub(s.at) < n.cfg.Interval {
			// A snapshot is arriving. Asking again would make the
			// master build, seal and send the whole table again on its
			// real-time loop (a snapshot of 4,015 entities is some 300
			// datagrams, which take longer than an interval to arrive
			// from a busy master), and make us drop the half we have
			// for the newer one: traced in a registration storm, a sixth
			// of the five agents' loop samples were the master's
			// sendSnapshot.
			// Ask again once its chunks stop for an interval (one was
			// lost).
			return
		}
		n.sendNack(st.Master, 0, 0)
		return
	}
	if n.masterSeq > n.tab.Seq() {
		if n.gapSince.IsZero() {
			n.gapSince = now
		}
		// Give reordering half an interval before asking.
		if now.Sub(n.gapSince) >= n.cfg.Interval/2 {
			n.sendNack(st.Master, n.tab.Seq()+1, n.masterSeq)
		}
	} else {
		n.gapSince = time.Time{}
	}
}

func (n *Node) sendNack(to wire.NodeID, from, upTo uint64) {
	n.stats.NacksSent++
	n.nextNack = n.now.Add(n.cfg.Interval)
	h := n.header()
	if b, err := n.codec.AppendNack(n.buf(), &h, &wire.Nack{From: from, To: upTo}); err == nil {
		n.send(to, false, b)
	}
}

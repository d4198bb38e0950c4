package core

import (
	"slices"
	"time"

	"github.com/fmagent/fmagent/agent/plugin"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// masterTick turns what the master's detector sees into membership reports
// (through the plugin chain, like every other report), times out the
// transaction in flight and keeps the membership generation.
func (n *Node) masterTick(now time.Time) {
	if !n.ms.active {
		return
	}
	// The master is its own word from a master: should it step down (cut
	// off), its stale timeout counts from now, not from its election.
	n.masterWord = now
	if n.ms.txn != nil && !now.Before(n.ms.txn.deadline) {
		n.finishTxn()
	}
	n.dropWaiting()
	self := n.cfg.Node
	if e, ok := n.tab.Get(table.NodeEntityID(self)); !ok || e.State != wire.StateUp || e.Incarnation < n.inc {
		n.membershipReport(now, self, wire.ReportUp, wire.KindNode, table.NodeEntityID(self), table.NodeName(self), n.inc)
	} else if has(e.Alarm(StaleCause)) {
		n.issue(&group{changes: []wire.Change{{Kind: wire.ChangeClear, Entity: e.ID, Cause: []byte(StaleCause), By: self, At: now.UnixNano()}}})
	}
	// Nodes heard: up (under their current incarnation).
	for _, id := range n.peerIDs {
		p := n.peers[id]
		if !n.live(p) {
			continue
		}
		if e, ok := n.tab.Get(table.NodeEntityID(id)); !ok || e.State != wire.StateUp || e.Incarnation < p.inc {
			n.membershipReport(now, id, wire.ReportUp, wire.KindNode, table.NodeEntityID(id), table.NodeName(id), p.inc)
		}
	}
	// Nodes in the table we no longer hear: down. A node we have never
	// heard since becoming master gets one detection time to show up.
	if !now.Before(n.judgeAfter) {
		// Found first, then reported: a report runs the plugin chain and
		// commits, which must not happen while the table is walked. Each
		// is judged again when its turn comes, against the table the
		// reports before it left.
		n.lost = n.lost[:0]
		n.tab.RangeNodes(func(e *table.Entity) bool {
			if n.lostNode(now, e) {
				n.lost = append(n.lost, e.ID)
			}
			return true
		})
		for _, id := range n.lost {
			if e, ok := n.tab.Get(id); ok && n.lostNode(now, e) {
				n.membershipReport(now, e.Owner, wire.ReportDown, wire.KindNode, e.ID, e.Name, e.Incarnation)
			}
		}
	}
	n.judgeLinks(now)
	n.adoptTick(now)
	n.keepGeneration()
	n.masterAlarms(now)
}

// lostNode: node entity e is up in the table but the master no longer hears
// its node (under e's incarnation or a later one), and it is time to say so.
func (n *Node) lostNode(now time.Time, e *table.Entity) bool {
	if e.Kind != wire.KindNode || e.State != wire.StateUp || e.Owner == n.cfg.Node {
		return false
	}
	p, ok := n.peers[e.Owner]
	if ok && n.live(p) && p.inc >= e.Incarnation {
		return false
	}
	// A node we have heard and lost is down now (the detector already
	// waited); one we never heard in this life gets one detection time
	// from when we started leading.
	heardOnce := ok && !p.aliveSince.IsZero()
	return heardOnce || now.Sub(n.ms.since) > n.cfg.Detection()
}

// judgeLinks decides each live node's links from evidence: node N's link on
// network x works if the master hears N on x, or any mature live peer says
// in its heartbeat that it does. The master's own links are judged from the
// peers' views alone.
func (n *Node) judgeLinks(now time.Time) {
	det := n.cfg.Detection()
	mature := func(p *peer) bool { return n.live(p) && p.hbOK && now.Sub(p.aliveSince) >= det+n.cfg.Interval }
	nMature := 0
	for _, id := range n.peerIDs {
		if mature(n.peers[id]) {
			nMature++
		}
	}
	if nMature == 0 {
		return // nobody to compare with: a lone node cannot judge links
	}
	hears := func(p *peer, target wire.NodeID, net int) bool {
		for i := 0; i < int(p.hb.NPeers); i++ {
			v := &p.hb.Peers[i]
			if v.Node == target {
				return v.Links&(1<<net) != 0
			}
		}
		return false
	}
	judge := func(node wire.NodeID, inc uint64, direct func(net int) bool) {
		for net := 0; net < wire.NumNets; net++ {
			up := direct != nil && direct(net)
			for _, id := range n.peerIDs {
				if up {
					break
				}
				if p := n.peers[id]; id != node && mature(p) && hears(p, node, net) {
					up = true
				}
			}
			lid := table.LinkEntityID(node, wire.Net(net))
			e, ok := n.tab.Get(lid)
			switch {
			case !ok || up && e.State != wire.StateUp:
				n.membershipReport(now, node, wire.ReportUp, wire.KindLink, lid, table.LinkName(node, wire.Net(net)), inc)
			case !up && e.State == wire.StateUp:
				n.membershipReport(now, node, wire.ReportDown, wire.KindLink, lid, e.Name, inc)
			}
		}
	}
	judge(n.cfg.Node, n.inc, nil)
	for _, id := range n.peerIDs {
		p := n.peers[id]
		if !mature(p) {
			continue
		}
		judge(id, p.inc, func(net int) bool { return n.heardOn(p, net, now) })
	}
}

// membershipReport runs one of the master's own detector findings through
// the plugin chain, once per finding (not on every tick while it lasts).
func (n *Node) membershipReport(now time.Time, node wire.NodeID, kind wire.ReportKind, ek wire.EntityKind, id uint64, name string, inc uint64) {
	if m, ok := n.ms.memo[id]; ok && m.kind == kind && m.inc == inc && now.Sub(m.at) < n.cfg.Detection() {
		return
	}
	n.ms.memo[id] = memo{kind: kind, inc: inc, at: now}
	n.handleReport(now, n.cfg.Node, &plugin.Report{
		Source: plugin.SourceMembership, Kind: kind, Entity: id, Name: name, EntityKind: ek, Incarnation: inc,
	}, reassert{})
}

// keepGeneration bumps the membership generation whenever the set of live
// members changes; every node persists the master's, which is what lets a
// node that was not in the latest membership know it is behind (amnesia).
func (n *Node) keepGeneration() {
	members := append(n.ms.scratch[:0], n.cfg.Node)
	for _, id := range n.peerIDs {
		if n.live(n.peers[id]) {
			members = append(members, id)
		}
	}
	slices.Sort(members)
	n.ms.scratch = members
	if slices.Equal(members, n.ms.members) {
		return
	}
	n.ms.members = append(n.ms.members[:0], members...)
	n.cfg.Members = append(n.cfg.Members[:0], members...)
	n.el.SetMembers(members)
	n.el.SetGeneration(n.el.Self().Generation + 1)
	n.savePersist(false)
}

// adoptGeneration: a follower keeps its master's generation and membership.
func (n *Node) adoptGeneration(hb *wire.Heartbeat, master wire.NodeID) {
	if hb.Generation <= n.el.Self().Generation {
		return
	}
	members := []wire.NodeID{master}
	for i := 0; i < int(hb.NPeers); i++ {
		v := &hb.Peers[i]
		if v.Links&wire.LinkFenced == 0 && v.Links != 0 {
			members = append(members, v.Node)
		}
	}
	slices.Sort(members)
	n.cfg.Members = members
	n.el.SetMembers(members)
	n.el.SetGeneration(hb.Generation)
	n.savePersist(false)
}

// view is the read-only window plugins get on the master's state.
type view struct{ n *Node }

func (n *Node) view() plugin.View { return view{n} }

func (v view) Entity(id uint64) (*table.Entity, bool)   { return v.n.tab.Get(id) }
func (v view) Lookup(name string) (*table.Entity, bool) { return v.n.tab.Lookup(name) }
func (v view) Now() int64                               { return v.n.now.UnixNano() }
func (v view) History() *plugin.History                 { return v.n.hist }
func (v view) NodeAlive(id wire.NodeID) bool {
	if id == v.n.cfg.Node {
		return true
	}
	p, ok := v.n.peers[id]
	return ok && v.n.live(p)
}

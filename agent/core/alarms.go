package core

import (
	"slices"
	"strconv"
	"time"

	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// Alarms the master raises from its own membership view (DESIGN §2): they
// are what pages an operator, so they are decided here, in the pure core,
// where netsim sees and replays them, and replicated like any change.
const (
	// UnreachableCause is raised (critical) on node/N while node N is down
	// after going silent, and cleared when it is back.
	UnreachableCause = "node-unreachable"
	// LeftCause is raised (warning) instead on a node that said goodbye (a
	// planned stop): down, but nobody needs to be woken for it.
	LeftCause = "node-left"
	// PartitionedCause is raised (major) on net/a or net/b while the members
	// whose link on that network works cannot all hear each other there:
	// the network is split into parts (a switch or VLAN fault), though each
	// node's link works. The parts are named in the EvPartitioned event
	// and in Status.
	PartitionedCause = "network-partitioned"
)

// NetName is the name of network net's entity: "net/a" or "net/b". The
// master registers it, owned by no node (owner 0, so that it never goes
// down with one), the first time the network is partitioned.
func NetName(net wire.Net) string { return "net/" + string(rune('a'+net)) }

// alarmState is the master's memory for the alarms it decides.
type alarmState struct {
	// Per network: the split last computed, since when it has been so,
	// and the split last announced (EvPartitioned/EvPartitionHealed).
	split     [wire.NumNets]partition
	since     [wire.NumNets]time.Time
	announced [wire.NumNets]partition
	cur       partition // scratch
	parent    []int
	ids       []uint64
	leftBuf   []bool
}

// partition is the members of a network and the part each is in (labels
// numbered by first appearance in ascending node order). One part (or no
// members) is no partition.
type partition struct {
	members []wire.NodeID
	part    []uint8
	parts   int
}

func (p *partition) equal(q *partition) bool {
	return p.parts == q.parts && slices.Equal(p.members, q.members) && slices.Equal(p.part, q.part)
}

func (p *partition) copyFrom(q *partition) {
	p.members = append(p.members[:0], q.members...)
	p.part = append(p.part[:0], q.part...)
	p.parts = q.parts
}

// String names the parts: "{1,2} | {3,4}".
func (p *partition) String() string {
	var b []byte
	for k := 0; k < p.parts; k++ {
		if k > 0 {
			b = append(b, " | "...)
		}
		b = append(b, '{')
		first := true
		for i, m := range p.members {
			if int(p.part[i]) != k {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = strconv.AppendUint(b, uint64(m), 10)
		}
		b = append(b, '}')
	}
	return string(b)
}

// Parts returns the parts as lists of node IDs.
func (p *partition) Parts() [][]wire.NodeID {
	out := make([][]wire.NodeID, p.parts)
	for i, m := range p.members {
		out[p.part[i]] = append(out[p.part[i]], m)
	}
	return out
}

// computePartition fills dst with network net as this node sees it: the
// members are this node and every peer live for a detection time and more
// (a newcomer's view of the others is not yet complete) whose link on net
// is heard by someone; two members are in one part if either hears the
// other on net (this node's own hearing, or a peer's heartbeat view).
// A member nobody hears on net has a lost link (a single fault, the link
// alarm's business), not a part of its own.
func (n *Node) computePartition(net int, now time.Time, dst *partition, parent *[]int) {
	det := n.cfg.Detection()
	mature := func(p *peer) bool { return n.live(p) && p.hbOK && now.Sub(p.aliveSince) >= det+n.cfg.Interval }
	dst.members = append(dst.members[:0], n.cfg.Node)
	for _, id := range n.peerIDs {
		if mature(n.peers[id]) {
			dst.members = append(dst.members, id)
		}
	}
	slices.Sort(dst.members)
	idx := func(id wire.NodeID) int {
		i, ok := slices.BinarySearch(dst.members, id)
		if !ok {
			return -1
		}
		return i
	}
	k := len(dst.members)
	par := (*parent)[:0]
	for i := 0; i < k; i++ {
		par = append(par, i)
	}
	*parent = par
	find := func(i int) int {
		for par[i] != i {
			par[i] = par[par[i]]
			i = par[i]
		}
		return i
	}
	union := func(i, j int) {
		if i < 0 || j < 0 {
			return
		}
		if ri, rj := find(i), find(j); ri != rj {
			par[ri] = rj
		}
	}
	self := idx(n.cfg.Node)
	// linked[i]: someone hears member i on net (or i hears someone).
	linked := uint64(0) // bit set for the first 64 members; more are always counted linked
	mark := func(i int) {
		if i >= 0 && i < 64 {
			linked |= 1 << i
		}
	}
	for _, id := range n.peerIDs {
		p := n.peers[id]
		pi := idx(id)
		if pi < 0 {
			continue
		}
		if n.heardOn(p, net, now) {
			union(self, pi)
			mark(self)
			mark(pi)
		}
		for v := 0; v < int(p.hb.NPeers); v++ {
			pv := &p.hb.Peers[v]
			if pv.Links&wire.LinkFenced != 0 || pv.Links&(1<<net) == 0 {
				continue
			}
			if qi := idx(pv.Node); qi >= 0 {
				union(pi, qi)
				mark(pi)
				mark(qi)
			}
		}
	}
	// Drop the members with a lost link; label the rest's parts by first
	// appearance (0, 1, 2...), kept in the second half of the buffer.
	for i := 0; i < k; i++ {
		*parent = append(*parent, -1)
	}
	lab := (*parent)[k:]
	w := 0
	dst.part = dst.part[:0]
	dst.parts = 0
	for i := 0; i < k; i++ {
		if i < 64 && linked&(1<<i) == 0 {
			continue
		}
		r := find(i)
		if lab[r] < 0 {
			lab[r] = dst.parts
			dst.parts++
		}
		dst.members[w] = dst.members[i]
		dst.part = append(dst.part, uint8(min(lab[r], 255)))
		w++
	}
	dst.members = dst.members[:w]
}

// Partitions returns, for each network, the parts its members form as this
// node sees them (from its own hearing and its peers' heartbeats): one part
// when the network is whole. Any node can tell, not only the master.
func (n *Node) Partitions() [wire.NumNets][][]wire.NodeID {
	var out [wire.NumNets][][]wire.NodeID
	var p partition
	var par []int
	for net := 0; net < wire.NumNets; net++ {
		n.computePartition(net, n.now, &p, &par)
		out[net] = p.Parts()
	}
	return out
}

// nodeAlarmed reports whether node entity e carries its membership alarm
// (node-unreachable or node-left).
func nodeAlarmed(e *table.Entity) bool {
	_, unreach := e.Alarm(UnreachableCause)
	_, left := e.Alarm(LeftCause)
	return unreach || left
}

// nodeDownAlarm is the alarm the master raises on node entity e, down:
// node-left when the node said goodbye, node-unreachable otherwise (a
// process that ended without one, PeerExited, too: a failure, as before it
// was seen at once).
func (n *Node) nodeDownAlarm(e *table.Entity, at int64) wire.Change {
	cause, sev := UnreachableCause, wire.SevCritical
	if p, ok := n.peers[e.Owner]; ok && p.left && !p.exited {
		cause, sev = LeftCause, wire.SevWarning
	}
	return wire.Change{Kind: wire.ChangeRaise, Entity: e.ID, Severity: sev, Cause: []byte(cause), By: n.cfg.Node, At: at}
}

// masterAlarms keeps the membership alarms true to the master's view:
// node-unreachable (or node-left) on every node entity down, cleared on every
// one up; network-partitioned on a network split for a detection time,
// cleared when it has been whole for as long. It reconciles against the
// table, so a new master takes over the alarms its predecessor raised.
// Called at the end of masterTick.
func (n *Node) masterAlarms(now time.Time) {
	if n.ms.txn != nil || len(n.ms.queue) > 0 {
		return // what is issued now would wait, and be issued again next tick
	}
	st := &n.al
	self := n.cfg.Node
	at := now.UnixNano()
	// Nodes.
	st.ids = st.ids[:0]
	st.leftBuf = st.leftBuf[:0]
	n.tab.RangeNodes(func(e *table.Entity) bool {
		if (e.State == wire.StateDown) != nodeAlarmed(e) {
			st.ids = append(st.ids, e.ID)
		}
		return true
	})
	for _, id := range st.ids {
		e, ok := n.tab.Get(id)
		if !ok {
			continue
		}
		var cs []wire.Change
		if e.State == wire.StateDown {
			cs = append(cs, n.nodeDownAlarm(e, at))
		} else {
			for _, c := range [...]string{UnreachableCause, LeftCause} {
				if has(e.Alarm(c)) {
					cs = append(cs, wire.Change{Kind: wire.ChangeClear, Entity: id, Cause: []byte(c), By: self, At: at})
				}
			}
		}
		n.issue(&group{changes: cs})
	}
	// Networks.
	det := n.cfg.Detection()
	for net := 0; net < wire.NumNets; net++ {
		n.computePartition(net, now, &st.cur, &st.parent)
		if !st.cur.equal(&st.split[net]) {
			st.split[net].copyFrom(&st.cur)
			st.since[net] = now
		}
		if now.Sub(st.since[net]) < det {
			continue // not settled: views lag by up to a detection time
		}
		split := st.split[net].parts > 1
		name := NetName(wire.Net(net))
		id := table.ID(name)
		e, ok := n.tab.Get(id)
		raised := ok && has(e.Alarm(PartitionedCause))
		switch {
		case split && !raised:
			var cs []wire.Change
			if !ok {
				cs = append(cs, wire.Change{Kind: wire.ChangeRegister, Entity: id, Name: []byte(name), EntityKind: wire.KindCustom,
					State: wire.StateUp, Incarnation: 1, By: self, At: at})
			}
			cs = append(cs, wire.Change{Kind: wire.ChangeRaise, Entity: id, Severity: wire.SevMajor, Cause: []byte(PartitionedCause), By: self, At: at})
			n.issue(&group{changes: cs})
		case !split && raised:
			n.issue(&group{changes: []wire.Change{{Kind: wire.ChangeClear, Entity: id, Cause: []byte(PartitionedCause), By: self, At: at}}})
		}
		if !st.split[net].equal(&st.announced[net]) {
			was := st.announced[net].parts > 1
			st.announced[net].copyFrom(&st.split[net])
			switch {
			case split:
				n.event(Event{Kind: EvPartitioned, Net: wire.Net(net), Reason: st.split[net].String()})
			case was:
				n.event(Event{Kind: EvPartitionHealed, Net: wire.Net(net)})
			}
		}
	}
}

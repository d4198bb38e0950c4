package core

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/fmagent/fmagent/elect"
	"github.com/fmagent/fmagent/wire"
)

// Misconfiguration and cluster trouble, made loud (issue 11): each is found
// here, in the pure core, and reported once as an Event the shell logs at
// WARN (or ERROR), instead of showing only as a counter or a node that
// never joins.
//
//   - Duplicate node ID. A node listens for a while after it starts before
//     it says anything (the start window: two and a half intervals, time to
//     hear two heartbeats of a live node, and less than a detection time,
//     so before any claim could be due). If in that window it hears
//     another incarnation speaking with its own node ID, that node was here
//     first: this one refuses to join (EvDuplicateNode, Refused), never
//     sends a heartbeat (so the cluster never takes it for a restart of the
//     real node, and the real node is never excluded), and says so with a
//     Leave of reason wire.LeaveDuplicate, which the real node and every
//     peer log (EvDuplicateNode) and otherwise ignore. A running node that
//     hears its ID from another incarnation logs it too.
//   - Timing mismatch: a peer whose heartbeat carries another interval or
//     miss count than ours (EvTimingMismatch, once per peer incarnation).
//   - Waiting for quorum: no master for a detection time and not enough of
//     the persisted membership present (EvWaitingQuorum, naming who is
//     missing; again when that changes).
//   - Split brain: as master, another live master heard (EvSplitBrain);
//     one master again (EvSplitBrainHealed).
type misconfig struct {
	// Duplicate node ID.
	listenUntil time.Time // start window: nothing is sent before it (zero: not started)
	window      time.Duration
	refused     bool // this node refused to join (its ID is in use)
	noticesLeft int  // duplicate notices still to send
	nextNotice  time.Time
	dupInc      uint64    // the other incarnation heard with our ID
	dupSeqs     int       // its distinct heartbeats heard
	dupLastSeq  uint64    // the latest of them
	dupFirst    time.Time // when the first was heard
	dupLogged   uint64    // the other incarnation last reported
	noticeFrom  map[noticeKey]bool

	// Timing mismatch: the peer incarnation last reported, per peer.
	timingLogged map[wire.NodeID]uint64

	// Quorum.
	quorumMissing []wire.NodeID // last reported (nil: not waiting)
	quorumWaiting bool
	quorumBuf     []wire.NodeID
	hadMaster     bool // the quorum rule is for a cold start only (elect: formed)

	// Split brain.
	splitWith  wire.NodeID // the other master (0: none)
	splitEpoch uint64
}

// ErrDuplicateID is Step's error for a packet of another node that uses this
// node's ID, or for a duplicate node's notice: the shell logs the sender's
// address (rate-limited) and must not learn it as the node's address.
var ErrDuplicateID = errors.New("core: node ID in use by another node")

type noticeKey struct {
	node wire.NodeID
	inc  uint64
}

func (m *misconfig) init(now time.Time, cfg *Config) {
	m.window = cfg.Interval*2 + cfg.Interval/2
	m.noticeFrom = make(map[noticeKey]bool)
	m.timingLogged = make(map[wire.NodeID]uint64)
}

// Refused reports whether this node refused to join because another node
// uses its node ID. A refused node sends nothing until it is restarted.
func (n *Node) Refused() bool { return n.mc.refused }

// listening: still in the start window, or refused: nothing may be sent.
// The window starts at the first Tick, not at New: a shell may take a while
// to open its sockets after building the node (on a loaded host, longer
// than the window), and the window is for listening.
func (n *Node) silent() bool {
	return n.mc.refused || n.mc.listenUntil.IsZero() || n.now.Before(n.mc.listenUntil)
}

// startWindow starts the start window at the first Tick.
func (n *Node) startWindow(now time.Time) {
	if n.mc.listenUntil.IsZero() {
		n.mc.listenUntil = now.Add(n.mc.window)
	}
}

// fromSelfID takes an authenticated packet that carries this node's own ID.
// Our own packets come back to us (multicast loopback) under an
// incarnation this process has used; any other incarnation is another node
// configured with our node ID. The packet is never stepped: it returns
// errSelf for our own, ErrDuplicateID for the other node's.
func (n *Node) fromSelfID(now time.Time, h *wire.Header, body []byte) error {
	if h.Incarnation >= n.cfg.Incarnation && h.Incarnation <= n.inc {
		return errSelf
	}
	if h.Type == wire.TypeLeave {
		var m wire.Leave
		if wire.DecodeLeave(body, &m) == nil && m.Reason == wire.LeaveDuplicate {
			n.duplicateNotice(h)
		}
		return ErrDuplicateID
	}
	if h.Type != wire.TypeHeartbeat {
		return ErrDuplicateID
	}
	// Count the other incarnation's heartbeats: a previous life of this
	// node may have a packet or two still in flight, but only a live
	// process keeps sending, over more than an interval.
	m := &n.mc
	if h.Incarnation != m.dupInc {
		m.dupInc, m.dupSeqs, m.dupLastSeq, m.dupFirst = h.Incarnation, 0, 0, now
	}
	if h.Seq <= m.dupLastSeq {
		return ErrDuplicateID // the same heartbeat on the other network
	}
	m.dupLastSeq = h.Seq
	m.dupSeqs++
	if m.dupSeqs < 2 || now.Sub(m.dupFirst) < n.cfg.Interval/2 || m.dupLogged == h.Incarnation {
		return ErrDuplicateID
	}
	m.dupLogged = h.Incarnation
	if !m.refused && (m.listenUntil.IsZero() || now.Before(m.listenUntil)) {
		m.refused = true
		m.noticesLeft, m.nextNotice = 3, now
		n.event(Event{Kind: EvDuplicateNode, Node: n.cfg.Node, Reason: fmt.Sprintf(
			"node_id %d is in use by another node (incarnation %s) that was here first: this node refuses to join and sends nothing; fix node_id and restart",
			n.cfg.Node, ShortInc(h.Incarnation))})
		n.sendDuplicateNotice()
		return ErrDuplicateID
	}
	n.event(Event{Kind: EvDuplicateNode, Node: n.cfg.Node, Reason: fmt.Sprintf(
		"another node speaks with this node's node_id %d (incarnation %s)", n.cfg.Node, ShortInc(h.Incarnation))})
	return ErrDuplicateID
}

// duplicateNotice logs a node's refusal to join under a node ID in use,
// once per (node, incarnation). It changes nothing else.
func (n *Node) duplicateNotice(h *wire.Header) {
	k := noticeKey{h.Sender, h.Incarnation}
	if n.mc.noticeFrom[k] {
		return
	}
	if len(n.mc.noticeFrom) > 1024 {
		clear(n.mc.noticeFrom)
	}
	n.mc.noticeFrom[k] = true
	what := fmt.Sprintf("a second node configured with node_id %d (incarnation %s) found it in use and refused to join", h.Sender, ShortInc(h.Incarnation))
	if h.Sender == n.cfg.Node {
		what = fmt.Sprintf("another node is configured with this node's node_id %d (incarnation %s); it refused to join", h.Sender, ShortInc(h.Incarnation))
	}
	n.event(Event{Kind: EvDuplicateNode, Node: h.Sender, Reason: what})
}

// sendDuplicateNotice sends the refused node's Leave(LeaveDuplicate). It
// goes out even though the node is otherwise silent.
func (n *Node) sendDuplicateNotice() {
	if n.mc.noticesLeft <= 0 || n.now.Before(n.mc.nextNotice) {
		return
	}
	n.mc.noticesLeft--
	n.mc.nextNotice = n.now.Add(n.cfg.Interval)
	h := n.header()
	b, err := n.codec.AppendLeave(n.buf(), &h, &wire.Leave{Reason: wire.LeaveDuplicate})
	if err == nil {
		n.rd.Packets = append(n.rd.Packets, Packet{To: 0, Nets: BothNets, Prio: true, Data: b})
	}
}

// onLeaveNotice handles a Leave before the sender's incarnation is
// admitted: a duplicate notice is logged and otherwise ignored (the
// refused node never joined; its incarnation must not replace the real
// node's). It reports whether the packet was such a notice.
func (n *Node) onLeaveNotice(h *wire.Header, body []byte) bool {
	if h.Type != wire.TypeLeave {
		return false
	}
	var m wire.Leave
	if wire.DecodeLeave(body, &m) != nil || m.Reason != wire.LeaveDuplicate {
		return false
	}
	n.duplicateNotice(h)
	return true
}

// stampHeartbeat adds our timing and version to an outgoing heartbeat.
func (n *Node) stampHeartbeat(hb *wire.Heartbeat) {
	hb.IntervalMicros = uint32(min(n.cfg.Interval.Microseconds(), 1<<32-1))
	hb.Misses = uint8(min(n.cfg.Misses, 255))
	hb.SetVersion(n.cfg.Version)
}

// checkTiming compares a peer's timing (from its newest heartbeat) with
// ours, and reports a mismatch once per peer incarnation: a peer that sends
// every 10 ms to a node that expects 1 ms × 3 is judged lost twice a second.
func (n *Node) checkTiming(p *peer) {
	hb := p.hb
	if hb.IntervalMicros == 0 || n.mc.timingLogged[p.id] == p.inc {
		return
	}
	ours := uint32(min(n.cfg.Interval.Microseconds(), 1<<32-1))
	if hb.IntervalMicros == ours && int(hb.Misses) == n.cfg.Misses {
		return
	}
	n.mc.timingLogged[p.id] = p.inc
	theirs := time.Duration(hb.IntervalMicros) * time.Microsecond
	n.event(Event{Kind: EvTimingMismatch, Node: p.id, Reason: fmt.Sprintf(
		"node %d sends every %v and judges after %d misses (detection %v); this node: %v × %d (detection %v); every node needs the same timing profile",
		p.id, theirs, hb.Misses, theirs*time.Duration(hb.Misses), n.cfg.Interval, n.cfg.Misses, n.cfg.Detection())})
}

// misconfigTick: the duplicate notices still to send, the quorum wait and
// the split brain's end. Called from Tick.
func (n *Node) misconfigTick(now time.Time) {
	m := &n.mc
	if m.refused {
		n.sendDuplicateNotice()
		return
	}
	st := n.el.State()
	n.quorumTick(now, st)
	// Split brain: as master, another live master of another epoch.
	if n.isMaster() {
		for _, id := range n.peerIDs {
			p := n.peers[id]
			if p.hbOK && p.hb.Role == wire.RoleMaster && (n.heardOn(p, 0, now) || n.heardOn(p, 1, now)) && !p.left {
				if m.splitWith != id {
					m.splitWith, m.splitEpoch = id, p.epoch
					n.event(Event{Kind: EvSplitBrain, Node: id, Epoch: p.epoch, Reason: fmt.Sprintf(
						"split brain: node %d is master at epoch %d while this node is master at epoch %d; the higher epoch wins on healing",
						id, p.epoch, st.Epoch)})
				}
				return
			}
		}
	}
	if m.splitWith != 0 {
		other := m.splitWith
		p, ok := n.peers[other]
		if ok && p.hbOK && p.hb.Role == wire.RoleMaster && st.Master != other && (n.heardOn(p, 0, now) || n.heardOn(p, 1, now)) {
			return // still two masters (we may have lost ours meanwhile)
		}
		m.splitWith = 0
		n.event(Event{Kind: EvSplitBrainHealed, Node: st.Master, Epoch: st.Epoch, Reason: fmt.Sprintf(
			"split brain healed: one master, node %d at epoch %d (the other was node %d at epoch %d)", st.Master, st.Epoch, other, m.splitEpoch)})
	}
}

// quorumTick reports a cold start that cannot form a cluster: no master for
// a detection time and fewer than a quorum of the persisted membership
// present. It names who is missing.
func (n *Node) quorumTick(now time.Time, st elect.State) {
	m := &n.mc
	if st.Master != 0 {
		m.hadMaster = true
	}
	waiting := st.Master == 0 && !m.hadMaster && !n.cfg.AllowAlone && len(n.cfg.Members) > 0 && now.Sub(n.start) >= n.cfg.Detection()
	present := 0
	missing := m.quorumBuf[:0]
	if waiting {
		for _, id := range n.cfg.Members {
			if id == n.cfg.Node {
				present++
				continue
			}
			if p, ok := n.peers[id]; ok && n.live(p) {
				present++
				continue
			}
			missing = append(missing, id)
		}
		m.quorumBuf = missing
		waiting = present < len(n.cfg.Members)/2+1
	}
	switch {
	case waiting && (!m.quorumWaiting || !slices.Equal(missing, m.quorumMissing)):
		m.quorumWaiting = true
		m.quorumMissing = append(m.quorumMissing[:0], missing...)
		n.event(Event{Kind: EvWaitingQuorum, Reason: fmt.Sprintf(
			"waiting for a quorum of the last membership %s: %d of %d present, %d needed; missing %s (allow_alone overrides)",
			wire.NodeSet(n.cfg.Members), present, len(n.cfg.Members), len(n.cfg.Members)/2+1, wire.NodeSet(missing))})
	case !waiting && m.quorumWaiting && st.Master != 0:
		m.quorumWaiting = false
		m.quorumMissing = m.quorumMissing[:0]
		n.event(Event{Kind: EvQuorumReached, Node: st.Master, Epoch: st.Epoch})
	}
}

// ShortInc is an incarnation as people read it. Incarnations are unix
// nanoseconds at start (19 digits); what tells two lives of a node apart on
// a screen is the low 24 bits, printed as 6 hex digits. Small incarnations
// (counters, tests) print as they are.
func ShortInc(inc uint64) string {
	if inc < 1_000_000 {
		return fmt.Sprint(inc)
	}
	return fmt.Sprintf("%06x", inc&0xffffff)
}

// statusExtra fills the parts of Status about timing, quorum, partitions
// and the peers' versions.
func (n *Node) statusExtra(s *Status) {
	s.Interval, s.Misses, s.Refused = n.cfg.Interval, n.cfg.Misses, n.mc.refused
	s.Members = append([]wire.NodeID(nil), n.cfg.Members...)
	present := 0
	for _, id := range n.cfg.Members {
		if id == n.cfg.Node {
			present++
		} else if p, ok := n.peers[id]; ok && n.live(p) {
			present++
		}
	}
	s.Quorum = n.mc.hadMaster || n.cfg.AllowAlone || len(n.cfg.Members) == 0 || present >= len(n.cfg.Members)/2+1
	s.Partitions = n.Partitions()
	for i := range s.Peers {
		p := n.peers[s.Peers[i].Node]
		if p == nil || !p.hbOK {
			continue
		}
		s.Peers[i].Version = p.hb.VersionString()
		s.Peers[i].Interval = time.Duration(p.hb.IntervalMicros) * time.Microsecond
		s.Peers[i].Misses = int(p.hb.Misses)
	}
}

package core

import (
	"errors"
	"time"

	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/elect"
	"github.com/fmagent/fmagent/wire"
)

// peer is what this node knows of another.
type peer struct {
	id      wire.NodeID
	inc     uint64
	heard   [wire.NumNets]time.Time         // last heartbeat per network (zero: never)
	replay  [wire.NumNets]wire.ReplayWindow // the group and unicast sockets'
	hbWin   [wire.NumNets]wire.ReplayWindow // the heartbeat socket's (StepHeartbeat)
	hb      *wire.Heartbeat                 // latest heartbeat (swapped with the decode buffer, not copied)
	hbOK    bool
	wordSeq uint64 // header seq of the newest heartbeat or claim taken
	callSeq uint64 // header seq of the last switchover call taken
	epoch   uint64
	fenced  bool // down in the table at this incarnation: heard, never believed
	left    bool // said goodbye at this incarnation
	exited  bool // and it was its process's end, not a goodbye (PeerExited)

	// The detector's last verdicts, to report transitions once.
	alive      bool
	aliveSince time.Time
	linkUp     [wire.NumNets]bool
	det        peerDetector // detector.go

	// What the master served this peer (serve.go): NACK
	// retransmissions are bounded per peer, and a snapshot is sent once
	// per ask (snapServed: when the last one was), not once per network
	// the ask came on.
	serveSecond time.Time
	servedInSec int
	snapServed  time.Time

	// The report packets this node last handled from this peer as master
	// (stepReplication): the other network's copy of one of them is not
	// handled again.
	reportPkts reportPkts
}

// reportPkts remembers the last few report packets (incarnation, header
// seq) a master handled from one peer, in the epoch it handled them in.
// Every packet goes out on both networks under one seq, so the second
// network's copy of a report is the same packet. Handled again, it found
// the report in the master's dedup and was acknowledged a second time, on
// both networks: two more sends on the master's real-time loop, and one
// more wake-up of the reporter's, on the report's path (docs/bench.md, 5
// December 2026). Only a copy of a packet this master handled, in its
// current epoch, is skipped: a report's copy that reached this node before
// it was master, or in an earlier reign, is handled (netsim chaos seeds
// 19152 and 23118 lost acknowledged writes when every second copy was
// dropped, whatever had become of the first: a re-assertion's first copy
// had come to a node not yet master).
type reportPkts struct {
	epoch, inc uint64
	seq        [4]uint64
	next       uint8
}

// handled reports whether packet (inc, seq) is one recorded in epoch.
func (r *reportPkts) handled(epoch, inc, seq uint64) bool {
	if r.epoch != epoch || r.inc != inc {
		return false
	}
	for _, s := range r.seq {
		if s == seq {
			return true
		}
	}
	return false
}

// add records packet (inc, seq) as handled in epoch.
func (r *reportPkts) add(epoch, inc, seq uint64) {
	if r.epoch != epoch || r.inc != inc {
		*r = reportPkts{epoch: epoch, inc: inc}
	}
	r.seq[r.next] = seq
	r.next = (r.next + 1) % uint8(len(r.seq))
}

// window is the replay window of net's heartbeat socket (hb) or of its
// other sockets.
func (p *peer) window(net wire.Net, hb bool) *wire.ReplayWindow {
	if hb {
		return &p.hbWin[net]
	}
	return &p.replay[net]
}

func (p *peer) reincarnated(inc uint64) {
	// Heard times carry over: the host and its links are the same, and
	// the new incarnation's first packet may not be a heartbeat.
	p.inc = inc
	p.hbOK = false
	p.wordSeq = 0
	p.callSeq = 0
	p.fenced = false
	p.left = false
	p.exited = false
}

func (n *Node) heardOn(p *peer, net int, now time.Time) bool {
	return !p.heard[net].IsZero() && now.Sub(p.heard[net]) <= n.bound(p)
}

// lastHeard is when p was last heard on any network (zero: never).
func (p *peer) lastHeard() time.Time {
	last := p.heard[0]
	for _, h := range p.heard[1:] {
		if h.After(last) {
			last = h
		}
	}
	return last
}

// live reports whether p counts as a member now: heard on some network
// within the detection time, not fenced, not gone.
func (n *Node) live(p *peer) bool { return p.alive && !p.fenced && !p.left }

// liveCount counts the peers live now (live).
func (n *Node) liveCount() int {
	k := 0
	for _, id := range n.peerIDs {
		if n.live(n.peers[id]) {
			k++
		}
	}
	return k
}

func (n *Node) onHeartbeat(now time.Time, net wire.Net, h *wire.Header, p *peer, hb *wire.Heartbeat) {
	if h.Seq > p.wordSeq {
		// Only newer words replace what we know: the same heartbeat on the
		// other network, or one overtaken by the sender's later claim,
		// still proves the link but says nothing new.
		p.hb, n.hbIn = hb, p.hb // keep the new one, decode into the old next time
		p.hbOK = true
		p.epoch = h.Epoch
		p.wordSeq = h.Seq
		n.checkTiming(p)
	}
	n.heardFrom(now, net, p)
	// Were we told we are fenced? Only our master's word counts (or any
	// master's while we have none, or a newer epoch's): at a heal, the
	// losing side's master has our side fenced, and is not to be obeyed.
	if st := n.el.State(); hb.Role == wire.RoleMaster && (st.Master == 0 || p.id == st.Master || h.Epoch > st.Epoch) {
		for i := 0; i < int(hb.NPeers); i++ {
			v := &hb.Peers[i]
			if v.Node == n.cfg.Node && v.Incarnation == n.inc && v.Links&wire.LinkFenced != 0 {
				n.reincarnate(now)
				break
			}
		}
	}
	st := n.el.State()
	if p.id == st.Master && h.Epoch == st.Epoch && !n.isMaster() {
		// step counts our master's packets too, but after the election
		// below: this one also counts the heartbeat that makes us lose
		// the master (its step-down is its word, as netsim's stale check
		// has it: Node.MasterWordAt).
		if now.After(n.masterWord) {
			n.masterWord = now
		}
		if hb.AppliedSeq > n.masterSeq {
			n.masterSeq = hb.AppliedSeq
		}
		n.adoptGeneration(hb, p.id)
	}
	if hb.Role == wire.RoleMaster || p.id == st.Master {
		n.runElection(now)
	}
}

// heardFrom records an authenticated heartbeat or claim from p on net: the
// proof that p and that link are alive.
//
// now may be earlier than a word from p already taken (a heartbeat is read
// later than a claim that overtook it: StepHeartbeat); what was heard last
// stays the latest.
func (n *Node) heardFrom(now time.Time, net wire.Net, p *peer) {
	if !now.After(p.heard[net]) {
		now = p.heard[net]
	}
	p.heard[net] = now
	n.heardAgain(p, now)
	n.refreshFence(p)
	if !p.fenced && !p.left {
		if !p.linkUp[net] {
			p.linkUp[net] = true
			if p.alive {
				n.event(Event{Kind: EvLinkUp, Node: p.id, Net: net})
			}
		}
		if !p.alive {
			p.alive = true
			p.aliveSince = now
			n.event(Event{Kind: EvPeerUp, Node: p.id, Net: net})
		}
	}
}

// refreshFence derives fencing from the table: a node marked down at an
// incarnation is not believed until it comes back with a newer one.
func (n *Node) refreshFence(p *peer) {
	e, ok := n.tab.Get(table.NodeEntityID(p.id))
	p.fenced = ok && e.State == wire.StateDown && e.Incarnation >= p.inc && p.inc != 0
}

func (n *Node) onElection(now time.Time, net wire.Net, h *wire.Header, p *peer, m *wire.Election) {
	if m.Kind == wire.ElectCall {
		n.onHandoverCall(now, h, p)
		return
	}
	if m.Kind != wire.ElectCoordinator {
		return
	}
	if h.Seq > p.wordSeq {
		p.wordSeq = h.Seq
		p.epoch = h.Epoch
		p.hb.Role, p.hb.Master, p.hb.Vice = wire.RoleMaster, p.id, m.Vice
		p.hb.Priority, p.hb.Generation, p.hb.Eligible = m.Priority, m.Generation, true
		p.hbOK = true
	}
	n.heardFrom(now, net, p)
	ev := n.el.Observe(now, elect.Peer{
		Candidate: elect.Candidate{Node: p.id, Priority: m.Priority, Eligible: true, Generation: m.Generation},
		Role:      wire.RoleMaster, Epoch: h.Epoch, Master: p.id, Vice: m.Vice,
	})
	n.onElectEvent(now, ev)
}

// Errors of Switchover.
var (
	ErrNoVice = errors.New("core: no vice-master to hand over to")
)

// Switchover asks the master to hand over to the vice-master (an operator's
// planned switchover). On the master it sends the vice a call to take over;
// on any other node it forwards the request to the master. The vice claims
// at a new epoch and the old master, outranked by the newer epoch, follows.
func (n *Node) Switchover(now time.Time) error {
	n.advance(now)
	st := n.el.State()
	switch {
	case st.Master == 0:
		return ErrNoMaster
	case !n.isMaster():
		n.sendCall(st.Master)
	case st.Vice == 0:
		return ErrNoVice
	default:
		n.sendCall(st.Vice)
	}
	return nil
}

func (n *Node) sendCall(to wire.NodeID) {
	h := n.header()
	b, err := n.codec.AppendElection(n.buf(), &h, &wire.Election{
		Kind: wire.ElectCall, Priority: n.cfg.Priority, Generation: n.el.Self().Generation,
	})
	if err == nil {
		n.send(to, true, b)
	}
}

// onHandoverCall: on the master, a member's call for a switchover is passed
// to the vice; on the vice, its master's call is the order to take over.
func (n *Node) onHandoverCall(now time.Time, h *wire.Header, p *peer) {
	st := n.el.State()
	if h.Epoch != st.Epoch || h.Seq <= p.callSeq {
		return // another term's call, or its copy from the other network
	}
	p.callSeq = h.Seq
	switch {
	case n.isMaster() && n.live(p) && st.Vice != 0:
		n.sendCall(st.Vice)
	case st.Role == wire.RoleVice && p.id == st.Master && h.Epoch == st.Epoch:
		n.onElectEvent(now, n.el.TakeOver(now, n.livePeers()))
	}
}

func (n *Node) onLeave(now time.Time, p *peer) { n.gone(now, p, "leave") }

// PeerExited tells the node that peer id's process, at incarnation inc, has
// ended: the connection between the two agents (agent/exitwatch.go), opened
// and authenticated by that process, was closed by its kernel without the
// goodbye the agent writes before any close of its own. Only a process's
// end does that (kill -9, a crash, an exit): a paused process, a dead host
// or a cut network closes nothing, and is left to the detector. It is taken
// as the peer's goodbye (a Leave): the peer is gone now, not one bound
// from now, and the master marks it down in its next tick. It reports
// whether it was taken: not for this node itself, a peer never heard, or
// another incarnation (the connection of a process that has since been
// replaced says nothing of its successor).
func (n *Node) PeerExited(now time.Time, id wire.NodeID, inc uint64) bool {
	n.advance(now)
	p, ok := n.peers[id]
	if !ok || id == n.cfg.Node || inc == 0 || p.inc != inc || p.left {
		return false
	}
	n.stats.PeersExited++
	p.exited = true
	n.gone(now, p, "exited")
	return true
}

// gone: p said goodbye (a Leave), or its process ended (PeerExited).
func (n *Node) gone(now time.Time, p *peer, why string) {
	p.left = true
	p.heard = [wire.NumNets]time.Time{}
	n.el.Forget(p.id)
	if p.alive {
		p.alive = false
		p.linkUp = [wire.NumNets]bool{}
		n.event(Event{Kind: EvPeerDown, Node: p.id, Reason: why})
	}
	n.runElection(now)
	if n.isMaster() {
		n.masterTick(now)
	}
}

// judge applies the detector: a network silent for the detection time is a
// lost link; both silent is a lost peer.
func (n *Node) judge(now time.Time) {
	if now.Before(n.judgeAfter) {
		return
	}
	n.judgedAt = now
	for _, id := range n.peerIDs {
		p := n.peers[id]
		n.refreshFence(p)
		if p.fenced || p.left {
			if p.alive {
				p.alive = false
				p.linkUp = [wire.NumNets]bool{}
				n.event(Event{Kind: EvPeerDown, Node: p.id, Reason: "fenced"})
			}
			continue
		}
		heardAny := false
		for net := range p.heard {
			up := n.heardOn(p, net, now)
			heardAny = heardAny || up
			if p.linkUp[net] && !up {
				p.linkUp[net] = false
				n.event(Event{Kind: EvLinkDown, Node: p.id, Net: wire.Net(net)})
			}
		}
		if p.alive && !heardAny && !n.vouched(p, now) {
			n.judgedSilent(p, now)
			p.alive = false
			n.event(Event{Kind: EvPeerDown, Node: p.id, Reason: "silent", Unheard: now.Sub(p.lastHeard()), Bound: n.bound(p)})
		}
	}
}

// livePeers fills the election's view of the live peers.
func (n *Node) livePeers() []elect.Peer {
	n.peerBuf = n.peerBuf[:0]
	st := n.el.State()
	for _, id := range n.peerIDs {
		p := n.peers[id]
		if !p.hbOK {
			continue
		}
		if !n.live(p) && !n.outranksUs(p, st) {
			continue
		}
		n.peerBuf = append(n.peerBuf, elect.Peer{
			Candidate: elect.Candidate{Node: p.id, Priority: p.hb.Priority, Eligible: p.hb.Eligible, Generation: p.hb.Generation,
				Log: elect.Log{Epoch: p.hb.TableEpoch, Seq: p.hb.AppliedSeq}},
			Role: p.hb.Role, Epoch: p.epoch, Master: p.hb.Master, Vice: p.hb.Vice,
		})
	}
	return n.peerBuf
}

// outranksUs: a peer we fenced (it was on the other side of a partition) that
// is a master elected after ours must still be heard, or two sides that fenced
// each other would never merge. It wins; we follow it and re-sync.
func (n *Node) outranksUs(p *peer, st elect.State) bool {
	if p.hb.Role != wire.RoleMaster || p.left || !(n.heardOn(p, 0, n.now) || n.heardOn(p, 1, n.now)) {
		return false
	}
	if p.id == st.Master || st.Master == 0 {
		// The master we follow, or any while we have none: our table's
		// word on it may be stale (we may have been cut off).
		return true
	}
	// Same epoch or newer: the election decides between it and ours.
	return p.epoch >= st.Epoch
}

func (n *Node) runElection(now time.Time) {
	n.el.SetLog(elect.Log{Epoch: n.tab.HeadEpoch(), Seq: n.tab.Seq()}, n.tableSynced)
	n.onElectEvent(now, n.el.Evaluate(now, n.livePeers()))
}

func (n *Node) onElectEvent(now time.Time, ev elect.Event) {
	st := n.el.State()
	if st.Master != 0 {
		n.heldEpoch = max(n.heldEpoch, st.Epoch)
	}
	if st.Epoch > n.persist.Epoch {
		// A new epoch is on disk before anything carries it (MustSync): a
		// restarted node never claims an epoch it used before. The save
		// reserves the next epochs too (DefaultEpochReserve): until the
		// cluster passes them, a new epoch needs no save.
		n.persist.Epoch = st.Epoch + n.cfg.EpochReserve - 1
		n.savePersist(true)
	}
	switch ev {
	case elect.Claimed:
		n.event(Event{Kind: EvElected, Node: n.cfg.Node, Epoch: st.Epoch})
		n.sendCoordinator()
		n.becomeMaster(now)
		n.groupSnapshot(now)
	case elect.SteppedDown:
		n.event(Event{Kind: EvSteppedDown, Node: st.Master, Epoch: st.Epoch})
		n.ms.stop()
		n.followNew(now)
	case elect.Followed:
		if st.Master == n.synced.Master && st.Epoch == n.synced.Epoch && n.masterInc() == n.syncedInc {
			return // the same reign naming a new vice: nothing to re-sync
		}
		n.event(Event{Kind: EvFollowing, Node: st.Master, Epoch: st.Epoch})
		n.followNew(now)
	case elect.Lost:
		n.event(Event{Kind: EvMasterLost, Epoch: st.Epoch})
		n.ms.stop()
	case elect.ViceChanged:
		n.sendCoordinator()
	}
}

func (n *Node) sendCoordinator() {
	st := n.el.State()
	h := n.header()
	b, err := n.codec.AppendElection(n.buf(), &h, &wire.Election{
		Kind: wire.ElectCoordinator, Priority: n.cfg.Priority, Generation: n.el.Self().Generation, Vice: st.Vice,
	})
	if err == nil {
		n.send(0, true, b)
	}
}

func (n *Node) sendHeartbeat() {
	st := n.el.State()
	hb := &n.hbOut
	*hb = wire.Heartbeat{
		Role: st.Role, Priority: n.cfg.Priority, Eligible: n.cfg.Eligible,
		Master: st.Master, Vice: st.Vice, AppliedSeq: n.tab.Seq(), Generation: n.el.Self().Generation,
		TableEpoch: n.tab.HeadEpoch(),
	}
	n.stampHeartbeat(hb)
	for _, id := range n.peerIDs {
		if hb.NPeers == wire.MaxPeers {
			break
		}
		p := n.peers[id]
		var links uint8
		for net := range p.heard {
			if n.heardOn(p, net, n.now) {
				links |= 1 << net
			}
		}
		if links == 0 {
			continue
		}
		if p.fenced {
			links |= wire.LinkFenced
		}
		if n.recent(p) {
			links |= wire.LinkRecent
		}
		hb.Peers[hb.NPeers] = wire.PeerView{Node: id, Incarnation: p.inc, Links: links}
		hb.NPeers++
	}
	h := n.header()
	b, err := n.codec.AppendHeartbeat(n.buf(), &h, hb)
	if err == nil {
		n.stats.HeartbeatsSent++
		n.queue(Packet{Nets: BothNets, Heartbeat: true, Data: b})
	}
}

// reincarnate: the master says we are down at our incarnation. Whatever we
// were doing, the cluster has moved on without us; come back as new.
func (n *Node) reincarnate(now time.Time) {
	n.inc++
	n.event(Event{Kind: EvReincarnated, Node: n.cfg.Node, Reason: "fenced"})
	n.savePersist(true)
	n.wantSnapshot = true
	n.ledger.dirty = true
}

// savePersist hands the shell the state to persist; mustSync: before any
// packet of this Ready is sent (see Ready.MustSync).
func (n *Node) savePersist(mustSync bool) {
	n.persist = Persist{Incarnation: n.inc, Generation: n.el.Self().Generation, Members: append(n.persist.Members[:0], n.cfg.Members...),
		Epoch: max(n.persist.Epoch, n.el.State().Epoch)}
	n.rd.Persist = &n.persist
	n.rd.MustSync = n.rd.MustSync || mustSync
}

// masterInc is the incarnation of the master this node follows (0: none known).
func (n *Node) masterInc() uint64 {
	if p, ok := n.peers[n.el.State().Master]; ok {
		return p.inc
	}
	return 0
}

// PeerInfo is one peer as this node sees it, for status displays.
type PeerInfo struct {
	Node        wire.NodeID
	Incarnation uint64
	Role        wire.Role
	Priority    uint8
	Eligible    bool
	Alive       bool
	Fenced      bool
	Links       [wire.NumNets]bool
	LastHeard   [wire.NumNets]time.Time
	Bound       time.Duration // its detection bound now (widened after false downs)
	// From the peer's heartbeat (statusExtra): its version and timing.
	Version  string
	Interval time.Duration
	Misses   int
}

// Status is a snapshot of the node's view, for fmctl status.
type Status struct {
	Node        wire.NodeID
	Incarnation uint64
	Role        wire.Role
	Epoch       uint64
	Master      wire.NodeID
	Vice        wire.NodeID
	Stale       bool
	TableSeq    uint64
	Digest      uint64
	Generation  uint64
	Peers       []PeerInfo

	// statusExtra (misconfig.go): timing in force, quorum, partitions.
	Interval   time.Duration
	Misses     int
	Members    []wire.NodeID // the persisted membership (the quorum rule's)
	Quorum     bool          // a quorum of Members is present (or the rule no longer applies)
	Refused    bool          // this node refused to join: its node ID is in use
	Partitions [wire.NumNets][][]wire.NodeID
}

// Status returns the node's current view.
func (n *Node) Status() Status {
	st := n.el.State()
	s := Status{
		Node: n.cfg.Node, Incarnation: n.inc, Role: st.Role, Epoch: st.Epoch, Master: st.Master, Vice: st.Vice,
		Stale: n.stale, TableSeq: n.tab.Seq(), Digest: n.tab.Digest(), Generation: n.el.Self().Generation,
	}
	for _, id := range n.peerIDs {
		p := n.peers[id]
		pi := PeerInfo{Node: id, Incarnation: p.inc, Alive: n.live(p), Fenced: p.fenced, LastHeard: p.heard, Bound: n.bound(p)}
		if p.hbOK {
			pi.Role, pi.Priority, pi.Eligible = p.hb.Role, p.hb.Priority, p.hb.Eligible
		}
		for net := range p.heard {
			pi.Links[net] = n.heardOn(p, net, n.now) && !p.fenced
		}
		s.Peers = append(s.Peers, pi)
	}
	n.statusExtra(&s)
	return s
}

// PeerIncarnation is the incarnation this node last heard from peer id (0:
// never heard): the process a connection to it is to be opened with
// (agent/exitwatch.go).
func (n *Node) PeerIncarnation(id wire.NodeID) uint64 {
	if p, ok := n.peers[id]; ok {
		return p.inc
	}
	return 0
}

// StopPersist is the state to save when this node stops cleanly, once
// nothing more can be sent (the goodbye included): its epoch is the exact
// highest epoch it held in this life and the earlier ones, instead of the
// ceiling its saves wrote (DefaultEpochReserve), so that when it comes
// back and later claims, the cluster's epoch goes up by one, not by up to
// a reserve, and no other node has to save on that failover's way. It is
// known when the node started from an exact epoch (Config.EpochExact) or
// held one above the ceiling it started from (every earlier life's epochs
// are at or below that ceiling); otherwise ok is false, and the ceiling on
// disk stays.
func (n *Node) StopPersist() (p Persist, ok bool) {
	exact := n.heldEpoch
	switch {
	case n.cfg.EpochExact:
		exact = max(exact, n.cfg.Epoch)
	case n.heldEpoch <= n.cfg.Epoch:
		return Persist{}, false
	}
	p = n.persist
	p.Members = append([]wire.NodeID(nil), n.persist.Members...)
	p.Incarnation = n.inc
	p.Epoch, p.EpochExact = exact, true
	return p, true
}

// Package elect is fmagent's bully election as a pure state machine.
//
// Every node learns every candidate's rank from heartbeats (priority, then
// node ID, master eligibility and persisted membership generation), so the
// bully's "is anyone better alive?" probe is the heartbeat itself: the best
// live candidate claims mastership with a Coordinator message and a higher
// epoch, and everyone else follows it. The rules the package enforces:
//
//   - Rank: higher priority wins, then the lower node ID.
//   - Epoch: every claim uses an epoch higher than any the claimant has seen;
//     masters and claims from an older epoch than the node's own are ignored.
//   - Sticky master: a live master is never displaced by a better node that
//     joins later; a joining node follows the master it hears.
//   - Vice-master: the master names one (the best other eligible live node,
//     kept while it lives); it claims at once when the master is lost.
//   - Split brain: when two masters see each other, the one elected last
//     (higher epoch; ties by rank) stays and the other steps down.
//   - Amnesia: a node whose membership generation is older than a live
//     peer's may not become master; at cold start a node forms a cluster only
//     with a quorum of its persisted membership, or when told to (AllowAlone).
//   - Isolation: a node that had peers and now hears none does not make itself
//     master (it cannot tell a partition from its own lost links), except the
//     vice-master when the master was its only peer (the two-node cluster);
//     a master that loses two or more peers at once, and so all, steps down.
//
// The package reads no clock: time comes in as arguments.
package elect

import (
	"slices"
	"time"

	"github.com/fmagent/fmagent/wire"
)

// Candidate is what the election knows of a node's standing.
type Candidate struct {
	Node       wire.NodeID
	Priority   uint8
	Eligible   bool
	Generation uint64
	// Log is how up to date the candidate's table is.
	Log Log
}

// Log is how up to date a table is, compared as raft compares logs: the
// epoch of the master whose table it is, then the seq of its last change.
type Log struct {
	Epoch uint64
	Seq   uint64
}

// Less reports whether l is older than m.
func (l Log) Less(m Log) bool {
	if l.Epoch != m.Epoch {
		return l.Epoch < m.Epoch
	}
	return l.Seq < m.Seq
}

// Outranks reports whether a beats b: higher priority, then lower node ID.
func Outranks(a, b Candidate) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	return a.Node < b.Node
}

// Peer is the latest word from a live peer (its last heartbeat or claim).
type Peer struct {
	Candidate
	Role   wire.Role
	Epoch  uint64
	Master wire.NodeID
	Vice   wire.NodeID
}

// Config is fixed for an elector's life.
type Config struct {
	Self Candidate
	// Members is the persisted membership of the last cluster this node was
	// in; at cold start a quorum of it must be present to form a cluster.
	Members []wire.NodeID
	// AllowAlone is the operator's override of the quorum rule.
	AllowAlone bool
	// Settle is how long a starting node listens for a master before it may
	// claim (one detection time, so it has heard everyone alive).
	Settle time.Duration
	// ViceGrace is how long non-vice nodes wait for the vice-master to claim
	// after the master is lost, before a normal election.
	ViceGrace time.Duration
}

// State is a node's place in the election.
type State struct {
	Role   wire.Role
	Epoch  uint64
	Master wire.NodeID
	Vice   wire.NodeID
}

// Event says what Evaluate or Observe changed, for the caller to act on.
type Event uint8

const (
	// Nothing changed.
	Nothing Event = iota
	// Claimed: this node became master (send a Coordinator now).
	Claimed
	// SteppedDown: this node was master and now follows another.
	SteppedDown
	// Followed: this node follows a new master (or a new epoch).
	Followed
	// Lost: this node had a master and now has none.
	Lost
	// ViceChanged: as master, this node named a new vice-master.
	ViceChanged
)

func (e Event) String() string {
	return [...]string{"nothing", "claimed", "stepped-down", "followed", "lost", "vice-changed"}[e]
}

// Elector holds one node's election state.
type Elector struct {
	cfg   Config
	st    State
	start time.Time
	// formed: this node has been in a cluster (had a master) in this
	// incarnation, so the cold-start quorum rule no longer applies.
	formed bool
	// hadPeers: this node has heard at least one peer; one that hears
	// none after that is isolated, not alone.
	hadPeers bool
	// lostAt is when the master was lost (zero while there is one).
	lostAt   time.Time
	lostVice wire.NodeID
	// mergedLoser is a master this one outlived after a partition healed;
	// it is named vice-master once it is back.
	mergedLoser wire.NodeID
	// rival: as master, another master of our own epoch was heard (both
	// sides of a partition claimed it) and we outrank it: we claim above
	// once the heal has settled (see Evaluate).
	rival bool
	// lastSeen: when each peer was last among the live ones.
	lastSeen map[wire.NodeID]time.Time
	// peerJoined is when a peer last came into view.
	peerJoined time.Time
	// synced: this node's table is a copy of a master's of this
	// incarnation (or it has been master). heardBest is the most up-to-date
	// table an eligible peer has shown since this node started: a node that
	// has not synced may not lead while it knows of a newer table, even if
	// the peer holding it has gone quiet (a restarted node must never wipe
	// the cluster's table with its empty one).
	synced bool
	// floor is the highest epoch this node has held (or persisted): its
	// claims are always above it.
	floor     uint64
	heardBest Log
	now       time.Time // of the latest Evaluate
	heardAt   time.Time // when a live peer last showed heardBest (it is forgotten after 4 Settles)
}

// New returns an elector for a node starting at now with the given epoch
// (the highest it persisted, or 0).
func New(cfg Config, now time.Time, epoch uint64) *Elector {
	return &Elector{cfg: cfg, start: now, st: State{Role: wire.RoleJoining, Epoch: epoch}, lostAt: now, floor: epoch}
}

// State returns the current state.
func (e *Elector) State() State { return e.st }

// Self returns this node's candidacy.
func (e *Elector) Self() Candidate { return e.cfg.Self }

// SetGeneration updates this node's persisted membership generation.
func (e *Elector) SetGeneration(g uint64) { e.cfg.Self.Generation = g }

// SetLog updates how up to date this node's table is, and whether it is a
// synced copy of a master's table.
func (e *Elector) SetLog(l Log, synced bool) {
	e.cfg.Self.Log = l
	e.synced = synced
}

// SetMembers updates the persisted membership used by the quorum rule.
func (e *Elector) SetMembers(m []wire.NodeID) { e.cfg.Members = append(e.cfg.Members[:0], m...) }

// beats reports whether master claim (epoch a, candidate ca) wins over (b, cb).
func beats(a uint64, ca Candidate, b uint64, cb Candidate) bool {
	if a != b {
		return a > b
	}
	return Outranks(ca, cb)
}

// mayLead reports whether c may become master given the live peers:
// eligible, and not behind any live peer's (or this node's own) membership
// generation.
func (e *Elector) mayLead(c Candidate, peers []Peer) bool {
	if !c.Eligible {
		return false
	}
	// No master with a table older than an eligible live peer's (nor, for
	// a peer, than ours), as raft compares logs: a master change must never
	// replace a table with an older one.
	for i := range peers {
		if peers[i].Eligible && peers[i].Node != c.Node && c.Log.Less(peers[i].Log) {
			return false
		}
	}
	self := e.cfg.Self
	if c.Node != self.Node && self.Eligible && c.Log.Less(self.Log) {
		return false
	}
	if c.Node == self.Node && !e.synced && c.Log.Less(e.heardBest) && e.now.Sub(e.heardAt) <= 4*e.cfg.Settle {
		return false
	}
	if c.Node == e.cfg.Self.Node && e.formed {
		// Amnesia is a cold-start hazard: a node that has been a member
		// of a live cluster in this incarnation knows the membership (it
		// may lag the master's latest generation by a heartbeat).
		return true
	}
	if c.Generation < e.cfg.Self.Generation {
		return false
	}
	for i := range peers {
		if peers[i].Generation > c.Generation {
			return false
		}
	}
	return true
}

// quorum reports whether the cold-start rule lets this node form a cluster.
func (e *Elector) quorum(peers []Peer) bool {
	if e.formed || e.cfg.AllowAlone {
		return true
	}
	if len(e.cfg.Members) == 0 {
		return len(peers) > 0
	}
	n := 0
	for _, m := range e.cfg.Members {
		if m == e.cfg.Self.Node || slices.ContainsFunc(peers, func(p Peer) bool { return p.Node == m }) {
			n++
		}
	}
	return n >= len(e.cfg.Members)/2+1
}

// Evaluate recomputes the election from the live peers (heard within the
// detection time and not fenced), in any order. It is called on every tick
// and whenever a peer's word or liveness changes.
func (e *Elector) Evaluate(now time.Time, peers []Peer) Event {
	e.now = now
	if len(peers) > 0 {
		e.hadPeers = true
	}
	if e.lastSeen == nil {
		e.lastSeen = make(map[wire.NodeID]time.Time)
	}
	for i := range peers {
		if t, ok := e.lastSeen[peers[i].Node]; !ok || now.Sub(t) > e.cfg.ViceGrace {
			e.peerJoined = now // (re)appeared: maybe with a master in tow
		}
		e.lastSeen[peers[i].Node] = now
		if peers[i].Eligible && !peers[i].Log.Less(e.heardBest) {
			e.heardBest, e.heardAt = peers[i].Log, now
		}
	}
	self := e.cfg.Self
	// The best master claim among the live peers.
	var best *Peer
	for i := range peers {
		p := &peers[i]
		if p.Role != wire.RoleMaster {
			continue
		}
		if best == nil || beats(p.Epoch, p.Candidate, best.Epoch, best.Candidate) {
			best = p
		}
	}

	if e.st.Role == wire.RoleMaster {
		if best != nil && beats(best.Epoch, best.Candidate, e.st.Epoch, self) {
			e.follow(best)
			return SteppedDown
		}
		if best != nil {
			// A master elected before us in a partition that healed: it
			// steps down on its side; name it vice once it is back with us.
			e.mergedLoser = best.Node
			if best.Epoch == e.st.Epoch {
				e.rival = true
			}
		}
		if e.isolated(now, peers) {
			// Two or more peers went silent at once: far more likely our
			// own links than everyone else's.
			e.st = State{Role: wire.RoleJoining, Epoch: e.st.Epoch}
			e.lostAt, e.lostVice = now, 0
			e.rival = false
			return Lost
		}
		if e.rival && now.Sub(e.peerJoined) >= e.cfg.Settle {
			// Both sides of a partition claimed our epoch. Write versions
			// order by epoch, then seq: the other side's writes of this
			// epoch are not ordered before ours by who won, and one of its
			// acknowledged writes re-asserted after the heal could undo a
			// later one of ours. Once the heal has settled (a master of a
			// newer epoch would have been heard, and followed), claim
			// above both, so everything written from now on comes after
			// either side's (chaos seed 2748).
			e.claim(peers)
			return Claimed
		}
		// A peer with no master follows us at our epoch, whatever epoch
		// it knew (follow), so a restarted node's persisted epoch does not
		// make us claim again. One that says it follows us at a higher
		// epoch (an older agent) would ignore us: claim above it. (A peer
		// that follows a master we do not hear yet is left alone: that
		// master's heartbeat decides.)
		for i := range peers {
			if peers[i].Epoch > e.st.Epoch && peers[i].Master == self.Node {
				e.claim(peers)
				return Claimed
			}
		}
		if v := e.chooseVice(peers); v != e.st.Vice {
			e.st.Vice = v
			return ViceChanged
		}
		return Nothing
	}

	// Follow the best live master: a newer one always; an older one only
	// if we have none (a node that was cut off and comes back must not
	// displace a live master, whatever epoch its own lone elections
	// reached: the master sees our higher epoch and claims above it).
	if best != nil && (best.Epoch >= e.st.Epoch || e.st.Master == 0 || best.Node == e.st.Master) {
		if best.Node != e.st.Master || best.Epoch != e.st.Epoch || e.roleUnder(best) != e.st.Role || best.Vice != e.st.Vice {
			e.follow(best)
			return Followed
		}
		return Nothing
	}

	// No live master we accept.
	ev := Nothing
	if e.st.Master != 0 {
		e.lostVice = e.st.Vice
		wasVice := e.st.Role == wire.RoleVice
		e.st = State{Role: wire.RoleJoining, Epoch: e.st.Epoch}
		e.lostAt = now
		ev = Lost
		if wasVice && e.mayLead(self, peers) && e.quorum(peers) && !e.isolated(now, peers) {
			// The vice-master takes over at once, even alone: in a
			// two-node cluster it is the only one left to.

			e.claim(peers)
			return Claimed
		}
	}
	if now.Sub(e.start) < e.cfg.Settle || now.Sub(e.peerJoined) < e.cfg.Settle {
		// Starting, or a peer just came into view (a partition healing):
		// listen for one detection time first, so a live master is heard
		// and followed rather than challenged.
		return ev
	}
	if e.lostVice != 0 && e.lostVice != self.Node && now.Sub(e.lostAt) < e.cfg.ViceGrace &&
		slices.ContainsFunc(peers, func(p Peer) bool { return p.Node == e.lostVice }) {
		return ev // the vice-master is alive and about to claim
	}
	if !e.mayLead(self, peers) || !e.mayClaimWith(peers) {
		return ev
	}
	for i := range peers {
		if e.mayLead(peers[i].Candidate, peers) && Outranks(peers[i].Candidate, self) {
			return ev // a better live candidate will claim
		}
	}
	e.claim(peers)
	return Claimed
}

// isolated: no live peer, and at least two were live moments ago. One peer
// lost is a peer's failure; all of several lost at once is ours.
// Forget drops node from the peers seen lately: it is known gone (its
// goodbye, or its process's end), not silent, and two such departures at
// once say nothing of this node's own links (isolated).
func (e *Elector) Forget(node wire.NodeID) { delete(e.lastSeen, node) }

func (e *Elector) isolated(now time.Time, peers []Peer) bool {
	if len(peers) > 0 {
		return false
	}
	recent := 0
	for _, t := range e.lastSeen {
		if now.Sub(t) <= e.cfg.ViceGrace {
			recent++
		}
	}
	return recent >= 2
}

// TakeOver makes the vice-master master at once, at a new epoch: the
// master asked it to (an operator's switchover). Anyone else: Nothing.
func (e *Elector) TakeOver(now time.Time, peers []Peer) Event {
	if e.st.Role != wire.RoleVice {
		return Nothing
	}
	e.claim(peers)
	return Claimed
}

// ClaimAbove makes a master claim an epoch above epoch, if it is at or
// below it: a write acknowledged in a reign newer than this master's was
// re-asserted to it (its reporter follows it, the newer reign's master being
// gone or out of reach). Until this master's reign is the newest, that write
// can be neither applied (its version would outrank everything this reign
// writes after it) nor dropped. Anyone else, or an epoch below ours: Nothing.
func (e *Elector) ClaimAbove(epoch uint64, peers []Peer) Event {
	if e.st.Role != wire.RoleMaster || epoch < e.st.Epoch {
		return Nothing
	}
	e.floor = max(e.floor, epoch)
	e.claim(peers)
	return Claimed
}

// mayClaimWith applies the quorum and isolation rules.
func (e *Elector) mayClaimWith(peers []Peer) bool {
	if !e.quorum(peers) {
		return false
	}
	if len(peers) == 0 && e.hadPeers && !e.cfg.AllowAlone {
		return false // isolated: cannot tell a partition from our own links
	}
	return true
}

// Observe takes a Coordinator claim from a peer at once, without waiting for
// the next evaluation: a claim at a newer epoch, or a same-epoch claim by a
// better candidate, is followed. Older claims are ignored.
func (e *Elector) Observe(now time.Time, p Peer) Event {
	if p.Role != wire.RoleMaster || p.Node == e.cfg.Self.Node {
		return Nothing
	}
	if e.st.Role == wire.RoleMaster {
		if beats(p.Epoch, p.Candidate, e.st.Epoch, e.cfg.Self) {
			e.follow(&p)
			return SteppedDown
		}
		if p.Epoch == e.st.Epoch {
			// A worse candidate claimed our own epoch: we claim above it
			// once the heal settles (see Evaluate).
			e.mergedLoser, e.rival = p.Node, true
		}
		return Nothing
	}
	if p.Epoch > e.st.Epoch || p.Epoch == e.st.Epoch && (e.st.Master == 0 || e.st.Master == p.Node) {
		e.follow(&p)
		return Followed
	}
	return Nothing
}

func (e *Elector) roleUnder(m *Peer) wire.Role {
	if m.Vice == e.cfg.Self.Node {
		return wire.RoleVice
	}
	return wire.RoleMember
}

// follow takes m as master, at m's epoch (even an older one than this node
// has seen: a restarted node with a high persisted epoch, or one that was cut
// off, follows the live master rather than forcing it to claim again; the
// floor keeps its own next claim above every epoch it used).
func (e *Elector) follow(m *Peer) {
	e.floor = max(e.floor, e.st.Epoch)
	e.st = State{Role: e.roleUnder(m), Epoch: m.Epoch, Master: m.Node, Vice: m.Vice}
	e.formed = true
	e.rival = false
	e.lostAt, e.lostVice = time.Time{}, 0
}

func (e *Elector) claim(peers []Peer) {
	epoch := max(e.st.Epoch, e.floor)
	for i := range peers {
		epoch = max(epoch, peers[i].Epoch)
	}
	e.st = State{Role: wire.RoleMaster, Epoch: epoch + 1, Master: e.cfg.Self.Node}
	e.st.Vice = e.chooseVice(peers)
	e.formed = true
	e.rival = false
	e.synced = true
	e.lostAt, e.lostVice = time.Time{}, 0
}

// chooseVice keeps the current vice-master while it lives; otherwise it
// prefers a master that stepped down to us after a heal, then the best other
// live eligible node. Generations do not count here: the master's moves
// first on every membership change and its followers adopt it within a
// heartbeat; a follower is not amnesiac for lagging by one. (The amnesia
// guard still applies when anyone claims.)
func (e *Elector) chooseVice(peers []Peer) wire.NodeID {
	find := func(n wire.NodeID) *Peer {
		for i := range peers {
			if peers[i].Node == n {
				return &peers[i]
			}
		}
		return nil
	}
	if e.mergedLoser != 0 {
		if p := find(e.mergedLoser); p != nil && p.Eligible && p.Role != wire.RoleMaster {
			e.mergedLoser = 0
			return p.Node
		}
	}
	if p := find(e.st.Vice); p != nil && p.Eligible && p.Role != wire.RoleMaster {
		return p.Node
	}
	var best *Peer
	for i := range peers {
		p := &peers[i]
		if !p.Eligible || p.Role == wire.RoleMaster {
			continue
		}
		if best == nil || Outranks(p.Candidate, best.Candidate) {
			best = p
		}
	}
	if best == nil {
		return 0
	}
	return best.Node
}

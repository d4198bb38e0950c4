// Package core is the pure, deterministic heart of an fmagent node: membership
// (heartbeats on two networks, per-peer per-network miss detection), the bully
// election (package elect), replication of the entity table (ordered changes,
// retransmission, snapshots, transactions) and, on the master, the fault
// server with its plugin chain.
//
// Like go.etcd.io/raft, a Node has no goroutines, sockets, clock or
// randomness of its own. The shell (package agent, or netsim) feeds it
// packets with Step, local requests with Submit and the passage of time with
// Tick, and collects what it must do with Ready: packets to send, table
// changes to publish, state to persist, answers to local requests. Given the
// same inputs, a Node produces the same outputs, which is what lets netsim
// replay any failure from its seed.
package core

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/fmagent/fmagent/agent/plugin"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/elect"
	"github.com/fmagent/fmagent/wire"
)

// Config is a node's fixed configuration.
type Config struct {
	Node     wire.NodeID
	Cluster  uint32
	Key      []byte
	Priority uint8
	Eligible bool

	Interval     time.Duration // heartbeat interval
	Misses       int           // silent intervals before a peer is judged lost
	StaleTimeout time.Duration // no word from a master this long: stale
	TxnTimeout   time.Duration // how long the master waits for prepare acks

	// Persisted state: boot-unique incarnation, membership generation and
	// the membership itself (for the amnesia and quorum rules).
	Incarnation uint64
	Generation  uint64
	Members     []wire.NodeID
	AllowAlone  bool
	// Epoch is the highest election epoch this node persisted: it never
	// claims at or below it again, so (master, epoch) names one reign.
	// It is a ceiling: at or above every epoch the node used or followed
	// in an earlier life (EpochReserve).
	Epoch uint64
	// EpochExact: Epoch is exactly the highest epoch the node held in its
	// earlier lives (its last one ended in a clean stop: StopPersist), not
	// a ceiling above it.
	EpochExact bool
	// EpochReserve is how many epochs one synced save of the epoch covers
	// (0: DefaultEpochReserve; 1: every new epoch is saved before anything
	// carries it). See DefaultEpochReserve.
	EpochReserve uint64

	MaxAlarms int
	// MaxTombstones bounds the table's tombstones of each kind (0:
	// table.MaxTombstones). Only the simulator sets it (low, so that its
	// chaos sees tombstones forgotten).
	MaxTombstones int
	// MaxEntities and MaxEntitiesPerOwner bound the entities the master
	// lets clients create, in the cluster and per owning node (nodes and
	// links not counted per owner); 0: DefaultMaxEntities and
	// DefaultMaxEntitiesPerOwner (entitylimit.go).
	MaxEntities, MaxEntitiesPerOwner int
	RingSize                         int           // master's retransmit ring, in changes
	Chain                            *plugin.Chain // nil: plugin.DefaultChain()

	// Version is carried in every heartbeat (peers show it in status).
	Version string
	// AcceptKeys are further cluster keys accepted (never sent with)
	// during a key change-over (wire.Codec.AcceptKey).
	AcceptKeys [][]byte
}

func newTable(c *Config) *table.Table {
	t := table.New(c.MaxAlarms)
	t.SetMaxTombstones(c.MaxTombstones)
	return t
}

func (c *Config) setDefaults() {
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Misses <= 0 {
		c.Misses = DefaultMisses
	}
	if c.StaleTimeout <= 0 {
		c.StaleTimeout = DefaultStale
	}
	if c.TxnTimeout <= 0 {
		c.TxnTimeout = 3 * c.Interval
	}
	if c.MaxAlarms <= 0 {
		c.MaxAlarms = DefaultMaxAlarms
	}
	if c.RingSize <= 0 {
		c.RingSize = DefaultRingSize
	}
	if c.Incarnation == 0 {
		c.Incarnation = 1
	}
	if c.EpochReserve == 0 {
		c.EpochReserve = DefaultEpochReserve
	}
}

// DefaultEpochReserve is how many epochs past the one it reaches a node's
// synced save of a new epoch covers: the save says "never claim at or
// below E + DefaultEpochReserve - 1", so the next epochs up to that one
// are followed or claimed with nothing to save first. A new epoch is the
// moment of a failover: saved first, it cost an fdatasync on the
// real-time loop of the heir before its claim left and of every follower
// before it read the new master's snapshot (at N = 9, about 2.5 ms of a
// 7–10 ms exit failover, and a busy disk's whole wait: docs/bench.md).
// Reserved, one failover in this many waits for the disk.
//
// The price: a node that restarts after a crash comes back with the
// ceiling as its floor, and if it later claims, the cluster's epoch jumps
// past it (by up to this much), and every other node saves once on that
// failover's way, as before the reserve (its peers cannot know the floor
// ahead: it is silent until it follows, docs/bench.md). A clean stop
// leaves the exact epoch instead (StopPersist), and no jump. Epochs only
// order reigns; a jump means nothing else.
// (The incarnation's reserve, persist.ReserveIncarnations, is the same
// idea for a fenced node's return.)
const DefaultEpochReserve = 256

// MinMisses is the fewest missed heartbeats that may declare a peer lost: a
// virtual machine stalls for ~20 ms now and then, and with fewer than three
// misses that reads as a failure (DESIGN §8).
const MinMisses = 3

// ErrBadConfig is the sentinel every error of Config.Validate wraps.
var ErrBadConfig = errors.New("core: bad config")

// Validate refuses a configuration the core cannot run safely, before the
// defaults of the fields left zero are applied (as go.etcd.io/raft's
// Config.validate). New panics on a Config that Validate refuses: the shell
// checks it first and reports the error.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrBadConfig}, args...)...))
	}
	if c.Node == 0 {
		bad("node ID 0 is reserved (it means none)")
	}
	if c.Interval < 0 {
		bad("interval %v is negative", c.Interval)
	}
	if c.Misses != 0 && c.Misses < MinMisses {
		bad("misses %d is below %d: a ~20 ms stall would read as a failure", c.Misses, MinMisses)
	}
	if c.StaleTimeout < 0 || c.TxnTimeout < 0 {
		bad("stale timeout %v and transaction timeout %v may not be negative", c.StaleTimeout, c.TxnTimeout)
	}
	if c.MaxEntities < 0 || c.MaxEntitiesPerOwner < 0 {
		bad("entity limits %d and %d may not be negative", c.MaxEntities, c.MaxEntitiesPerOwner)
	}
	if c.MaxAlarms < 0 || c.RingSize < 0 {
		bad("alarm limit %d and ring size %d may not be negative", c.MaxAlarms, c.RingSize)
	}
	return errors.Join(errs...)
}

// Detection is the silence after which a peer (or one of its links) is lost.
func (c *Config) Detection() time.Duration { return c.Interval * time.Duration(c.Misses) }

// Errors returned to local requests.
var (
	ErrNoMaster = errors.New("core: no master")
	ErrRejected = errors.New("core: rejected by the master")
	// ErrIgnored: the master's plugin chain decided not to apply the write
	// (an owner's state about an earlier life of the entity, a plugin's
	// Ignore). It wraps ErrRejected.
	ErrIgnored = fmt.Errorf("%w: the plugin chain ignored it", ErrRejected)
	ErrBadName = errors.New("core: bad entity name")
	// ErrAlarmsFull: the entity already holds MaxAlarms alarms, none less
	// severe than the one asked for; the raise was not applied.
	ErrAlarmsFull = errors.New("core: the entity's alarms are full with alarms at least as severe")
	// ErrUnknownEntity: the owner set the state of an entity the table
	// does not hold (never registered, or unregistered since).
	ErrUnknownEntity = errors.New("core: unknown entity")
	// ErrBadRequest: a malformed request (no cause for a raise or clear, an
	// unknown severity), not applied.
	ErrBadRequest = errors.New("core: malformed request")
)

// Packet is one datagram to send. Data is valid until the next call into the Node.
type Packet struct {
	To   wire.NodeID // 0: the networks' multicast groups
	Nets uint8       // bit n: send on wire.Net n
	Prio bool        // high TOS / SO_PRIORITY: down changes and elections
	// Heartbeat: a heartbeat, sent to the groups' heartbeat port, where
	// receivers read it with StepHeartbeat (DESIGN §4).
	Heartbeat bool
	Data      []byte
}

// BothNets is the Nets mask for both networks.
const BothNets = 1<<wire.NetA | 1<<wire.NetB

// Persist is state the shell must write durably before acting on the rest
// of a Ready.
type Persist struct {
	Incarnation uint64
	Generation  uint64
	Members     []wire.NodeID
	Epoch       uint64
	// EpochExact: Epoch is exactly the highest epoch held, not a ceiling
	// (StopPersist's only; every save the core asks for is a ceiling).
	EpochExact bool
}

// Result answers a local request made with Submit.
type Result struct {
	ID  uint64
	Seq uint64 // table seq of the resulting change; 0 if none was needed
	// Ver is the version the write was acknowledged with: the order of
	// acknowledged writes across masters (see DESIGN, the consistency model).
	Ver wire.WriteVersion
	// Displaced: the entity's alarms were full, and this raise displaced
	// the least severe of them (the master's event names it).
	Displaced bool
	Err       error
}

// EventKind classifies things worth a log line or a metric.
type EventKind uint8

const (
	EvElected         EventKind = iota + 1 // this node became master
	EvSteppedDown                          // this node stopped being master
	EvFollowing                            // this node follows a (new) master
	EvMasterLost                           // this node lost its master
	EvPeerUp                               // a peer became alive (Node, Net ignored)
	EvPeerDown                             // a peer went silent on both networks
	EvLinkUp                               // a peer was heard again on Net
	EvLinkDown                             // a peer went silent on Net
	EvStale                                // no master for longer than the stale timeout
	EvFresh                                // a master again after being stale
	EvReincarnated                         // this node learned it was fenced and took a new incarnation
	EvSnapshotApplied                      // the table was replaced by a snapshot
	EvTxnSuspect                           // a member did not ack a prepare in time
	EvRejected                             // a packet was dropped (Reason says why)
	EvStalled                              // this node's own ticks stalled; judgement deferred
	EvDisplaced                            // as master: a raise displaced a less severe alarm (Reason names both)
	EvSuperseded                           // as master: a re-asserted write was older than the table's (Reason names it)

	// Events of alarms.go and misconfig.go (op-events).
	EvPartitioned     // master: network Net is split into parts (Reason names them)
	EvPartitionHealed // master: network Net is whole again
	EvDuplicateNode   // another node uses node ID Node (Reason says which side this is)
	EvTimingMismatch  // peer Node's interval or misses differ from ours
	EvWaitingQuorum   // no master: not enough of the last membership present (Reason names the missing)
	EvQuorumReached   // a master again after waiting for quorum
	EvSplitBrain      // as master: node Node is master too
	EvSplitBrainHealed
)

// Event is one thing that happened, for logs and metrics.
type Event struct {
	Kind   EventKind
	Node   wire.NodeID
	Net    wire.Net
	Epoch  uint64
	Reason string
	// Unheard and Bound, for a peer judged silent: how long it had not
	// been heard on either network, and the bound it was judged by (the
	// configured one, widened after false downs), so a log line says by
	// how much a verdict was earned.
	Unheard, Bound time.Duration
	// Name and Cause, for EvDisplaced: the entity, and the cause of the
	// alarm that made room (Reason says it for people; netsim's write
	// checker reads these).
	Name, Cause string
}

// Ready is what the shell must do after a call into the Node. Slices are
// reused: valid until the next call into the Node.
type Ready struct {
	Packets []Packet
	// Changed lists entities whose row changed, in complete change groups;
	// the shell publishes them (and Removed) as one shared-memory transaction.
	Changed []uint64
	Removed []uint64
	// Reset: the whole table was replaced (snapshot); republish everything.
	Reset bool
	// Propagation: for each change group a follower applied in order, the
	// time from the master's decision (its clock) to now (ours): meaningful
	// where clocks agree, as on one host or under PTP.
	Propagation []time.Duration
	Persist     *Persist
	// MustSync: Persist must be durable (written and fsynced) before any
	// of Packets is sent. Set when Persist carries a new incarnation or a
	// new epoch: a restarted node must never speak again under an
	// incarnation or claim an epoch it used before, or two lives of one
	// node (or two reigns at one epoch) would be confused. Otherwise the
	// save may happen after sending, and be lost in a crash: what it
	// carries (the membership generation) is safe to come back behind on.
	// (The rule of go.etcd.io/raft's MustSync: what a packet promises is on
	// disk before the packet leaves.)
	MustSync bool
	Results  []Result
	Events   []Event
}

// Stats counts what the node did, for metrics. Cumulative.
type Stats struct {
	HeartbeatsSent uint64               // each on both networks
	HeartbeatsRecv [wire.NumNets]uint64 // authenticated, per network
	UpdatesSent    uint64               // update datagrams (multicast and retransmissions)
	ChangesApplied uint64               // replicated changes applied here
	NacksSent      uint64               // requests for missing changes or a snapshot
	NacksServed    uint64               // as master
	NacksRefused   uint64               // as master: from a peer not live, or over its budget (serve.go)
	Retransmits    uint64               // changes resent on a nack
	SnapshotsSent  uint64               // snapshot transfers served, as master
	// NacksCoveredByGroup: nacks for the whole table left to the snapshot
	// this master sent the group at its claim (groupSnapshot), as master.
	NacksCoveredByGroup uint64
	SnapshotsApplied    uint64 // snapshots that replaced this node's table
	ReportsHandled      uint64 // reports through the plugin chain, as master
	ReportsRefused      uint64 // client reports refused for their name, as master
	// ReportCopies: reports not handled again, as master, because they
	// were the other network's copy of a packet handled (reportPkts).
	ReportCopies uint64
	// ReportsInherited: retransmitted requests answered, as master, as
	// an earlier master that applied them had (appliedReqs).
	ReportsInherited uint64
	// ReportsOfAnEarlierLife: a fault report, raise or clear of a
	// reporter's earlier life (retransmitted after it came back fenced)
	// answered, as master, as the master that applied it had.
	ReportsOfAnEarlierLife uint64
	PeersExited            uint64 // peers taken as gone when their process ended (PeerExited)
}

// Node is one fmagent node's protocol state.
type Node struct {
	cfg      Config
	detStats DetectorStats // detector.go
	codec    *wire.Codec
	el       *elect.Elector
	tab      *table.Table
	chain    *plugin.Chain
	hist     *plugin.History

	inc    uint64
	pktSeq uint64
	start  time.Time
	now    time.Time

	peers   map[wire.NodeID]*peer
	peerIDs []wire.NodeID // sorted, for deterministic iteration

	nextHB     time.Time
	lastTick   time.Time // zero until the first Tick
	judgeAfter time.Time // after a stall, no one is judged silent before this
	judgedAt   time.Time // when judge last ran (NextDeadline: what is still due)
	deafCount  uint64    // Deafened calls (deaf.go)

	// Follower side.
	masterWord   time.Time   // last heard from the followed master
	applied      appliedReqs // requests applied to the table (applied.go)
	masterSeq    uint64      // highest seq the master is known to have
	gapSince     time.Time
	nextNack     time.Time
	stale        bool
	pending      map[uint64]*heldChange // received, not yet applicable
	staged       map[uint64][]*heldChange
	snap         snapAssembly
	wantSnapshot bool
	early        early // a claimant's packets before its coordinator (snapshot.go)

	// synced is the master (and epoch) this node last synced with, and
	// syncedInc that master's incarnation: a different one is a different
	// reign, whatever its epoch says.
	synced    elect.State
	syncedInc uint64
	// tableSynced: the table is a copy of the current master's (or this node
	// is master); the election needs to know.
	tableSynced bool

	// Master side.
	ms masterState
	al alarmState // the membership alarms (alarms.go)
	// lost is masterTick's scratch: the node entities found up but no
	// longer heard, reported once the walk is over.
	lost []uint64
	mc   misconfig // misconfiguration and cluster trouble (misconfig.go)

	// Local requests and what this node must re-assert after a master change.
	nextReport  uint64
	outstanding map[uint64]*localReport
	ledger      ledger
	lineage     lineage // the reigns this table applied (lineage.go)

	rd      Ready
	out     Ready
	stats   Stats
	persist Persist
	// heldEpoch is the highest epoch this node followed or reigned at in
	// this life (StopPersist).
	heldEpoch uint64
	arena     [][]byte
	nArena    int

	peerBuf  []elect.Peer
	idBuf    []uint64
	free     []*heldChange // recycled held changes (the follower's update path)
	verdicts []plugin.Verdict
	group    []wire.Change
	hbOut    wire.Heartbeat  // the heartbeat being sent
	hbIn     *wire.Heartbeat // decode buffer, swapped with a peer's when newer

	fence fenceState // self-fence decision (fence.go)
}

// New returns a node starting at now.
func New(cfg Config, now time.Time) *Node {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg.setDefaults()
	chain := cfg.Chain
	if chain == nil {
		chain = plugin.DefaultChain()
	}
	codec := wire.NewCodec(cfg.Cluster, cfg.Key)
	for _, k := range cfg.AcceptKeys {
		codec.AcceptKey(k)
	}
	n := &Node{
		cfg:         cfg,
		codec:       codec,
		tab:         newTable(&cfg),
		chain:       chain,
		hist:        chain.History(),
		inc:         cfg.Incarnation,
		start:       now,
		now:         now,
		peers:       make(map[wire.NodeID]*peer),
		pending:     make(map[uint64]*heldChange),
		staged:      make(map[uint64][]*heldChange),
		outstanding: make(map[uint64]*localReport),
		nextHB:      now,
		masterWord:  now,
		hbIn:        new(wire.Heartbeat),
	}
	n.el = elect.New(elect.Config{
		Self:       elect.Candidate{Node: cfg.Node, Priority: cfg.Priority, Eligible: cfg.Eligible, Generation: cfg.Generation},
		Members:    append([]wire.NodeID(nil), cfg.Members...),
		AllowAlone: cfg.AllowAlone,
		Settle:     cfg.Detection(),
		ViceGrace:  2 * cfg.Interval,
	}, now, cfg.Epoch)
	n.persist.Epoch = cfg.Epoch
	if cfg.EpochExact && cfg.EpochReserve > 1 {
		// Back from a clean stop: the floor of its claims is the exact
		// epoch, and the disk gets a reserve above it again before
		// anything is sent (the start window keeps it silent meanwhile).
		n.persist.Epoch = cfg.Epoch + cfg.EpochReserve - 1
		n.savePersist(true)
	}
	n.ms.init(cfg.RingSize)
	n.applied.init()
	n.ledger.init()
	n.lineage.init()
	n.mc.init(now, &n.cfg)
	return n
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats { return n.stats }

// ID returns the node's ID.
func (n *Node) ID() wire.NodeID { return n.cfg.Node }

// Incarnation returns the node's current incarnation.
func (n *Node) Incarnation() uint64 { return n.inc }

// Table returns the node's table, read-only: the shell publishes from it.
func (n *Node) Table() *table.Table { return n.tab }

// Config returns the node's configuration (with defaults applied).
func (n *Node) Config() Config { return n.cfg }

// Role returns the election state.
func (n *Node) Role() elect.State { return n.el.State() }

// Syncing reports whether the node waits for a snapshot from its master:
// until it has one, its table is what it held before and means nothing.
func (n *Node) Syncing() bool { return n.wantSnapshot && !n.isMaster() }

// Stale reports whether the node has had no master for the stale timeout.
func (n *Node) Stale() bool { return n.stale }

// UnhandedChanges returns the table changes the next Ready will carry, so
// far: the entities changed and removed, and whether the table was
// replaced. A Submit applies a change to the master's table at once, and
// its Ready may be handled later (by another goroutine than the one that
// submitted); what copies the table between the two must know of it. The
// slices are the Node's own: read them before the next Step, Tick or
// Submit.
func (n *Node) UnhandedChanges() (changed, removed []uint64, reset bool) {
	return n.rd.Changed, n.rd.Removed, n.rd.Reset
}

// Ready returns what the shell must do, and resets it: call after every
// Step, Tick or Submit.
func (n *Node) Ready() *Ready {
	r := n.rd
	n.rd.Packets = n.rd.Packets[:0]
	n.rd.Changed = n.rd.Changed[:0]
	n.rd.Removed = n.rd.Removed[:0]
	n.rd.Results = n.rd.Results[:0]
	n.rd.Events = n.rd.Events[:0]
	n.rd.Propagation = n.rd.Propagation[:0]
	n.rd.Reset = false
	n.rd.Persist = nil
	n.rd.MustSync = false
	n.nArena = 0
	n.out = r
	return &n.out
}

func (n *Node) event(e Event) { n.rd.Events = append(n.rd.Events, e) }

// buf returns a scratch datagram buffer valid until the next Ready.
func (n *Node) buf() []byte {
	if n.nArena == len(n.arena) {
		n.arena = append(n.arena, make([]byte, 0, wire.MaxDatagram))
	}
	b := n.arena[n.nArena][:0]
	n.nArena++
	return b
}

func (n *Node) header() wire.Header {
	n.pktSeq++
	return wire.Header{Sender: n.cfg.Node, Incarnation: n.inc, Epoch: n.el.State().Epoch, Seq: n.pktSeq}
}

func (n *Node) send(to wire.NodeID, prio bool, data []byte) {
	n.queue(Packet{To: to, Nets: BothNets, Prio: prio, Data: data})
}

// queue adds p to the Ready's packets, unless this node is silent.
func (n *Node) queue(p Packet) {
	if n.silent() {
		return // the start window, or refused (misconfig.go)
	}
	n.rd.Packets = append(n.rd.Packets, p)
}

// Step takes one received datagram that arrived on net. It returns the
// authenticated sender (so the shell can learn its address), or an error
// when the packet was dropped; a dropped packet changes nothing. A
// heartbeat is refused here (wire.ErrWrongSocket): heartbeats come through
// StepHeartbeat.
func (n *Node) Step(now time.Time, net wire.Net, pkt []byte) (wire.NodeID, error) {
	return n.step(now, net, pkt, false)
}

// StepHeartbeat takes one datagram of the heartbeat socket (Packet.Heartbeat
// says which packets go there), received at at (the kernel's stamp, which
// may be earlier than the time of packets stepped before it: the shell
// reads this socket when it wakes for something else, not when a heartbeat
// arrives). Only heartbeats are accepted, under a replay window of their
// own: read later than the group socket's traffic, they are out of order
// with it, and a window shared with it would refuse a heartbeat overtaken
// by more than its width of the sender's other packets; and nothing else
// may come through this window, or a replayed change would be fresh to it.
func (n *Node) StepHeartbeat(at time.Time, net wire.Net, pkt []byte) (wire.NodeID, error) {
	return n.step(at, net, pkt, true)
}

func (n *Node) step(now time.Time, net wire.Net, pkt []byte, hbSock bool) (wire.NodeID, error) {
	n.advance(now)
	// Cheapest first (DESIGN, issue 9): size, magic, version, cluster and
	// header checks (Peek), then, for a sender we know, its replay window,
	// and only then the MAC. Checking the window before the MAC is safe:
	// it records nothing, and a packet it rejects would be rejected after
	// the MAC as well. Unknown senders go to the MAC (a node joining), and
	// only an authenticated packet creates a peer.
	ph, err := n.codec.Peek(pkt)
	if err != nil {
		return 0, err
	}
	if (ph.Type == wire.TypeHeartbeat) != hbSock {
		return 0, wire.ErrWrongSocket // before the MAC: it records nothing
	}
	if p, ok := n.peers[ph.Sender]; ok && net < wire.NumNets {
		if ph.Incarnation < p.inc {
			return 0, wire.ErrReplay
		}
		if err := p.window(net, hbSock).Check(ph.Incarnation, ph.Seq); err != nil {
			return 0, err
		}
	}
	h, body, err := n.codec.Open(pkt)
	if err != nil {
		return 0, err
	}
	if h.Sender == n.cfg.Node && net < wire.NumNets {
		return 0, n.fromSelfID(now, &h, body)
	}
	if h.Sender == 0 || net >= wire.NumNets {
		return 0, errSelf
	}
	if n.onLeaveNotice(&h, body) {
		return 0, ErrDuplicateID
	}
	if n.mc.refused {
		return h.Sender, nil
	}
	if err := n.admitPeer(h.Sender); err != nil {
		return h.Sender, err
	}
	p := n.peer(h.Sender)
	if h.Incarnation < p.inc {
		return 0, wire.ErrReplay
	}
	if err := p.window(net, hbSock).Admit(h.Incarnation, h.Seq); err != nil {
		return 0, err
	}
	if h.Incarnation > p.inc {
		p.reincarnated(h.Incarnation)
		if st := n.el.State(); p.id == st.Master && !n.isMaster() && n.syncedInc != 0 && n.syncedInc != h.Incarnation {
			// Our master restarted: whatever epoch it speaks at, its
			// table is not the one we synced with.
			n.followNew(now)
		}
	}
	switch h.Type {
	case wire.TypeHeartbeat:
		if err := wire.DecodeHeartbeat(body, n.hbIn); err != nil {
			return 0, err
		}
		n.stats.HeartbeatsRecv[net]++
		n.onHeartbeat(now, net, &h, p, n.hbIn)
	case wire.TypeElection:
		var m wire.Election
		if err := wire.DecodeElection(body, &m); err != nil {
			return 0, err
		}
		n.onElection(now, net, &h, p, &m)
	case wire.TypeLeave:
		var m wire.Leave
		if err := wire.DecodeLeave(body, &m); err != nil {
			return 0, err
		}
		n.onLeave(now, p)
	default:
		if (p.fenced || p.left) && p.id != n.el.State().Master {
			// A fenced node is heard only to tell it so. One gone at this
			// incarnation (its goodbye, or its process's end: PeerExited)
			// is not heard at all: what it sent before it went may arrive
			// after the word that it went (on the other network, or
			// overtaken by the closed connection), and a registration
			// taken then would be up under an owner already gone.
			return h.Sender, nil
		}
		if err := n.stepReplication(now, &h, p, body); err != nil {
			return 0, err
		}
	}
	if st := n.el.State(); h.Sender == st.Master && h.Epoch == st.Epoch && !n.isMaster() && now.After(n.masterWord) {
		// Whatever our master sends at its epoch is its word, and the
		// stale timeout counts from the last (followerTick); tested after
		// the packet's handling, which may have made us follow it again.
		// Counted only for heartbeats, changes and snapshots, the table
		// was flagged stale early: 860 ms after a heartbeat that took a
		// lost master back (its reign, no snapshot to follow), and 910 ms
		// after a transaction's commit a master sent as it resumed from a
		// pause (chaos seeds 11046 and 1690, 20 and 25 actions).
		n.masterWord = now
	}
	return h.Sender, nil
}

var errSelf = errors.New("core: own or anonymous packet")

// Tick advances time: sends heartbeats when due, judges silent peers, runs
// the election and the master's duties. Call it at NextDeadline (or later).
func (n *Node) Tick(now time.Time) {
	n.advance(now)
	n.startWindow(now)
	if n.mc.refused {
		// Nothing is sent or judged any more but the duplicate notices
		// (misconfigTick): one tick an interval. Left where it was,
		// nextHB made NextDeadline a time long past, and the shell's
		// real-time loop would have ticked without a pause.
		n.misconfigTick(now)
		n.nextHB = now.Add(n.cfg.Interval)
		return
	}
	// The first tick measures no stall: the time since New is the shell's
	// start-up (opening sockets, the shared memory, the API), not a pause
	// in heartbeats, and before it no peer has been judged alive.
	if gap := now.Sub(n.lastTick); !n.lastTick.IsZero() && gap > 2*n.cfg.Interval {
		// Our own process stalled (a paused VM, a GC, the scheduler): what
		// waits in the receive queue must be read before anyone is judged
		// silent, so a stall of ours never reads as a failure of theirs.
		// And a stall that paused us may have paused our peers too (a
		// paused VM pauses every agent on it; a CPU hog delays every
		// agent's thread): they need about as long again to be scheduled
		// and speak. So no one is judged silent for as long as we were
		// stalled, at least an interval and at most one detection bound.
		// One interval was not enough: the 10 ms profile's soak (five
		// agents, two CPU burners) saw a 133 ms stall of every agent at
		// once followed by 63 false downs.
		wait := min(max(gap, n.cfg.Interval), n.cfg.Interval*time.Duration(n.cfg.Misses))
		if t := now.Add(wait); t.After(n.judgeAfter) {
			n.judgeAfter = t
		}
		n.event(Event{Kind: EvStalled, Reason: gap.String()})
	}
	n.lastTick = now
	if !now.Before(n.nextHB) {
		n.sendHeartbeat()
		n.nextHB = n.nextHB.Add(n.cfg.Interval)
		if !n.nextHB.After(now) {
			n.nextHB = now.Add(n.cfg.Interval)
		}
	}
	n.judge(now)
	n.runElection(now)
	if n.isMaster() {
		n.masterTick(now)
	} else {
		n.followerTick(now)
	}
	n.reportTick(now)
	n.misconfigTick(now)
	n.fenceTick(now)
}

// NextDeadline is when Tick must next be called: at the latest the next
// heartbeat, and as soon as a silence is due for judgement. A judgement
// that fell due and has not been made yet (judge has not run since) is due
// now, even if a packet was stepped after it: only the judge's own runs
// retire a deadline. Retired by any step, as it was, the judgement waited
// for the next heartbeat's tick, up to an interval late (chaos seed 7221:
// a peer's silence due at 810.546 ms, a packet stepped at 810.546 ms, the
// master judged it at 820 ms, and its followers learnt it after the bound).
// The bound is the peer's own (widened after a false down).
func (n *Node) NextDeadline() time.Time {
	d := n.nextHB
	if n.mc.refused {
		return d // Tick judges no one (see Tick)
	}
	for _, id := range n.peerIDs {
		p := n.peers[id]
		if !p.alive {
			continue
		}
		b := n.bound(p)
		for net := range p.heard {
			if p.heard[net].IsZero() {
				continue
			}
			// Due after the judge's last run: not yet judged. (Not
			// before it: judged already, or deferred by a vouch, which
			// the heartbeats' ticks re-examine.)
			if t := p.heard[net].Add(b + 1); t.After(n.judgedAt) && t.Before(d) {
				d = t
			}
		}
	}
	if d.Before(n.judgeAfter) {
		// No one is judged before judgeAfter (a stall of ours): a
		// deadline already due would only spin the loop until then.
		d = n.judgeAfter
		if n.nextHB.Before(d) {
			d = n.nextHB
		}
	}
	if n.ms.txn != nil && n.ms.txn.deadline.Before(d) {
		d = n.ms.txn.deadline
	}
	return d
}

func (n *Node) advance(now time.Time) {
	if now.After(n.now) {
		n.now = now
	}
}

func (n *Node) isMaster() bool { return n.el.State().Role == wire.RoleMaster }

// peer returns the record for id, creating it.
func (n *Node) peer(id wire.NodeID) *peer {
	if p, ok := n.peers[id]; ok {
		return p
	}
	p := &peer{id: id, hb: new(wire.Heartbeat)}
	n.peers[id] = p
	i := sort.Search(len(n.peerIDs), func(i int) bool { return n.peerIDs[i] >= id })
	n.peerIDs = append(n.peerIDs, 0)
	copy(n.peerIDs[i+1:], n.peerIDs[i:])
	n.peerIDs[i] = id
	return p
}

// Shutdown says goodbye so peers do not wait for a timeout.
func (n *Node) Shutdown(now time.Time) {
	n.advance(now)
	h := n.header()
	b, err := n.codec.AppendLeave(n.buf(), &h, &wire.Leave{Reason: 1})
	if err == nil {
		n.send(0, true, b)
	}
}

var eventNames = [...]string{"", "elected", "stepped-down", "following", "master-lost", "peer-up", "peer-down",
	"link-up", "link-down", "stale", "fresh", "reincarnated", "snapshot-applied", "txn-suspect", "rejected", "stalled", "displaced", "superseded",
	"partitioned", "partition-healed", "duplicate-node", "timing-mismatch", "waiting-quorum", "quorum-reached",
	"split-brain", "split-brain-healed"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "unknown"
}

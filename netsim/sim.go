// Package netsim is a deterministic simulator for fmagent clusters: a
// virtual clock, two simulated networks and seeded randomness drive real
// core.Node state machines through loss, delay, duplication, reordering,
// per-network partitions, crashes, restarts and pauses, and check the
// cluster's invariants after every step. The same seed replays the same run.
package netsim

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/wire"
)

// SaveDelay is how long a save the core did not mark MustSync takes to
// reach the disk (the agent's saver goroutine and its fsyncs).
const SaveDelay = 2 * time.Millisecond

// Epoch0 is the virtual clock's start (any fixed instant will do).
var Epoch0 = time.Unix(1_700_000_000, 0)

// NetConditions are one network's impairments.
type NetConditions struct {
	Loss     float64       // probability a datagram is dropped
	Dup      float64       // probability a datagram is delivered twice
	MinDelay time.Duration // delivery delay, uniform in [MinDelay, MaxDelay]
	MaxDelay time.Duration // (different delays reorder packets)
}

// Options configure a simulation.
type Options struct {
	Seed     uint64
	Nodes    int
	Interval time.Duration
	Misses   int
	// Priority of node i (1-based); nil: all 100.
	Priority func(id wire.NodeID) uint8
	Nets     [wire.NumNets]NetConditions
	Key      []byte
	Stale    time.Duration
	// EpochReserve is the nodes' core.Config.EpochReserve (0: the core's
	// default): how many epochs one synced save of the epoch covers.
	EpochReserve uint64
	// MaxAlarms is the nodes' core.Config.MaxAlarms (0: the core's
	// default).
	MaxAlarms int
	// MaxTombstones is the nodes' core.Config.MaxTombstones (0: the
	// table's default).
	MaxTombstones int
	// Trace keeps a log of everything that happened (for failure reports).
	Trace bool
}

// Node is one simulated node.
type Node struct {
	ID      wire.NodeID
	Core    *core.Node
	Up      bool
	Paused  bool
	inbox   []delivery
	exits   []exitNotice // read when resumed (Kill)
	persist core.Persist
	// unsynced: a save the core did not require before sending (not
	// MustSync), still on its way to disk; a crash loses it.
	unsynced *core.Persist
	tickAt   time.Time
	tickGen  uint64
	// Results the node's local clients received, and when.
	Results []TimedResult
	// Lifetime of the current process (for invariants).
	StartedAt time.Time
	// HeardAt[id] is when this node last accepted a packet from node id
	// (for the stale invariant: the timeout counts from the master's last
	// word, which the simulator sees independently of the core).
	HeardAt map[wire.NodeID]time.Time
	// MasterWordAt is when this node last accepted a packet from the
	// master it follows (after that packet), sent at that master's epoch:
	// a master's word (the stale invariant). A packet from the same node
	// once it follows another reign, at a later epoch, is not one (chaos
	// seed 1690 of 25 actions: a master paused, resumed and stepped down,
	// and its first heartbeat, as a member at epoch 3, reached a follower
	// of its epoch-2 reign before the follower judged it lost).
	MasterWordAt time.Time
}

// TimedResult is a local client's result and when it arrived.
type TimedResult struct {
	At time.Time
	core.Result
}

type delivery struct {
	net  wire.Net
	data []byte
	hb   bool // to the heartbeat port (core.Packet.Heartbeat)
}

// Sim is a simulated cluster.
type Sim struct {
	Opt   Options
	Rng   *rand.Rand
	Now   time.Time
	Nodes []*Node // Nodes[i].ID == i+1

	events evHeap
	evSeq  uint64

	part    [wire.NumNets][]int  // partition label per node (index i) per network
	cut     [][wire.NumNets]bool // a node's own link cut
	pool    [][]byte
	trace   []string
	OnReady func(n *Node, rd *core.Ready) // observer, called after every step of a node

	Delivered, Dropped uint64
	// Topo counts changes of who can reach whom (crash, restart, pause,
	// partition, cut), so checkers recompute reachability only then.
	Topo uint64
}

// New builds a cluster of opt.Nodes nodes, all started at Epoch0.
func New(opt Options) *Sim {
	// The simulator's timing is the 50ms profile's (10 ms × 5), not the
	// agent's default: the goldens and kept seeds were made with it.
	simTiming, _ := core.LookupProfile("50ms")
	if opt.Interval == 0 {
		opt.Interval = simTiming.Interval
	}
	if opt.Misses == 0 {
		opt.Misses = simTiming.Misses
	}
	if opt.Key == nil {
		opt.Key = []byte("netsim cluster key")
	}
	if opt.Stale == 0 {
		opt.Stale = 100 * opt.Interval
	}
	s := &Sim{Opt: opt, Rng: rand.New(rand.NewPCG(opt.Seed, opt.Seed^0x9e3779b97f4a7c15)), Now: Epoch0}
	for i := 0; i < opt.Nodes; i++ {
		s.Nodes = append(s.Nodes, &Node{ID: wire.NodeID(i + 1)})
	}
	for net := range s.part {
		s.part[net] = make([]int, opt.Nodes)
	}
	s.cut = make([][wire.NumNets]bool, opt.Nodes)
	for _, n := range s.Nodes {
		s.start(n)
	}
	return s
}

func (s *Sim) cfg(n *Node) core.Config {
	prio := uint8(100)
	if s.Opt.Priority != nil {
		prio = s.Opt.Priority(n.ID)
	}
	return core.Config{
		Node: n.ID, Cluster: 7, Key: s.Opt.Key, Priority: prio, Eligible: true,
		Interval: s.Opt.Interval, Misses: s.Opt.Misses, StaleTimeout: s.Opt.Stale,
		Incarnation: n.persist.Incarnation + 1, Generation: n.persist.Generation, Members: n.persist.Members,
		Epoch: n.persist.Epoch, EpochExact: n.persist.EpochExact, EpochReserve: s.Opt.EpochReserve,
		MaxAlarms: s.Opt.MaxAlarms, MaxTombstones: s.Opt.MaxTombstones,
	}
}

func (s *Sim) start(n *Node) {
	s.Topo++
	c := s.cfg(n)
	n.persist.Incarnation = c.Incarnation
	n.Core = core.New(c, s.Now)
	n.Up, n.Paused, n.inbox = true, false, nil
	n.StartedAt = s.Now
	s.Tracef("start node %d inc %d gen %d", n.ID, c.Incarnation, c.Generation)
	s.collect(n)
}

// Crash stops a node at once; what it persisted survives.
func (s *Sim) Crash(id wire.NodeID) {
	n := s.node(id)
	if !n.Up {
		return
	}
	s.Tracef("crash node %d", id)
	s.Topo++
	n.Up, n.Paused, n.inbox, n.exits, n.Core = false, false, nil, nil, nil
	n.unsynced = nil // not on disk yet: lost
	n.tickGen++
}

// Stop ends a node's process as a clean stop does, as far as its disk is
// concerned: what it had still on its way to disk lands, then the state
// the core gives for a clean stop (core.Node.StopPersist: the exact epoch)
// is saved, synced, as the agent does once nothing more can be sent. Its
// peers are told nothing (the goodbye is not modelled): they judge it as a
// crash.
func (s *Sim) Stop(id wire.NodeID) {
	n := s.node(id)
	if !n.Up {
		return
	}
	if n.unsynced != nil {
		n.persist, n.unsynced = *n.unsynced, nil
	}
	if p, ok := n.Core.StopPersist(); ok {
		n.persist = p
		s.Tracef("stop node %d: exact epoch %d saved", id, p.Epoch)
	}
	s.Crash(id)
}

// Kill ends a node's process alone (kill -9, the agent's crash): as Crash,
// and its host's kernel closes the connections the agent held
// (agent/exitwatch.go). A follower holds one to the master it follows, the
// master one to each of its followers (each dialled by the follower), over
// network A; the other end hears the close one network A delay later
// (MinDelay: no draw from Rng, so a seed's other events are as without
// it) if network A still joins the two then, and takes it as the killed
// node's exit (core.Node.PeerExited). A paused node reads it when resumed;
// a node that has itself restarted meanwhile had another connection.
func (s *Sim) Kill(id wire.NodeID) {
	n := s.node(id)
	if !n.Up {
		return
	}
	st, inc, killedAt := n.Core.Role(), n.Core.Incarnation(), s.Now
	s.Crash(id)
	s.Tracef("kill node %d: its connections closed", id)
	var held []wire.NodeID
	switch {
	case st.Master == id:
		for _, o := range s.Nodes {
			if o.ID != id && o.Up && o.Core.Role().Master == id {
				held = append(held, o.ID)
			}
		}
	case st.Master != 0:
		held = append(held, st.Master)
	}
	for _, to := range held {
		o := s.node(to)
		started := o.StartedAt
		s.At(s.Now.Add(s.Opt.Nets[wire.NetA].MinDelay), func() {
			if !o.Up || o.StartedAt != started || started.After(killedAt) || !s.Connected(id, to, wire.NetA) {
				return
			}
			x := exitNotice{id, inc}
			if o.Paused {
				o.exits = append(o.exits, x)
				return
			}
			s.exited(o, x)
		})
	}
}

// exitNotice is a closed connection's word that node's process at inc ended.
type exitNotice struct {
	node wire.NodeID
	inc  uint64
}

func (s *Sim) exited(n *Node, x exitNotice) {
	taken := n.Core.PeerExited(s.Now, x.node, x.inc)
	s.Tracef("node %d: node %d inc %d exited (taken %v)", n.ID, x.node, x.inc, taken)
	s.collect(n)
}

// Restart starts a crashed node again, with a new incarnation.
func (s *Sim) Restart(id wire.NodeID) {
	n := s.node(id)
	if n.Up {
		return
	}
	s.start(n)
}

// Pause stalls a node's process: it neither ticks nor reads; what arrives
// waits in its receive queue.
func (s *Sim) Pause(id wire.NodeID) {
	n := s.node(id)
	if n.Up && !n.Paused {
		s.Tracef("pause node %d", id)
		s.Topo++
		n.Paused = true
	}
}

// Resume ends a pause: the queued packets are read, then time is judged.
func (s *Sim) Resume(id wire.NodeID) {
	n := s.node(id)
	if !n.Up || !n.Paused {
		return
	}
	s.Tracef("resume node %d (%d queued)", id, len(n.inbox))
	s.Topo++
	n.Paused = false
	q := n.inbox
	n.inbox = nil
	for _, d := range q {
		s.deliverNow(n, d)
	}
	xs := n.exits
	n.exits = nil
	for _, x := range xs {
		n.Core.PeerExited(s.Now, x.node, x.inc)
	}
	n.Core.Tick(s.Now)
	s.collect(n)
}

// Partition splits network net: nodes with different labels cannot talk on it.
// labels[i] is node i+1's label; nil heals the network.
func (s *Sim) Partition(net wire.Net, labels []int) {
	s.Topo++
	if labels == nil {
		labels = make([]int, len(s.Nodes))
	}
	copy(s.part[net], labels)
	s.Tracef("partition net %d: %v", net, labels)
}

// CutLink cuts (or restores) one node's link to one network.
func (s *Sim) CutLink(id wire.NodeID, net wire.Net, cut bool) {
	s.Topo++
	s.cut[id-1][net] = cut
	s.Tracef("link node %d net %d cut=%v", id, net, cut)
}

// HealAll heals every partition and link and resumes every paused node.
func (s *Sim) HealAll() {
	for net := range s.part {
		s.Partition(wire.Net(net), nil)
	}
	for i := range s.cut {
		s.cut[i] = [wire.NumNets]bool{}
	}
	for _, n := range s.Nodes {
		s.Resume(n.ID)
	}
}

// Connected reports whether a can send to b on net right now (ignoring loss).
func (s *Sim) Connected(a, b wire.NodeID, net wire.Net) bool {
	return !s.cut[a-1][net] && !s.cut[b-1][net] && s.part[net][a-1] == s.part[net][b-1]
}

// Reach reports whether a and b are both running and connected on some network.
func (s *Sim) Reach(a, b wire.NodeID) bool {
	na, nb := s.node(a), s.node(b)
	if !na.Up || !nb.Up || na.Paused || nb.Paused {
		return false
	}
	return s.Connected(a, b, wire.NetA) || s.Connected(a, b, wire.NetB)
}

func (s *Sim) node(id wire.NodeID) *Node { return s.Nodes[id-1] }

// Node returns node id.
func (s *Sim) Node(id wire.NodeID) *Node { return s.node(id) }

// Submit hands a local client's request to node id.
func (s *Sim) Submit(id wire.NodeID, r core.Request) (uint64, bool) {
	n := s.node(id)
	if !n.Up || n.Paused {
		return 0, false
	}
	rid := n.Core.Submit(s.Now, r)
	s.collect(n)
	return rid, true
}

// Tracef records a line in the run's trace (when tracing).
func (s *Sim) Tracef(format string, args ...any) {
	if s.Opt.Trace {
		s.trace = append(s.trace, fmt.Sprintf("%9.3fms ", float64(s.Now.Sub(Epoch0))/1e6)+fmt.Sprintf(format, args...))
	}
}

// Trace returns the last n trace lines.
func (s *Sim) Trace(n int) string {
	t := s.trace
	if len(t) > n {
		t = t[len(t)-n:]
	}
	return strings.Join(t, "\n")
}

// collect takes a node's Ready: schedules its packets and its next tick.
func (s *Sim) collect(n *Node) {
	rd := n.Core.Ready()
	// The Ready contract (core.Ready.MustSync): a MustSync save is on disk
	// before any packet leaves; any other save reaches the disk a little
	// later (SaveDelay), and a crash before then loses it, as on a real
	// disk.
	if rd.Persist != nil {
		p := *rd.Persist
		p.Members = append([]wire.NodeID(nil), rd.Persist.Members...)
		if rd.MustSync {
			n.persist, n.unsynced = p, nil
		} else {
			n.unsynced = &p
			gen := n.tickGen
			s.At(s.Now.Add(SaveDelay), func() {
				if n.unsynced == &p && n.Up && n.tickGen >= gen {
					n.persist, n.unsynced = p, nil
				}
			})
		}
	}
	for _, p := range rd.Packets {
		s.transmit(n, &p)
	}
	for _, r := range rd.Results {
		n.Results = append(n.Results, TimedResult{At: s.Now, Result: r})
	}
	if s.Opt.Trace {
		for _, e := range rd.Events {
			if e.Kind == core.EvRejected || e.Kind == core.EvLinkUp || e.Kind == core.EvLinkDown || e.Kind == core.EvPeerUp {
				continue
			}
			s.Tracef("node %d: %s node=%d net=%d epoch=%d %s", n.ID, e.Kind, e.Node, e.Net, e.Epoch, e.Reason)
		}
	}
	if s.OnReady != nil {
		s.OnReady(n, rd)
	}

	if d := n.Core.NextDeadline(); d != n.tickAt || n.tickGen == 0 {
		if d.Before(s.Now) {
			d = s.Now
		}
		n.tickAt = d
		n.tickGen++
		s.push(event{at: d, kind: evTick, node: n.ID, gen: n.tickGen})
	}
}

func (s *Sim) transmit(from *Node, p *core.Packet) {
	for net := wire.Net(0); net < wire.NumNets; net++ {
		if p.Nets&(1<<net) == 0 {
			continue
		}
		for _, to := range s.Nodes {
			if to == from || p.To != 0 && p.To != to.ID {
				continue
			}
			if !s.Connected(from.ID, to.ID, net) {
				continue
			}
			c := &s.Opt.Nets[net]
			if c.Loss > 0 && s.Rng.Float64() < c.Loss {
				s.Dropped++
				continue
			}
			copies := 1
			if c.Dup > 0 && s.Rng.Float64() < c.Dup {
				copies = 2
			}
			for k := 0; k < copies; k++ {
				d := c.MinDelay
				if c.MaxDelay > c.MinDelay {
					d += time.Duration(s.Rng.Int64N(int64(c.MaxDelay - c.MinDelay + 1)))
				}
				s.push(event{at: s.Now.Add(d), kind: evDeliver, node: to.ID, net: net, hb: p.Heartbeat, data: s.copyBuf(p.Data)})
			}
		}
	}
}

func (s *Sim) copyBuf(b []byte) []byte {
	var buf []byte
	if k := len(s.pool); k > 0 {
		buf = s.pool[k-1][:0]
		s.pool = s.pool[:k-1]
	} else {
		buf = make([]byte, 0, wire.MaxDatagram)
	}
	return append(buf, b...)
}

func (s *Sim) deliverNow(n *Node, d delivery) {
	step := n.Core.Step
	if d.hb {
		step = n.Core.StepHeartbeat
	}
	if from, err := step(s.Now, d.net, d.data); err == nil {
		s.Delivered++
		if n.HeardAt == nil {
			n.HeardAt = make(map[wire.NodeID]time.Time)
		}
		n.HeardAt[from] = s.Now
		if r := n.Core.Role(); r.Master == from && from != n.ID && wire.PeekEpoch(d.data) == r.Epoch {
			n.MasterWordAt = s.Now
		}
	} else if s.Opt.Trace {
		s.Tracef("node %d rejected a packet on net %d: %v", n.ID, d.net, err)
	}
	s.pool = append(s.pool, d.data)
}

// Step runs the next event; it returns false when none is left.
func (s *Sim) Step() bool {
	if len(s.events) == 0 {
		return false
	}
	e := heap.Pop(&s.events).(event)
	if e.at.After(s.Now) {
		s.Now = e.at
	}
	switch e.kind {
	case evDeliver:
		n := s.node(e.node)
		switch {
		case !n.Up:
			s.pool = append(s.pool, e.data)
		case n.Paused:
			n.inbox = append(n.inbox, delivery{e.net, e.data, e.hb})
		default:
			s.deliverNow(n, delivery{e.net, e.data, e.hb})
			s.collect(n)
		}
	case evTick:
		n := s.node(e.node)
		if !n.Up || e.gen != n.tickGen {
			return true
		}
		if n.Paused {
			n.tickGen++ // Resume ticks it
			return true
		}
		n.Core.Tick(s.Now)
		s.collect(n)
	case evCall:
		e.fn()
	}
	return true
}

// RunUntil runs events up to (and including) time t, calling check after each.
func (s *Sim) RunUntil(t time.Time, check func() error) error {
	for len(s.events) > 0 && !s.events[0].at.After(t) {
		s.Step()
		if check != nil {
			if err := check(); err != nil {
				return err
			}
		}
	}
	if s.Now.Before(t) {
		s.Now = t
	}
	return nil
}

// At schedules fn at virtual time t.
func (s *Sim) At(t time.Time, fn func()) { s.push(event{at: t, kind: evCall, fn: fn}) }

func (s *Sim) push(e event) {
	s.evSeq++
	e.seq = s.evSeq
	heap.Push(&s.events, e)
}

type evKind uint8

const (
	evDeliver evKind = iota
	evTick
	evCall
)

type event struct {
	at   time.Time
	seq  uint64
	kind evKind
	node wire.NodeID
	net  wire.Net
	hb   bool
	gen  uint64
	data []byte
	fn   func()
}

type evHeap []event

func (h evHeap) Len() int { return len(h) }
func (h evHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h evHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *evHeap) Push(x any)   { *h = append(*h, x.(event)) }
func (h *evHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

package core_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// mesh is a few core nodes on one simulated LAN (both networks, multicast
// looped back to the sender as on a real one), stepped every millisecond.
// Several members may carry the same node ID: that is what it is for.
type mesh struct {
	t      *testing.T
	now    time.Time
	nodes  []*core.Node
	down   map[*core.Node]bool
	events map[*core.Node][]core.Event
	sentHB map[*core.Node]int // heartbeats each put on the wire
	codec  *wire.Codec
}

func newMesh(t *testing.T) *mesh {
	return &mesh{t: t, now: t0, down: map[*core.Node]bool{}, events: map[*core.Node][]core.Event{}, sentHB: map[*core.Node]int{}, codec: wire.NewCodec(9, []byte("k"))}
}

func (m *mesh) add(cfg core.Config) *core.Node {
	if cfg.Cluster == 0 {
		cfg.Cluster, cfg.Key, cfg.Priority, cfg.Eligible = 9, []byte("k"), 100, true
	}
	n := core.New(cfg, m.now)
	m.nodes = append(m.nodes, n)
	return n
}

func (m *mesh) deliver() {
	for round := 0; round < 50; round++ {
		type pkt struct {
			net  wire.Net
			to   wire.NodeID
			data []byte
		}
		var pkts []pkt
		for _, n := range m.nodes {
			if m.down[n] {
				n.Ready()
				continue
			}
			rd := n.Ready()
			m.events[n] = append(m.events[n], rd.Events...)
			for _, p := range rd.Packets {
				if h, _, err := m.codec.Open(p.Data); err == nil && h.Type == wire.TypeHeartbeat {
					m.sentHB[n]++
				}
				for net := wire.Net(0); net < wire.NumNets; net++ {
					if p.Nets&(1<<net) != 0 {
						pkts = append(pkts, pkt{net, p.To, append([]byte(nil), p.Data...)})
					}
				}
			}
		}
		if len(pkts) == 0 {
			return
		}
		for _, p := range pkts {
			for _, n := range m.nodes {
				if !m.down[n] && (p.to == 0 || p.to == n.ID()) {
					stepAny(n, m.now, p.net, p.data)
				}
			}
		}
	}
}

func (m *mesh) run(d time.Duration) {
	end := m.now.Add(d)
	for m.now.Before(end) {
		m.now = m.now.Add(time.Millisecond)
		for _, n := range m.nodes {
			if !m.down[n] {
				n.Tick(m.now)
			}
		}
		m.deliver()
	}
}

func (m *mesh) find(n *core.Node, kind core.EventKind) []core.Event {
	var out []core.Event
	for _, e := range m.events[n] {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// A second node started with node_id 2 while node 2 runs: it hears node 2
// in its start window, refuses to join and sends no heartbeat; the real
// node 2 and the other members say so, once; node 2 is never taken down
// or replaced, during the copy's life or after it stops.
func TestDuplicateNodeIDRefused(t *testing.T) {
	m := newMesh(t)
	n1 := m.add(core.Config{Node: 1, Incarnation: 100})
	n2 := m.add(core.Config{Node: 2, Incarnation: 200})
	n3 := m.add(core.Config{Node: 3, Incarnation: 300})
	m.run(300 * time.Millisecond)
	require.NotZero(t, n1.Role().Master)
	e, ok := n1.Table().Get(table.NodeEntityID(2))
	require.True(t, ok)
	require.Equal(t, wire.StateUp, e.State)
	inc2 := e.Incarnation

	// The copy: same node ID, another state directory (incarnation).
	dup := m.add(core.Config{Node: 2, Incarnation: 999})
	m.run(300 * time.Millisecond)
	require.True(t, dup.Refused(), "the newcomer refuses to join")
	require.False(t, n2.Refused(), "the real node does not")
	require.Zero(t, m.sentHB[dup], "the newcomer never sent a heartbeat")
	// Refused, it still ticks at an interval, not without a pause (its
	// shell's loop sleeps until NextDeadline).
	for range 3 {
		at := dup.NextDeadline()
		dup.Tick(at)
		require.True(t, dup.NextDeadline().After(at), "a refused node's next deadline %v is not after its tick at %v", dup.NextDeadline(), at)
	}

	// Both nodes say so, once; so does everyone else.
	for _, n := range []*core.Node{dup, n2, n1, n3} {
		evs := m.find(n, core.EvDuplicateNode)
		require.Len(t, evs, 1, "node %d (inc %d): %v", n.ID(), n.Incarnation(), evs)
		require.Equal(t, wire.NodeID(2), evs[0].Node)
	}
	require.Contains(t, m.find(dup, core.EvDuplicateNode)[0].Reason, "refuses to join")
	require.Contains(t, m.find(n2, core.EvDuplicateNode)[0].Reason, "this node's node_id 2")

	for _, n := range []*core.Node{n1, n2, n3} {
		e, _ := n.Table().Get(table.NodeEntityID(2))
		require.Equal(t, wire.StateUp, e.State, "node %d: node/2 stays up", n.ID())
		require.Equal(t, inc2, e.Incarnation, "node %d: node/2 keeps the real node's incarnation", n.ID())
	}
	// The copy stops: nothing changes, node 2 stays a member.
	m.down[dup] = true
	m.run(300 * time.Millisecond)
	for _, n := range []*core.Node{n1, n2, n3} {
		e, _ := n.Table().Get(table.NodeEntityID(2))
		require.Equal(t, wire.StateUp, e.State, "node %d: node/2 up after the copy stopped", n.ID())
		require.Empty(t, e.Alarms)
	}
}

// A peer with another timing profile is reported once per incarnation, on
// both sides, with both timings.
func TestTimingMismatchReported(t *testing.T) {
	m := newMesh(t)
	n1 := m.add(core.Config{Node: 1, Interval: 10 * time.Millisecond, Misses: 5})
	n2 := m.add(core.Config{Node: 2, Interval: 5 * time.Millisecond, Misses: 3})
	m.run(500 * time.Millisecond)
	e1, e2 := m.find(n1, core.EvTimingMismatch), m.find(n2, core.EvTimingMismatch)
	require.Len(t, e1, 1)
	require.Len(t, e2, 1)
	require.Equal(t, wire.NodeID(2), e1[0].Node)
	require.Contains(t, e1[0].Reason, "node 2 sends every 5ms and judges after 3 misses")
	require.Contains(t, e1[0].Reason, "this node: 10ms × 5")
	// Same timing: nothing.
	m2 := newMesh(t)
	a := m2.add(core.Config{Node: 1})
	m2.add(core.Config{Node: 2})
	m2.run(300 * time.Millisecond)
	require.Empty(t, m2.find(a, core.EvTimingMismatch))
}

// A cold start from a node whose last membership was {1,2,3}, alone: it
// says it waits for a quorum and who is missing; when node 2 comes, the
// cluster forms and it says so.
func TestWaitingForQuorumNamesTheMissing(t *testing.T) {
	m := newMesh(t)
	members := []wire.NodeID{1, 2, 3}
	n1 := m.add(core.Config{Node: 1, Generation: 4, Members: members})
	m.run(200 * time.Millisecond)
	require.Zero(t, n1.Role().Master)
	w := m.find(n1, core.EvWaitingQuorum)
	require.Len(t, w, 1, "said once")
	require.Contains(t, w[0].Reason, "1 of 3 present, 2 needed; missing {2,3}")
	m.add(core.Config{Node: 2, Generation: 4, Members: members})
	m.run(300 * time.Millisecond)
	require.NotZero(t, n1.Role().Master)
	require.Len(t, m.find(n1, core.EvQuorumReached), 1)
}

func TestShortInc(t *testing.T) {
	require.Equal(t, "7", core.ShortInc(7))
	s := core.ShortInc(1_764_530_000_123_456_789)
	require.Len(t, s, 6)
	require.False(t, strings.ContainsAny(s, " -"))
}

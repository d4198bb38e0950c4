package core_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/wire"
)

// peerAlive is whether n judges peer alive.
func peerAlive(n *core.Node, peer wire.NodeID) bool {
	for _, p := range n.Status().Peers {
		if p.Node == peer {
			return p.Alive
		}
	}
	return false
}

// A node told it is deafened (its receive queue overflowing under a flood,
// so the kernel drops peers' heartbeats with the flood) does not judge a
// peer it cannot hear silent; once it is no longer deafened, the same
// silence is judged after the bound.
func TestDeafenedNodeJudgesNoOneSilent(t *testing.T) {
	p := newPair(t)
	p.run(300 * time.Millisecond)
	require.True(t, peerAlive(p.b, 1))
	bound := core.DefaultInterval * core.DefaultMisses
	// Node 1's packets no longer reach node 2, which is deafened every
	// millisecond for three bounds.
	step := func(deaf bool) {
		p.now = p.now.Add(time.Millisecond)
		p.a.Ready()
		if deaf {
			p.b.Deafened(p.now)
		}
		p.a.Tick(p.now)
		p.b.Tick(p.now)
		p.a.Ready()
		p.b.Ready()
	}
	for range 3 * bound / time.Millisecond {
		step(true)
	}
	require.True(t, peerAlive(p.b, 1), "judged silent while deafened")
	require.EqualValues(t, 3*bound/time.Millisecond, p.b.DeafCount())
	for range bound/time.Millisecond + core.DefaultInterval/time.Millisecond + 5 {
		step(false)
	}
	require.False(t, peerAlive(p.b, 1), "not judged silent once hearing again and still silent")
}

// JudgementNear is false while every peer and link is heard within the
// bound less an interval, and true from an interval before the first
// judgement a silence would bring (the shell then reads its drop counters
// before each tick), until the peer is judged.
func TestJudgementNear(t *testing.T) {
	p := newPair(t)
	p.run(300 * time.Millisecond)
	require.True(t, peerAlive(p.b, 1))
	iv, bound := core.DefaultInterval, core.DefaultInterval*core.DefaultMisses
	require.False(t, p.b.JudgementNear(p.now, iv), "every peer heard")
	// Node 1 silent from now on: node 2 last heard it by now.
	last := p.now
	for {
		p.now = p.now.Add(time.Millisecond)
		p.a.Ready()
		p.b.Tick(p.now)
		p.b.Ready()
		if !peerAlive(p.b, 1) {
			break
		}
		near := p.b.JudgementNear(p.now, iv)
		switch {
		case p.now.Add(iv).Before(last.Add(bound - iv)):
			require.False(t, near, "%v into the silence: no judgement within an interval", p.now.Sub(last))
		case !p.now.Add(iv).Before(last.Add(bound)):
			require.True(t, near, "%v into the silence: the bound is within an interval", p.now.Sub(last))
		}
		require.Less(t, p.now.Sub(last), 3*bound, "judged at last")
	}
	require.GreaterOrEqual(t, p.now.Sub(last), bound-iv, "not judged before its bound")
	require.False(t, p.b.JudgementNear(p.now, iv), "judged: nothing left to judge")
}

package core_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/wire"
)

// A silence due for judgement stays due until the judge has run, even when
// a packet is stepped at or after its deadline, before the tick (the loop
// reads a datagram on the wake-up meant for the deadline). Retired by the
// step, the judgement waited for the next heartbeat's tick, up to an
// interval late: netsim chaos seed 7221, a crash judged 59.5 ms after the
// peer's last word with a 50 ms bound.
func TestDueJudgementSurvivesAStepBeforeTheTick(t *testing.T) {
	p := newPair(t)
	p.run(200 * time.Millisecond)
	require.Equal(t, wire.RoleMaster, p.a.Role().Role)
	p.a.Ready()
	// Node 2 falls silent; node 1 runs alone, ticking at its deadlines.
	var down *core.Event
	for i := uint64(1); i < 200 && down == nil; i++ {
		d := p.a.NextDeadline()
		_, err := p.a.Step(d, wire.NetA, forge(t, 7, 1, i, snapshotRequest))
		require.NoError(t, err)
		next := p.a.NextDeadline()
		require.False(t, next.After(d), "step %d: the deadline at %v moved to %v", i, d.Sub(t0), next.Sub(t0))
		p.a.Tick(next)
		for _, e := range p.a.Ready().Events {
			if e.Kind == core.EvPeerDown && e.Node == 2 {
				down = &e
			}
		}
	}
	require.NotNil(t, down, "node 2 judged down")
	require.Equal(t, "silent", down.Reason)
	require.LessOrEqual(t, down.Unheard, down.Bound+time.Microsecond,
		"judged %v after its last word (bound %v)", down.Unheard, down.Bound)
}

package core_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/wire"
)

// A report goes to the master on both networks, one packet under one
// sequence number. The master handles it once: the other network's copy
// of a packet it handled in this epoch is not decided and acknowledged a
// second time (two more sends on the master's loop, one more wake-up of
// the reporter's, on the report's path). A retransmission (a new packet)
// is answered again.
func TestMasterHandlesAReportsCopyOnce(t *testing.T) {
	p := newPair(t)
	p.run(200 * time.Millisecond)
	require.Equal(t, wire.RoleMaster, p.a.Role().Role)
	p.flush()
	p.a.Ready()
	p.b.Ready()

	request := func() []byte {
		var req []byte
		for _, pk := range p.b.Ready().Packets {
			if pk.To == p.a.ID() && !pk.Heartbeat {
				require.Nil(t, req, "one request")
				require.EqualValues(t, core.BothNets, pk.Nets)
				req = append([]byte(nil), pk.Data...)
			}
		}
		require.NotNil(t, req)
		return req
	}
	acks := func() int {
		k := 0
		for _, pk := range p.a.Ready().Packets {
			if pk.To == p.b.ID() {
				k++
			}
		}
		return k
	}

	p.b.Submit(p.now, core.Request{Kind: wire.ReportRegister, Name: "svc/once", EntityKind: wire.KindService})
	req := request()
	_, err := p.a.Step(p.now, wire.NetB, req)
	require.NoError(t, err)
	require.Equal(t, 1, acks(), "the acknowledgement (on both networks)")
	_, err = p.a.Step(p.now, wire.NetA, req)
	require.NoError(t, err)
	require.Equal(t, 0, acks(), "nothing for the other network's copy")
	require.EqualValues(t, 1, p.a.Stats().ReportCopies)

	// The acknowledgement never reached the reporter: it sends the report
	// again, a new packet, which the master answers (from its dedup).
	n := len(p.results[2])
	p.run(time.Second)
	require.Greater(t, len(p.results[2]), n, "answered")
	require.NotZero(t, p.results[2][n].Ver)
}

// The master keeps its answers for copies of requests, refusals too (chaos
// seed 5813), but refusals in a queue of their own: a flood of refused
// requests does not push out the answer to an applied write. Here a raise
// is applied and its answer lost; the alarm is cleared; more refused
// requests than the master keeps arrive; then the raise's retransmission.
// It is answered as the raise was, and the clear stands: decided again,
// the raise would have raised the cleared alarm anew.
func TestRefusalsDoNotPushOutAnAppliedWritesAnswer(t *testing.T) {
	p := newPairWith(t, func(c *core.Config) { c.MaxEntitiesPerOwner = 1 })
	p.run(200 * time.Millisecond)
	require.Equal(t, wire.RoleMaster, p.a.Role().Role)
	p.flush()

	raise := p.b.Submit(p.now, core.Request{Kind: wire.ReportRaise, Name: "svc/kept", EntityKind: wire.KindService, Severity: wire.SevMajor, Cause: "disk"})
	var req []byte
	for _, pk := range p.b.Ready().Packets {
		if pk.To == p.a.ID() && !pk.Heartbeat {
			req = append([]byte(nil), pk.Data...)
		}
	}
	require.NotNil(t, req)
	_, err := p.a.Step(p.now, wire.NetA, req)
	require.NoError(t, err)
	p.a.Ready() // the answer and the update, lost
	alarmed := func(n *core.Node) bool {
		e, ok := n.Table().Lookup("svc/kept")
		require.True(t, ok, "node %d holds svc/kept", n.ID())
		for _, a := range e.Alarms {
			if a.Cause == "disk" {
				return true
			}
		}
		return false
	}
	require.True(t, alarmed(p.a), "applied")

	p.a.Submit(p.now, core.Request{Kind: wire.ReportClear, Name: "svc/kept", Cause: "disk"})
	p.flush()
	require.False(t, alarmed(p.a), "cleared")

	// Raises that would create an entity past node 2's limit: refused.
	refused := 0
	for i := range 5000 {
		p.b.Submit(p.now, core.Request{Kind: wire.ReportRaise, Name: fmt.Sprintf("svc/flood-%d", i), EntityKind: wire.KindService, Severity: wire.SevMinor, Cause: "c"})
		if i%100 == 99 {
			p.flush()
		}
	}
	p.flush()
	for _, r := range p.results[2] {
		if r.ID != raise {
			require.ErrorIs(t, r.Err, core.ErrEntityLimit)
			refused++
		}
	}
	require.Equal(t, 5000, refused)

	// The raise's retransmission (its answer never came).
	p.run(2 * time.Second)
	var got *core.Result
	for i := range p.results[2] {
		if p.results[2][i].ID == raise {
			got = &p.results[2][i]
		}
	}
	require.NotNil(t, got, "the raise answered")
	require.NoError(t, got.Err)
	require.False(t, alarmed(p.a), "the clear stands on the master")
	require.False(t, alarmed(p.b), "the clear stands on the follower")
}

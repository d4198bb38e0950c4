package core_test

import (
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

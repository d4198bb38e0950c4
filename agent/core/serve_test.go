package core_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/wire"
)

// forge seals a packet as node from with the pair's key.
func forge(t *testing.T, from wire.NodeID, inc, seq uint64, enc func(c *wire.Codec, h *wire.Header) ([]byte, error)) []byte {
	t.Helper()
	c := wire.NewCodec(9, []byte("k"))
	h := wire.Header{Sender: from, Incarnation: inc, Seq: seq}
	b, err := enc(c, &h)
	require.NoError(t, err)
	return b
}

func snapshotRequest(c *wire.Codec, h *wire.Header) ([]byte, error) {
	return c.AppendNack(nil, h, &wire.Nack{From: 0, To: 0})
}

// Snapshot requests are served to live members only, and the refusals are
// counted: a node holding the key but not heard in heartbeats gets nothing.
func TestSnapshotServiceOnlyToLiveMembers(t *testing.T) {
	p := newPair(t)
	p.run(200 * time.Millisecond)
	require.Equal(t, wire.RoleMaster, p.a.Role().Role)
	p.a.Ready()
	st := p.a.Stats()
	for i := range 10 {
		_, err := p.a.Step(p.now, 0, forge(t, 7, 1, uint64(i+1), snapshotRequest))
		require.NoError(t, err)
	}
	require.Equal(t, st.SnapshotsSent, p.a.Stats().SnapshotsSent, "no snapshot for a non-member")
	require.Equal(t, st.NacksRefused+10, p.a.Stats().NacksRefused)
	rd := p.a.Ready()
	for _, pk := range rd.Packets {
		require.NotEqual(t, wire.NodeID(7), pk.To, "nothing sent to node 7")
	}
	// A member is served.
	_, err := p.a.Step(p.now, 0, forge(t, 2, p.b.Incarnation(), 2_000_000, snapshotRequest))
	require.NoError(t, err)
	require.Equal(t, st.SnapshotsSent+1, p.a.Stats().SnapshotsSent)
}

// Retransmissions on NACKs are bounded per peer and per second.
func TestRetransmitBudgetPerPeer(t *testing.T) {
	p := newPair(t)
	p.run(200 * time.Millisecond)
	for i := range 20 {
		p.b.Submit(p.now, core.Request{Kind: wire.ReportRegister, Name: fmt.Sprintf("node/2/proc/p%d", i), EntityKind: wire.KindProcess})
		p.flush()
	}
	p.a.Ready()
	st := p.a.Stats()
	inc := p.b.Incarnation()
	for i := range 1000 {
		nack := func(c *wire.Codec, h *wire.Header) ([]byte, error) {
			return c.AppendNack(nil, h, &wire.Nack{From: p.a.Table().Seq() - 5, To: p.a.Table().Seq()})
		}
		_, err := p.a.Step(p.now, 0, forge(t, 2, inc, 3_000_000+uint64(i), nack))
		require.NoError(t, err)
	}
	got := p.a.Stats()
	// One ring (4096 changes) per second, 6 changes per nack: 682 served.
	require.Equal(t, st.NacksServed+682, got.NacksServed)
	require.Equal(t, st.NacksRefused+1000-682, got.NacksRefused)
}

// A known sender's replay is rejected before the MAC is computed: a packet
// with a replayed header and a garbage MAC is a replay, not an auth
// failure; from an unknown sender it is an auth failure (the MAC decides
// first, and no peer is created).
func TestReplayCheckedBeforeMAC(t *testing.T) {
	p := newPair(t)
	p.run(200 * time.Millisecond)
	inc := p.b.Incarnation()
	pkt := forge(t, 2, inc, 5_000_000, snapshotRequest)
	_, err := p.a.Step(p.now, 0, pkt)
	require.NoError(t, err)
	_, err = p.a.Step(p.now, 0, pkt)
	require.ErrorIs(t, err, wire.ErrReplay, "verbatim replay")
	bad := append([]byte(nil), pkt...)
	bad[len(bad)-1] ^= 0xff
	_, err = p.a.Step(p.now, 0, bad)
	require.ErrorIs(t, err, wire.ErrReplay, "window checked before the MAC")
	old := forge(t, 2, inc-1, 9_000_000, snapshotRequest)
	old[len(old)-1] ^= 0xff
	_, err = p.a.Step(p.now, 0, old)
	require.ErrorIs(t, err, wire.ErrReplay, "older incarnation, before the MAC")

	entities := p.a.Table().Len()
	stranger := forge(t, 99, 1, 1, snapshotRequest)
	stranger[len(stranger)-1] ^= 0xff
	_, err = p.a.Step(p.now, 0, stranger)
	require.ErrorIs(t, err, wire.ErrAuth)
	for i := uint64(1); i <= 2000; i++ {
		x := forge(t, wire.NodeID(1000+i), 1, 1, snapshotRequest)
		x[len(x)-1] ^= 0xff
		_, err = p.a.Step(p.now, 0, x)
		require.ErrorIs(t, err, wire.ErrAuth)
	}
	p.run(50 * time.Millisecond)
	require.Len(t, p.a.Status().Peers, 1, "invented node IDs without a valid MAC are not peers")
	require.Equal(t, entities, p.a.Table().Len(), "nor entities")
}

// A follower's snapshot ask comes on both networks; the master sends the
// whole table once for it (on both networks), not once per copy of the
// ask. The next ask, an interval later (a chunk was lost), is served.
func TestSnapshotServedOncePerAsk(t *testing.T) {
	p := newPair(t)
	p.run(200 * time.Millisecond)
	require.Equal(t, wire.RoleMaster, p.a.Role().Role)
	p.a.Ready()
	st := p.a.Stats()
	inc := p.b.Incarnation()
	ask := func(seq uint64, net wire.Net, at time.Time) {
		_, err := p.a.Step(at, net, forge(t, 2, inc, seq, snapshotRequest))
		require.NoError(t, err)
	}
	ask(2_000_000, wire.NetA, p.now)
	ask(2_000_001, wire.NetB, p.now.Add(100*time.Microsecond))
	require.Equal(t, st.SnapshotsSent+1, p.a.Stats().SnapshotsSent, "one snapshot for the two copies of an ask")
	require.Equal(t, st.NacksRefused, p.a.Stats().NacksRefused, "the second copy is answered, not refused")
	ask(2_000_002, wire.NetA, p.now.Add(core.DefaultInterval))
	require.Equal(t, st.SnapshotsSent+2, p.a.Stats().SnapshotsSent, "the next ask is served")
}

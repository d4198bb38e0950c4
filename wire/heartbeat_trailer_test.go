package wire

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The timing and version appended to the heartbeat round-trip; a heartbeat
// without them (an older sender) still decodes, with them zero; a trailer
// cut short or with bytes after it is refused.
func TestHeartbeatTimingTrailer(t *testing.T) {
	c := NewCodec(7, []byte("a key for the trailer test"))
	h := Header{Sender: 3, Incarnation: 9, Epoch: 1, Seq: 1}
	m := Heartbeat{Role: RoleMember, Master: 1, NPeers: 1, IntervalMicros: 10000, Misses: 5}
	m.Peers[0] = PeerView{Node: 1, Incarnation: 4, Links: 3}
	m.SetVersion("v1.2.3-test")
	pkt, err := c.AppendHeartbeat(nil, &h, &m)
	require.NoError(t, err)
	_, body, err := c.Open(pkt)
	require.NoError(t, err)
	var got Heartbeat
	require.NoError(t, DecodeHeartbeat(body, &got))
	require.Equal(t, uint32(10000), got.IntervalMicros)
	require.Equal(t, uint8(5), got.Misses)
	require.Equal(t, "v1.2.3-test", got.VersionString())

	// Without the trailer: what an older sender writes.
	old := m
	old.IntervalMicros, old.Misses, old.VersionLen = 0, 0, 0
	pkt, err = c.AppendHeartbeat(nil, &h, &old)
	require.NoError(t, err)
	_, body, err = c.Open(pkt)
	require.NoError(t, err)
	require.NoError(t, DecodeHeartbeat(body, &got))
	require.Zero(t, got.IntervalMicros)
	require.Empty(t, got.VersionString())
	require.Equal(t, uint8(1), got.NPeers)

	// Malformed trailers.
	base := append([]byte(nil), body...)
	for name, b := range map[string][]byte{
		"short":      append(append([]byte(nil), base...), 0, 0, 0x27),
		"zero":       append(append([]byte(nil), base...), 0, 0, 0, 0, 0, 0),
		"vlen-long":  append(append([]byte(nil), base...), 0, 0, 0x27, 0x10, 5, 4, 'a'),
		"vlen-extra": append(append([]byte(nil), base...), 0, 0, 0x27, 0x10, 5, 1, 'a', 'b'),
		"vlen-big":   append(append([]byte(nil), base...), 0, 0, 0x27, 0x10, 5, MaxVersion+1),
	} {
		require.Error(t, DecodeHeartbeat(b, &got), name)
	}
}

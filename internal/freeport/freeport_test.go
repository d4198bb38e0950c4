package freeport

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// The port is below the ephemeral range, and free: a listener takes it.
func TestTCP(t *testing.T) {
	low := ephemeralLow()
	require.Greater(t, low, lowest+1000, "this machine's ephemeral range starts at %d", low)
	for range 20 {
		p, err := TCP("127.0.0.1")
		require.NoError(t, err)
		require.GreaterOrEqual(t, p, lowest)
		require.Less(t, p, low)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		require.NoError(t, err)
		ln.Close()
	}
}

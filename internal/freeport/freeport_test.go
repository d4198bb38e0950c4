package freeport

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// The port is free (a listener takes it) and, where the ephemeral range
// leaves room under it, below that range.
func TestTCP(t *testing.T) {
	low := ephemeralLow()
	for range 20 {
		p, err := TCP("127.0.0.1")
		require.NoError(t, err)
		if low > lowest+1000 {
			require.GreaterOrEqual(t, p, lowest)
			require.Less(t, p, low)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		require.NoError(t, err)
		ln.Close()
	}
}

package agent

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/transport"
	"github.com/fmagent/fmagent/transport/bindtest"
)

// startFakeClusterWith is startClusterWith on a bindtest channel network:
// real agents (core, shared memory, API, persistence), but their packets go
// through Go queues, not multicast sockets. For tests about the protocol,
// the API or shared memory rather than sockets. It returns the network and
// checks at the end that every agent used it and that it carried packets.
func startFakeClusterWith(t *testing.T, n int, tune func(*config.Config)) (*testCluster, *bindtest.Network) {
	t.Helper()
	nw := bindtest.NewNetwork()
	var mu sync.Mutex
	opened := map[uint32]bool{}
	testBind = func(node uint32) transport.Bind {
		mu.Lock()
		opened[node] = true
		mu.Unlock()
		return nw.Open(node)
	}
	// Registered before startCluster's cleanup, so it runs after the agents
	// have stopped.
	t.Cleanup(func() {
		testBind = nil
		mu.Lock()
		defer mu.Unlock()
		require.Len(t, opened, n, "every agent on the fake network, none on a socket")
		require.NotZero(t, nw.Delivered(), "the fake network carried the cluster's packets")
	})
	return startClusterWith(t, n, tune), nw
}

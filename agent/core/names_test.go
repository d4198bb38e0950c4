package core_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/wire"
)

// A fault report from node 2 about an unregistered node/1/proc/x does not
// create it with owner 1; registering under another node's prefix is
// refused; look-alike names are refused on the master whatever the client
// library checked; node 2's own prefix works.
func TestReportsDoNotCreateUnderAnotherNodesPrefix(t *testing.T) {
	p := newPair(t)
	p.run(200 * time.Millisecond)
	require.Equal(t, wire.RoleMaster, p.a.Role().Role)
	submit := func(r core.Request) core.Result {
		t.Helper()
		n := len(p.results[2])
		p.b.Submit(p.now, r)
		p.flush()
		p.run(20 * time.Millisecond)
		require.Greater(t, len(p.results[2]), n, "answered")
		return p.results[2][n]
	}
	// Not applied, so answered with an error (they were once answered as
	// successes: the raise was ordered and failed to apply everywhere).
	res := submit(core.Request{Kind: wire.ReportDown, Name: "node/1/proc/x", EntityKind: wire.KindProcess})
	require.Error(t, res.Err, "down")
	res = submit(core.Request{Kind: wire.ReportRaise, Name: "node/1/proc/v", Severity: wire.SevMajor, Cause: "boom"})
	require.Error(t, res.Err, "raise")
	submit(core.Request{Kind: wire.ReportFault, Name: "node/1/proc/y", Severity: wire.SevMajor, Cause: "boom"})
	res = submit(core.Request{Kind: wire.ReportRegister, Name: "node/1/proc/z", EntityKind: wire.KindProcess})
	require.Error(t, res.Err)
	res = submit(core.Request{Kind: wire.ReportRegister, Name: "n\u043ede/2/proc/w", EntityKind: wire.KindProcess})
	require.Error(t, res.Err)
	res = submit(core.Request{Kind: wire.ReportRegister, Name: "svc/a\u200bb", EntityKind: wire.KindService})
	require.Error(t, res.Err)
	for _, n := range []*core.Node{p.a, p.b} {
		for _, name := range []string{"node/1/proc/x", "node/1/proc/v", "node/1/proc/y", "node/1/proc/z", "n\u043ede/2/proc/w", "svc/a\u200bb"} {
			_, ok := n.Table().Lookup(name)
			require.False(t, ok, "node %d holds %q", n.ID(), name)
		}
	}
	res = submit(core.Request{Kind: wire.ReportRegister, Name: "node/2/proc/w", EntityKind: wire.KindProcess})
	require.NoError(t, res.Err)
	e, ok := p.a.Table().Lookup("node/2/proc/w")
	require.True(t, ok)
	require.Equal(t, wire.NodeID(2), e.Owner)
}

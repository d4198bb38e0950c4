package plugin_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/plugin"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

const sec = int64(1e9)

// fakeView is the core's View in miniature: a real table, a membership set,
// a settable clock and, for plugins tested outside a chain, a history.
type fakeView struct {
	tb    *table.Table
	alive map[wire.NodeID]bool
	now   int64
	hist  *plugin.History
}

func (v *fakeView) Entity(id uint64) (*table.Entity, bool)   { return v.tb.Get(id) }
func (v *fakeView) Lookup(name string) (*table.Entity, bool) { return v.tb.Lookup(name) }
func (v *fakeView) NodeAlive(n wire.NodeID) bool             { return v.alive[n] }
func (v *fakeView) Now() int64                               { return v.now }
func (v *fakeView) History() *plugin.History                 { return v.hist }

// Entity names of the test cluster.
const (
	procDB = "node/2/proc/db"
	svc    = "svc/billing"
)

// cluster returns a view of an n-node cluster, every node alive and up with
// both links, plus a process owned by node 2 (incarnation 5) and a service
// owned by node 3.
func cluster(t testing.TB, n int) *fakeView {
	t.Helper()
	v := &fakeView{tb: table.New(8), alive: map[wire.NodeID]bool{}, now: 1000 * sec, hist: plugin.NewHistory(64)}
	add := func(name string, kind wire.EntityKind, owner wire.NodeID, inc uint64) {
		require.NoError(t, v.tb.Apply(&wire.Change{
			Kind: wire.ChangeRegister, Entity: table.ID(name), Name: []byte(name),
			EntityKind: kind, Owner: owner, State: wire.StateUp, Incarnation: inc,
		}))
	}
	for i := 1; i <= n; i++ {
		id := wire.NodeID(i)
		v.alive[id] = true
		add(table.NodeName(id), wire.KindNode, id, 1)
		add(table.LinkName(id, wire.NetA), wire.KindLink, id, 1)
		add(table.LinkName(id, wire.NetB), wire.KindLink, id, 1)
	}
	add(procDB, wire.KindProcess, 2, 5)
	add(svc, wire.KindService, 3, 1)
	return v
}

func (v *fakeView) setState(t *testing.T, name string, st wire.State) {
	t.Helper()
	e, ok := v.tb.Lookup(name)
	require.True(t, ok)
	require.NoError(t, v.tb.Apply(&wire.Change{Kind: wire.ChangeState, Entity: e.ID, State: st, Incarnation: e.Incarnation}))
}

func (v *fakeView) raise(t *testing.T, name, cause string, by wire.NodeID) {
	t.Helper()
	require.NoError(t, v.tb.Apply(&wire.Change{Kind: wire.ChangeRaise, Entity: table.ID(name),
		Cause: []byte(cause), Severity: wire.SevMinor, By: by}))
}

// fault is a client's fault report from `from` against name, at the view's now.
func (v *fakeView) fault(from wire.NodeID, name, cause string) *plugin.Report {
	return &plugin.Report{From: from, Source: plugin.SourceClient, Kind: wire.ReportFault,
		Entity: table.ID(name), Name: name, Cause: cause, At: v.now}
}

func vd(k plugin.VerdictKind, name, cause string, sev wire.Severity) plugin.Verdict {
	return plugin.Verdict{Kind: k, Entity: table.ID(name), Name: name, Cause: cause, Severity: sev}
}

package core

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/plugin"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// The owner's own up or down from a newer life adopts its entity; nothing
// else changes an entity's incarnation through a state change.
func TestOwnersLife(t *testing.T) {
	svc := &table.Entity{ID: table.ID("svc/a"), Name: "svc/a", Kind: wire.KindService, Owner: 2, Incarnation: 5}
	up := func(from wire.NodeID, inc uint64) *plugin.Report {
		return &plugin.Report{Source: plugin.SourceOwner, Kind: wire.ReportUp, Entity: svc.ID, Name: svc.Name, From: from, Incarnation: inc}
	}
	require.Equal(t, uint64(7), ownersLife(svc, up(2, 7)), "the owner's new agent adopts it")
	down := up(2, 7)
	down.Kind = wire.ReportDown
	require.Equal(t, uint64(7), ownersLife(svc, down), "by a down as well")
	require.Equal(t, uint64(5), ownersLife(svc, up(2, 3)), "an older life's word never takes it back")
	require.Equal(t, uint64(5), ownersLife(svc, up(3, 9)), "another node's word is not the owner's")
	other := up(2, 7)
	other.Entity = table.ID("svc/b")
	require.Equal(t, uint64(5), ownersLife(svc, other), "a verdict on svc/a from a report on svc/b")
	raise := up(2, 7)
	raise.Kind = wire.ReportRaise
	require.Equal(t, uint64(5), ownersLife(svc, raise), "a raise says nothing of the entity's life")
	for _, k := range []wire.EntityKind{wire.KindNode, wire.KindLink} {
		e := *svc
		e.Kind = k
		require.Equal(t, uint64(5), ownersLife(&e, up(2, 7)), "kind %v: judged from heartbeats", k)
	}
}

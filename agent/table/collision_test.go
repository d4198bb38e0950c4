package table_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// TestCollision forces every name onto ID 42: the second name is refused with
// ErrCollision and the first entity is untouched; a Register whose Entity is
// not the (forced) hash of its name is ErrBadID.
func TestCollision(t *testing.T) {
	const id = 42
	tb := table.NewWithHash(4, func(string) uint64 { return id })
	first := &wire.Change{Seq: 1, Kind: wire.ChangeRegister, Entity: id, Name: []byte("svc/first"),
		EntityKind: wire.KindService, Owner: 1, State: wire.StateUp, Incarnation: 1}
	require.NoError(t, tb.Apply(first))
	d := tb.Digest()

	second := &wire.Change{Seq: 2, Kind: wire.ChangeRegister, Entity: id, Name: []byte("svc/second"),
		EntityKind: wire.KindProcess, Owner: 2, State: wire.StateDown, Incarnation: 9}
	assert.ErrorIs(t, tb.Check(second), table.ErrCollision)
	assert.ErrorIs(t, tb.Apply(second), table.ErrCollision)
	assert.Equal(t, d, tb.Digest())
	assert.Equal(t, uint64(1), tb.Seq())

	e, ok := tb.Get(id)
	require.True(t, ok)
	assert.Equal(t, "svc/first", e.Name)
	assert.Equal(t, wire.NodeID(1), e.Owner)
	_, ok = tb.Lookup("svc/second")
	assert.False(t, ok, "Lookup never returns an entity under another name")

	bad := &wire.Change{Kind: wire.ChangeRegister, Entity: id + 1, Name: []byte("svc/third"),
		EntityKind: wire.KindService, State: wire.StateUp}
	assert.ErrorIs(t, tb.Apply(bad), table.ErrBadID)

	// The same name again is a re-assertion, not a collision.
	require.NoError(t, tb.Apply(first))
}

package agent

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	fmmetrics "github.com/fmagent/fmagent/metrics"
	"github.com/fmagent/fmagent/persist"
	"github.com/fmagent/fmagent/wire"
)

// A Ready whose incarnation is within the reserve on disk, or whose epoch
// the disk holds, leaves without a save first; past the reserve, or with an
// epoch the core asks to be durable and the disk lacks, it is saved first,
// and the save renews the reserve. A save that fails leaves the next Ready
// to be saved first again: the disk's, not the attempt's, is what counts.
// The membership saver's saves go to a file of their own and never make an
// epoch or incarnation durable.
func TestIncarnationReserved(t *testing.T) {
	const r = persist.ReserveIncarnations
	dir := t.TempDir()
	inc, err := persist.NextIncarnation(dir, r)
	require.NoError(t, err)
	a := &agent{log: slog.New(slog.NewTextHandler(io.Discard, nil)), stateDir: dir,
		m: &agentMetrics{persistErrors: fmmetrics.NewRegistry().Counter("e", "e")}}
	a.durableInc.Store(inc + r)

	// Fenced: rejoining under the next incarnations, reserved already.
	for _, i := range []uint64{inc + 1, inc + 2, inc + r} {
		assert.False(t, a.mustSaveFirst(&core.Persist{Incarnation: i}, true), "incarnation %d in the reserve", i-inc)
	}
	p := &core.Persist{Incarnation: inc + r + 1}
	require.True(t, a.mustSaveFirst(p, true), "past the reserve")
	require.NoError(t, a.saveNow(p))
	st, err := persist.Load(dir)
	require.NoError(t, err)
	assert.Equal(t, inc+2*r+1, st.Incarnation, "the reserve renewed on disk")
	assert.False(t, a.mustSaveFirst(&core.Persist{Incarnation: inc + 2*r + 1}, true))

	// An epoch this node claims: saved first once, then held.
	p = &core.Persist{Incarnation: inc + r + 1, Epoch: 7}
	assert.False(t, a.mustSaveFirst(p, false), "a followed master's epoch need not wait")
	require.True(t, a.mustSaveFirst(p, true))
	require.NoError(t, a.saveNow(p))
	assert.False(t, a.mustSaveFirst(p, true))
	st, err = persist.Load(dir)
	require.NoError(t, err)
	assert.Equal(t, uint64(7), st.Epoch)

	// The membership saver's save of a state with a new epoch writes the
	// membership only: the Ready that carries the epoch is still saved
	// first.
	p = &core.Persist{Incarnation: inc + r + 1, Generation: 5, Members: []wire.NodeID{1, 2}, Epoch: 8}
	require.NoError(t, a.saveMembers(p))
	st, err = persist.Load(dir)
	require.NoError(t, err)
	assert.Equal(t, uint64(7), st.Epoch, "the epoch not written")
	assert.Equal(t, uint64(5), st.Generation, "the membership written")
	assert.Equal(t, []uint32{1, 2}, st.Members)
	assert.True(t, a.mustSaveFirst(p, true), "nor known to be on disk")
	require.NoError(t, a.saveNow(p))
	assert.False(t, a.mustSaveFirst(p, true))

	// The state directory turned into a file: the save fails, and the next
	// Ready past the reserve is saved first again.
	require.NoError(t, os.RemoveAll(dir))
	require.NoError(t, os.WriteFile(dir, nil, 0o600))
	defer os.Remove(dir)
	a.stateDir = filepath.Join(dir, "x")
	p = &core.Persist{Incarnation: inc + 3*r, Epoch: 8}
	require.True(t, a.mustSaveFirst(p, true))
	require.Error(t, a.saveNow(p))
	assert.True(t, a.mustSaveFirst(p, true), "not on disk: still to be saved first")
	assert.Equal(t, uint64(inc+2*r+1), a.durableInc.Load())
}

package table

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/fmagent/fmagent/wire"
)

func TestNamesRoundTrip(t *testing.T) {
	assert.Equal(t, "node/7", NodeName(7))
	assert.Equal(t, "node/7/link/b", LinkName(7, 1))
	assert.Equal(t, "node/7/proc/sshd", ProcName(7, "sshd"))
	assert.Equal(t, ID("node/7"), NodeEntityID(7))
	assert.Equal(t, ID("node/7/link/a"), LinkEntityID(7, 0))
	assert.Equal(t, wire.EntityID("svc/a"), ID("svc/a"))
}

func TestKindOfName(t *testing.T) {
	for name, want := range map[string]wire.EntityKind{
		"node/3":           wire.KindNode,
		"node/3/link/a":    wire.KindLink,
		"node/3/proc/sshd": wire.KindProcess,
		"svc/billing":      wire.KindService,
		"db/primary":       wire.KindCustom,
		"node/3/disk/sda":  wire.KindCustom,
		"nodes/3":          wire.KindCustom,
	} {
		assert.Equal(t, want, KindOfName(name), name)
	}
}

func TestNodeOfName(t *testing.T) {
	for name, want := range map[string]wire.NodeID{
		"node/3": 3, "node/3/proc/x": 3, "node/4294967295": 4294967295,
		"node/0": 0, "node/": 0, "node/12abc": 0, "node/4294967296": 0,
		"node/99999999999999999999/x": 0, "svc/node/3": 0, "node3": 0,
	} {
		got, ok := NodeOfName(name)
		assert.Equal(t, want, got, name)
		assert.Equal(t, want != 0, ok, name)
	}
	assert.Equal(t, wire.NodeID(5), OwnerOfName("svc/a", 5))
	assert.Equal(t, wire.NodeID(2), OwnerOfName("node/2/proc/a", 5))
}

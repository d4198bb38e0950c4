package wire

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestNodeSet(t *testing.T) {
	assert.Equal(t, "{}", NodeSet(nil))
	assert.Equal(t, "{7}", NodeSet([]NodeID{7}))
	assert.Equal(t, "{1,2,4294967295}", NodeSet([]NodeID{1, 2, 4294967295}))
	assert.Equal(t, "x{3,1}", string(AppendNodeSet([]byte("x"), []NodeID{3, 1})), "in the order given")
	buf := make([]byte, 0, 64)
	ids := []NodeID{1, 2, 3}
	assert.Zero(t, testing.AllocsPerRun(100, func() { buf = AppendNodeSet(buf[:0], ids) }))
}

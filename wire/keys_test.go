package wire

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A Codec seals with its key and opens what its key or an accepted key
// sealed; a key it neither has nor accepts is ErrAuth.
func TestAcceptKey(t *testing.T) {
	oldK, newK, other := []byte("old-key-0123456789abcdef"), []byte("new-key-0123456789abcdef"), []byte("other-key-0123456789abcd")
	seal := func(c *Codec) []byte {
		h := Header{Sender: 2, Incarnation: 1, Seq: 1}
		p, err := c.AppendHeartbeat(nil, &h, &Heartbeat{Role: RoleMember})
		require.NoError(t, err)
		return p
	}
	onlyOld := NewCodec(9, oldK)
	oldAcceptNew := NewCodec(9, oldK)
	oldAcceptNew.AcceptKey(newK)
	newAcceptOld := NewCodec(9, newK)
	newAcceptOld.AcceptKey(oldK)
	onlyNew := NewCodec(9, newK)
	steps := []*Codec{onlyOld, oldAcceptNew, newAcceptOld, onlyNew}
	// Neighbouring steps of the change-over understand each other both ways.
	for i := 0; i+1 < len(steps); i++ {
		a, b := steps[i], steps[i+1]
		_, _, err := a.Open(seal(b))
		require.NoError(t, err, "step %d opens step %d", i, i+1)
		_, _, err = b.Open(seal(a))
		require.NoError(t, err, "step %d opens step %d", i+1, i)
	}
	_, _, err := onlyOld.Open(seal(newAcceptOld))
	require.ErrorIs(t, err, ErrAuth, "skipping the first step")
	_, _, err = newAcceptOld.Open(seal(NewCodec(9, other)))
	require.ErrorIs(t, err, ErrAuth)
	// Opening under an accepted key allocates nothing either.
	pkt := seal(onlyNew)
	require.Zero(t, testing.AllocsPerRun(100, func() {
		if _, _, err := oldAcceptNew.Open(pkt); err != nil {
			t.Fatal(err)
		}
	}))
}

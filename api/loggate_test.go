package api

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLogGateOneLinePerPeriod(t *testing.T) {
	g := &logGate{period: time.Second}
	t0 := time.Unix(1000, 0)
	ok, held := g.allow(t0)
	require.True(t, ok)
	require.Zero(t, held)
	for i := range 999 {
		ok, _ = g.allow(t0.Add(time.Duration(i) * time.Millisecond))
		require.False(t, ok, "line %d inside the period", i)
	}
	ok, held = g.allow(t0.Add(time.Second))
	require.True(t, ok)
	require.Equal(t, 999, held, "the next line says how many were held back")
	ok, held = g.allow(t0.Add(3 * time.Second))
	require.True(t, ok)
	require.Zero(t, held)
}

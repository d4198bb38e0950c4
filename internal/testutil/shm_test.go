package testutil

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestShmLeftovers(t *testing.T) {
	const prefix = "fmtestutil-shm-"
	self := filepath.Join("/dev/shm", prefix+strconv.Itoa(os.Getpid())+"-x")
	hidden := filepath.Join("/dev/shm", "."+prefix+strconv.Itoa(os.Getpid())+"-y.tmp")
	dead := filepath.Join("/dev/shm", prefix+"999999999-z") // no such PID
	for _, p := range []string{self, hidden, dead} {
		require.NoError(t, os.WriteFile(p, nil, 0o600))
		t.Cleanup(func() { os.Remove(p) })
	}
	assert.ElementsMatch(t, []string{hidden, self}, ShmLeftovers(prefix, os.Getpid()))

	RemoveDeadShm(prefix)
	assert.NoFileExists(t, dead)
	assert.FileExists(t, self, "this run's own are not an earlier run's")

	assert.Equal(t, 1, CheckShmLeftovers(prefix, 0), "a passing run that left segments fails")
	assert.Empty(t, ShmLeftovers(prefix, os.Getpid()), "and what it left is removed")
	assert.Equal(t, 0, CheckShmLeftovers(prefix, 0))
	assert.Equal(t, 3, CheckShmLeftovers(prefix, 3))
}

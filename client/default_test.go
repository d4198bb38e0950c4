package client

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDefaultSocket(t *testing.T) {
	dir := t.TempDir()
	sys := filepath.Join(dir, "run/fmagent.sock")
	usr := filepath.Join(dir, "tmp/fmagent-%d/fmagent.sock")
	oldSys, oldUsr := systemSocket, userSocket
	systemSocket, userSocket = sys, usr
	t.Cleanup(func() { systemSocket, userSocket = oldSys, oldUsr })

	t.Setenv("FMAGENT_SOCKET", "/somewhere/agent.sock")
	assert.Equal(t, "/somewhere/agent.sock", DefaultSocket())

	t.Setenv("FMAGENT_SOCKET", "")
	xdg := filepath.Join(dir, "xdg")
	t.Setenv("XDG_RUNTIME_DIR", xdg)
	assert.Equal(t, sys, DefaultSocket(), "nothing exists: the system path")

	u := fmt.Sprintf(usr, os.Getuid())
	require.NoError(t, os.MkdirAll(filepath.Dir(u), 0o700))
	require.NoError(t, os.WriteFile(u, nil, 0o600))
	assert.Equal(t, u, DefaultSocket(), "the per-user path when it exists")

	x := filepath.Join(xdg, "fmagent", "fmagent.sock")
	require.NoError(t, os.MkdirAll(filepath.Dir(x), 0o700))
	require.NoError(t, os.WriteFile(x, nil, 0o600))
	assert.Equal(t, x, DefaultSocket(), "$XDG_RUNTIME_DIR/fmagent before /tmp (the agent's own order: config.DefaultStateDir)")

	require.NoError(t, os.MkdirAll(filepath.Dir(sys), 0o755))
	require.NoError(t, os.WriteFile(sys, nil, 0o600))
	assert.Equal(t, sys, DefaultSocket(), "the system path wins when it exists")
}

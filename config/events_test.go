package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHooksAndLogFormat(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.toml")
	require.NoError(t, os.WriteFile(p, []byte(`log_format = "json"
[[hooks]]
command = "/usr/local/bin/notify"
on = ["node", "alarm"]
[[hooks]]
command = "/bin/true"
timeout = "250ms"
`), 0o644))
	c, err := Load(p)
	require.NoError(t, err)
	require.Equal(t, LogJSON, c.LogFormat)
	require.Len(t, c.Hooks, 2)
	require.Equal(t, DefaultHookTimeout, c.Hooks[0].Timeout)
	require.True(t, c.Hooks[0].Wants("alarm"))
	require.False(t, c.Hooks[0].Wants("link"))
	require.True(t, c.Hooks[1].Wants("link"), "no on: every kind")
	require.Equal(t, 250*time.Millisecond, c.Hooks[1].Timeout)

	require.NoError(t, os.WriteFile(p, []byte("log_format = \"xml\"\n[[hooks]]\ncommand = \"notify\"\non = [\"nodes\"]\n"), 0o644))
	_, err = Load(p)
	require.ErrorContains(t, err, `f.toml:1`)
	require.ErrorContains(t, err, `log_format = "xml": must be "text" or "json"`)
	require.ErrorContains(t, err, `hooks[0].command = "notify": must be an absolute path`)
	require.ErrorContains(t, err, `hooks[0].on[0] = "nodes": must be one of`)
}

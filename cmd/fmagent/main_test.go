package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBadConfigExit2OneLine(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.toml")
	require.NoError(t, os.WriteFile(p, []byte("node_id = 1\n[timing]\nprofile = \"custom\"\ninterval = \"10ms\"\nmisses = 1\n"), 0o644))
	var stderr bytes.Buffer
	require.Equal(t, 2, run([]string{"-config", p}, &stderr))
	out := strings.TrimSpace(stderr.String())
	require.NotContains(t, out, "\n", "one line")
	require.Contains(t, out, p+":5:")
	require.Contains(t, out, "timing.misses")
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"-log-level", "loud"}, {"-nosuchflag"}, {"extra"}, {"-node", "0"}} {
		var stderr bytes.Buffer
		require.Equal(t, 2, run(args, &stderr), "%v", args)
		require.NotEmpty(t, stderr.String())
	}
}

func TestGenkeyThenWorldReadableRefused(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "cluster.key")
	var stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"-genkey", key}, &stderr), stderr.String())
	st, err := os.Stat(key)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	stderr.Reset()
	require.Equal(t, 1, run([]string{"-genkey", key}, &stderr), "never over an existing key")
	require.Contains(t, stderr.String(), "file exists")

	require.NoError(t, os.Chmod(key, 0o644))
	p := filepath.Join(dir, "fm.toml")
	require.NoError(t, os.WriteFile(p, []byte("node_id = 1\n\nkey_file = \""+key+"\"\n"), 0o644))
	stderr.Reset()
	require.Equal(t, 2, run([]string{"-config", p}, &stderr))
	out := strings.TrimSpace(stderr.String())
	require.Contains(t, out, p+":3:")
	require.Contains(t, out, "mode 0644 lets group or others read it")
}

package main

import (
	"bytes"
	"io"
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
	require.Equal(t, 2, run([]string{"-config", p}, io.Discard, &stderr))
	out := strings.TrimSpace(stderr.String())
	require.NotContains(t, out, "\n", "one line")
	require.Contains(t, out, p+":5:")
	require.Contains(t, out, "timing.misses")
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"-log-level", "loud"}, {"-nosuchflag"}, {"extra"}, {"-node", "0"}} {
		var stderr bytes.Buffer
		require.Equal(t, 2, run(args, io.Discard, &stderr), "%v", args)
		require.NotEmpty(t, stderr.String())
	}
}

func TestGenkeyThenWorldReadableRefused(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "cluster.key")
	var stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"-genkey", key}, io.Discard, &stderr), stderr.String())
	st, err := os.Stat(key)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	stderr.Reset()
	require.Equal(t, 1, run([]string{"-genkey", key}, io.Discard, &stderr), "never over an existing key")
	require.Contains(t, stderr.String(), "file exists")

	require.NoError(t, os.Chmod(key, 0o644))
	p := filepath.Join(dir, "fm.toml")
	require.NoError(t, os.WriteFile(p, []byte("node_id = 1\n\nkey_file = \""+key+"\"\n"), 0o644))
	stderr.Reset()
	require.Equal(t, 2, run([]string{"-config", p}, io.Discard, &stderr))
	out := strings.TrimSpace(stderr.String())
	require.Contains(t, out, p+":3:")
	require.Contains(t, out, "mode 0644 lets group or others read it")
}

func TestCheckConfigRefusesWideKey(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "cluster.key")
	require.Equal(t, 0, run([]string{"-genkey", key}, io.Discard, io.Discard))
	require.NoError(t, os.Chmod(key, 0o640))
	p := filepath.Join(dir, "fm.toml")
	require.NoError(t, os.WriteFile(p, []byte("key_file = \""+key+"\"\n"), 0o644))
	var stderr bytes.Buffer
	require.Equal(t, 1, run([]string{"-check-config", p}, io.Discard, &stderr))
	require.Contains(t, stderr.String(), p+":1:")
	require.Contains(t, stderr.String(), "mode 0640 lets group or others read it")
}

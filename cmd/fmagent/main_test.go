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

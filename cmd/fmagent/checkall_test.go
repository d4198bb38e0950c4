package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fmagent -check-config prints every problem of the file, one line each in
// the file's order, not only the first: an unknown key or a bare duration
// used to hide every other problem until it was fixed.
func TestCheckConfigPrintsEveryProblem(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.toml")
	require.NoError(t, os.WriteFile(p, []byte("node_id = 0\nnodeid = 4\n[[hooks]]\ncommand = \"/bin/true\"\ntimeout = 10\n[realtime]\npriority = 99\n"), 0o644))
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(fmagentBin(t), "-check-config", p)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 1, ee.ExitCode())
	assert.Empty(t, stdout.String())
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	require.Len(t, lines, 4, stderr.String())
	assert.Regexp(t, `^fmagent: `+p+`:1:\d+: node_id = 0: must be at least 1`, lines[0])
	assert.Regexp(t, `^fmagent: `+p+`:2:\d+: nodeid: unknown key`, lines[1])
	assert.Regexp(t, `^fmagent: `+p+`:5:11: hooks\[0\]\.timeout = 10: must be a duration string with a unit`, lines[2])
	assert.Regexp(t, `^fmagent: `+p+`:7:12: realtime\.priority = 99: must be in 1\.\.98`, lines[3])
}

package dist

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCompletion runs the bash completion with a freshly built fmctl
// against a live two-node cluster: commands, a command's flags, flag values
// and entity names (read from the agent).
func TestCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("bash is needed to test the bash completion")
	}
	maddr, sock := startTwoNodeCluster(t)
	scrapeWhenFormed(t, maddr) // both nodes' entities are in the table
	bin := t.TempDir()
	out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "fmctl"), "../cmd/fmctl").CombinedOutput()
	require.NoError(t, err, "%s", out)
	complete := func(words ...string) string {
		script := `source completion/fmctl.bash
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _fmctl; printf "%s\n" "${COMPREPLY[@]}"`
		cmd := exec.Command("bash", append([]string{"-c", script, "_"}, words...)...)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "FMAGENT_SOCKET="+sock)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return string(out)
	}
	assert.Equal(t, "status\nswitchover\n", complete("fmctl", "s"))
	assert.Equal(t, "entities\n", complete("fmctl", "en"))
	assert.Equal(t, "-alarmed\n", complete("fmctl", "entities", "-al"))
	assert.Equal(t, "-severity\n-socket\n", complete("fmctl", "raise", "x", "-s"))
	assert.Equal(t, "major\nminor\n", complete("fmctl", "raise", "x", "-severity", "m"))
	// node/N and, once registered, node/N/link/a and b.
	names := strings.Fields(complete("fmctl", "get", "node/"))
	assert.Subset(t, names, []string{"node/1", "node/2"})
	for _, n := range names {
		assert.Regexp(t, `^node/[12](/link/[ab])?$`, n)
	}
	names = strings.Fields(complete("fmctl", "-o", "json", "clear", "node/2"))
	assert.Contains(t, names, "node/2")
	for _, n := range names {
		assert.Regexp(t, `^node/2`, n)
	}
}

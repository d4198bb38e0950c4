package transport

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const forkChildEnv = "FMAGENT_TEST_FIFO_PARENT"

// A process the agent starts (a daemon, a hook) must not inherit the
// agent's real-time policy: SetProcessFIFO sets SCHED_RESET_ON_FORK. The
// FIFO part runs in a re-executed test binary, so this one stays normal.
func TestChildOfFIFOProcessIsNormal(t *testing.T) {
	if os.Getenv(forkChildEnv) == "1" {
		if err := SetProcessFIFO(1); err != nil {
			os.Stdout.WriteString("no-fifo " + err.Error() + "\n")
			return
		}
		self, err := os.ReadFile("/proc/self/stat")
		require.NoError(t, err)
		child, err := exec.Command("cat", "/proc/self/stat").Output()
		require.NoError(t, err)
		os.Stdout.WriteString("self " + policy(string(self)) + " child " + policy(string(child)) + "\n")
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildOfFIFOProcessIsNormal$", "-test.v")
	cmd.Env = append(os.Environ(), forkChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	if strings.Contains(string(out), "no-fifo") {
		t.Skipf("SCHED_FIFO is not permitted here (not root?): %s", out)
	}
	// Policy 1 is SCHED_FIFO, 0 SCHED_OTHER (field 41 of /proc/PID/stat).
	require.Contains(t, string(out), "self 1 child 0", "%s", out)
}

// policy is field 41 of a /proc/PID/stat line.
func policy(stat string) string {
	i := strings.LastIndexByte(stat, ')')
	f := strings.Fields(stat[i+1:])
	return f[41-3]
}

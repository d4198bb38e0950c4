// Package dist holds the files that install fmagent (the systemd unit); its
// test checks the unit says what the agent relies on.
package dist

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUnit(t *testing.T) {
	f, err := os.Open("fmagent.service")
	require.NoError(t, err)
	defer f.Close()
	set := map[string]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		if l[0] == '[' {
			section = l
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		require.True(t, ok, "not key=value: %q", l)
		set[section+k] = v
	}
	require.NoError(t, sc.Err())
	for k, want := range map[string]string{
		"[Service]Type":                  "notify",
		"[Service]ExecStart":             "/usr/local/bin/fmagent -config /etc/fmagent/fmagent.toml",
		"[Service]Restart":               "on-failure",
		"[Service]LimitMEMLOCK":          "infinity",
		"[Service]AmbientCapabilities":   "CAP_NET_ADMIN CAP_SYS_NICE CAP_IPC_LOCK",
		"[Service]CapabilityBoundingSet": "CAP_NET_ADMIN CAP_SYS_NICE CAP_IPC_LOCK",
		"[Service]StateDirectory":        "fmagent",
		"[Service]RuntimeDirectory":      "fmagent",
		"[Service]RuntimeDirectoryMode":  "0755",
		"[Service]ExecReload":            "/bin/kill -HUP $MAINPID",
		"[Unit]Documentation":            "man:fmagent(8) man:fmagent.toml(5) man:fmctl(8)",
		"[Install]WantedBy":              "multi-user.target",
	} {
		assert.Equal(t, want, set[k], k)
	}
	assert.NotEmpty(t, set["[Service]WatchdogSec"])
	_, fifo := set["[Service]CPUSchedulingPolicy"]
	assert.False(t, fifo, "the agent sets its threads' policies itself (its loop above the rest): CPUSchedulingPolicy would flatten them; hints stay commented")

	// systemd-analyze, where present, finds nothing wrong but the binary
	// that is not installed here (nor are the man pages Documentation=
	// names: install_test checks those in the installed tree).
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		out, _ := exec.Command("systemd-analyze", "verify", "--man=no", "./fmagent.service").CombinedOutput()
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l == "" || strings.Contains(l, "/usr/local/bin/fmagent") {
				continue
			}
			t.Errorf("systemd-analyze verify: %s", l)
		}
	}
}

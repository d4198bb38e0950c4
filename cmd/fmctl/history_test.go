package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/internal/testutil"
	"github.com/fmagent/fmagent/internal/testutil/agenttest"
)

// fmctl history, members and status against a real single-node agent.
// startRealAgent runs a single-node agent in this process until the test
// ends and returns its fmctl socket arguments.
func startRealAgent(t *testing.T) (*config.Config, []string) {
	t.Helper()
	cfg := testutil.NewNet(t).Config(1, t.TempDir())
	cfg.AllowAlone = true
	agenttest.Start(t, cfg, nil)
	sock := []string{"-socket", cfg.Paths.Socket}
	require.Eventually(t, func() bool {
		r := fmctl(t, append(sock, "status")...)
		return r.code == 0 && strings.Contains(r.stdout, "role:") && !strings.Contains(r.stdout, "no master")
	}, 10*time.Second, 20*time.Millisecond)
	return cfg, sock
}

func TestHistoryMembersStatusRealAgent(t *testing.T) {
	_, sock := startRealAgent(t)
	ok := func(args ...string) string {
		r := fmctl(t, append(sock, args...)...)
		require.Equal(t, 0, r.code, "fmctl %q: %s", args, r.stderr)
		return r.stdout
	}
	ok("register", "svc/h", "-kind", "service")
	ok("raise", "svc/h", "-cause", "overload", "-severity", "major")
	ok("clear", "svc/h", "-cause", "overload")
	ok("register", "node/1/proc/p", "-kind", "process")
	ok("down", "node/1/proc/p")
	ok("up", "node/1/proc/p")
	ok("down", "node/1/proc/p")

	out := ok("history", "-n", "100")
	require.Contains(t, out, "CURSOR")
	require.Regexp(t, `raise\s+svc/h\s+up\s+overload \(major\)\s+1`, out)
	require.Regexp(t, `clear\s+svc/h\s+up\s+overload\s+1`, out)
	require.Regexp(t, `master\s+\(cluster\)\s+master 1 epoch 1 role master`, out)
	// LAG: a table change published after it was made, on this host's one
	// clock, within a second; "-" for a cluster line.
	require.Regexp(t, `Z\s+-\s+\d+\s+master\s+\(cluster\)`, out)
	lags := regexp.MustCompile(`Z\s+(\S+)\s+\d+\s+(?:raise|clear|state|register)\s`).FindAllStringSubmatch(out, -1)
	require.GreaterOrEqual(t, len(lags), 7, out)
	for _, m := range lags {
		d, err := time.ParseDuration(m[1])
		require.NoError(t, err, "LAG %q", m[1])
		require.True(t, d >= 0 && d < time.Second, "LAG %v", d)
	}
	var h api.HistoryResult
	require.NoError(t, json.Unmarshal([]byte(ok("history", "-o", "json")), &h))
	for _, ev := range h.Events {
		switch ev.Kind {
		case api.EventMaster, api.EventRole, api.EventStale, api.EventFresh:
			require.True(t, ev.PublishedAt.IsZero(), "cluster event %d: published_at %v", ev.Cursor, ev.PublishedAt)
		default:
			require.False(t, ev.PublishedAt.Before(ev.Time), "event %d (%s): published %v before made %v", ev.Cursor, ev.Kind, ev.PublishedAt, ev.Time)
		}
	}
	require.Regexp(t, `node/1/proc/p\s+down\s+2\s+3\s+0\s+20`, out, "fails 2, flaps 3 (down, up, down), last fail today")
	require.Regexp(t, `svc/h\s+up\s+0\s+0\s+1\s+-`, out)
	only := ok("history", "-prefix", "svc/")
	require.NotContains(t, only, "(cluster)")
	require.NotContains(t, only, "node/1/proc/p")

	members := ok("members")
	require.Contains(t, members, "VERSION")
	require.Regexp(t, `1\*\s+\S+\s+master\s+up`, members)
	st := ok("status")
	require.Contains(t, st, "timing:")
	require.Contains(t, st, "4ms × 5 (detection 20ms, profile 20ms)")
}

// fmctl top in a real terminal (a tmux pane): the screen shows the members
// and no alarm, then redraws with an alarm raised from another command.
func TestTopInTmux(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatalf("tmux is needed (the Makefile installs it): %v", err)
	}
	cfg, sock := startRealAgent(t)
	bin := filepath.Join(t.TempDir(), "fmctl")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	server := fmt.Sprintf("fmctl-test-%d", os.Getpid())
	tmux := func(args ...string) string {
		out, err := exec.Command("tmux", append([]string{"-L", server}, args...)...).CombinedOutput()
		require.NoError(t, err, "tmux %v: %s", args, out)
		return string(out)
	}
	tmux("new-session", "-d", "-x", "120", "-y", "40", "-s", "top",
		bin+" -socket "+cfg.Paths.Socket+" top -interval 2s")
	t.Cleanup(func() { exec.Command("tmux", "-L", server, "kill-server").Run() })
	screen := func() string { return tmux("capture-pane", "-p", "-t", "top") }
	require.Eventually(t, func() bool {
		s := screen()
		return strings.Contains(s, "ACTIVE ALARMS: none") && strings.Contains(s, "MEMBERS (1)") &&
			strings.Contains(s, "table from shared memory")
	}, 10*time.Second, 50*time.Millisecond, "screen:\n%s", screen())

	r := fmctl(t, append(sock, "register", "svc/top", "-kind", "service")...)
	require.Equal(t, 0, r.code, r.stderr)
	r = fmctl(t, append(sock, "raise", "svc/top", "-cause", "on-fire", "-severity", "critical")...)
	require.Equal(t, 0, r.code, r.stderr)
	// Redrawn on the change (well before the 2 s interval on an idle
	// host; the assertion allows for a loaded one).
	require.Eventually(t, func() bool {
		s := screen()
		return strings.Contains(s, "ACTIVE ALARMS: critical 1") && regexp.MustCompile(`critical\s+svc/top\s+on-fire`).MatchString(s) &&
			strings.Contains(s, "raise")
	}, 10*time.Second, 50*time.Millisecond, "screen:\n%s", screen())
}

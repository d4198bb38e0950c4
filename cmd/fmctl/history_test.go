package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	agentpkg "github.com/fmagent/fmagent/agent"
	"github.com/fmagent/fmagent/config"
)

// fmctl history, members and status against a real single-node agent.
func TestHistoryMembersStatusRealAgent(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.AllowAlone = true
	cfg.ClusterID = uint32(os.Getpid()%100000 + 7000)
	cfg.Paths.StateDir = dir
	cfg.Paths.Socket = filepath.Join(dir, "fmagent.sock")
	cfg.Paths.Shm = fmt.Sprintf("fmagent-fmctl-test-%d", os.Getpid())
	cfg.Metrics.Listen = ""
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	for i := range cfg.Networks {
		cfg.Networks[i].Port = port
		cfg.Networks[i].Group = cfg.Networks[i].Group.Next().Next()
	}
	require.NoError(t, cfg.Validate())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agentpkg.Run(ctx, cfg, nil) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	sock := []string{"-socket", cfg.Paths.Socket}
	require.Eventually(t, func() bool {
		r := fmctl(t, append(sock, "status")...)
		return r.code == 0 && strings.Contains(r.stdout, "role:") && !strings.Contains(r.stdout, "no master")
	}, 10*time.Second, 20*time.Millisecond)

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
	require.Contains(t, st, "10ms × 5 (detection 50ms, profile default)")
}

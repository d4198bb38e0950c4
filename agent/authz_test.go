package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/config"
)

// asClientEnv makes the test binary a client that runs one request and
// prints its error code ("ok" on success): socket|op|name (see asClient).
const asClientEnv = "FMAGENT_TEST_AS_CLIENT"

func init() {
	spec := os.Getenv(asClientEnv)
	if spec == "" {
		return
	}
	parts := strings.SplitN(spec, "|", 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, parts[0])
	if err == nil {
		name := parts[2]
		switch parts[1] {
		case "register":
			_, err = c.Register(ctx, name, client.KindService)
		case "unregister":
			_, err = c.Unregister(ctx, name)
		case "down":
			_, err = c.SetState(ctx, name, client.StateDown)
		case "raise":
			_, err = c.Raise(ctx, name, "intruder", client.SevCritical)
		case "clear":
			_, err = c.Clear(ctx, name, "owner-alarm")
		}
	}
	var e *api.Error
	switch {
	case err == nil:
		fmt.Println("ok")
	case errors.As(err, &e):
		fmt.Println(e.Code)
	default:
		fmt.Println("error:", err)
	}
	os.Exit(0)
}

// asClient runs op on name through socket as uid/gid 65534 (nobody),
// with a copy of the test binary in dir (the build directory is private).
func asClient(t *testing.T, dir, socket, op, name string) string {
	t.Helper()
	bin := filepath.Join(dir, "client.test")
	if _, err := os.Stat(bin); err != nil {
		data, err := os.ReadFile(os.Args[0])
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(bin, data, 0o755))
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), asClientEnv+"="+socket+"|"+op+"|"+name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return strings.TrimSpace(string(out))
}

// An allowed user may write this node's own client entities, and nothing
// else: not another node's entity (unregister, raise, clear, set state),
// not this node's node/N or links (fmctl down node/2 fenced node 2 in a
// loop). Root may. A grant with foreign = true may what it names.
func TestAllowedUserLimitedToOwnEntities(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs clients as uid 65534 and needs root (make test runs as root)")
	}
	dir := t.TempDir()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		require.NoError(t, os.Chmod(d, 0o755)) // nobody must reach the sockets
	}
	ga, gb, port := testNet(t)
	cluster := uint32(time.Now().UnixNano()%(1<<30) + 1000)
	var cfgs []*config.Config
	for id := 1; id <= 2; id++ {
		cfg := newTestConfig(t, id, cluster, ga, gb, port, dir)
		cfg.API.AllowUsers = []string{"65534"}
		cfg.API.SocketMode = "0666"
		if id == 1 {
			cfg.API.Grants = []config.Grant{{Users: []string{"65534"}, Ops: []string{"clear"}, Foreign: true}}
		}
		require.NoError(t, os.MkdirAll(cfg.Paths.StateDir, 0o755))
		cfgs = append(cfgs, cfg)
		runNode(t, cfg)
	}
	require.Eventually(t, func() bool { return upIn(cfgs[0], []int{1, 2}) && upIn(cfgs[1], []int{1, 2}) },
		10*time.Second, 10*time.Millisecond, "cluster formed")
	for _, cfg := range cfgs {
		st, err := os.Stat(cfg.Paths.Socket)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o666), st.Mode().Perm(), "the configured mode, no other")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root1, err := client.Dial(ctx, cfgs[0].Paths.Socket)
	require.NoError(t, err)
	defer root1.Close()
	_, err = root1.Register(ctx, "svc/one", client.KindService)
	require.NoError(t, err)
	_, err = root1.Raise(ctx, "svc/one", "owner-alarm", client.SevMinor)
	require.NoError(t, err)
	_, err = root1.Raise(ctx, "node/1", "owner-alarm", client.SevMinor)
	require.NoError(t, err, "root may raise on the node itself")
	s1, s2 := cfgs[0].Paths.Socket, cfgs[1].Paths.Socket
	require.Eventually(t, func() bool { return upIn(cfgs[1], []int{1, 2}) }, 5*time.Second, 10*time.Millisecond)

	for _, tc := range []struct{ socket, op, name, want string }{
		{s2, "unregister", "svc/one", "permission_denied"}, // node 1's entity, from node 2
		{s2, "raise", "svc/one", "permission_denied"},
		{s2, "clear", "svc/one", "permission_denied"},
		{s2, "down", "node/2", "permission_denied"}, // the node itself
		{s2, "raise", "node/2", "permission_denied"},
		{s2, "down", "node/2/link/a", "permission_denied"},
		{s1, "down", "node/2", "permission_denied"},
		{s2, "register", "svc/two", "ok"}, // its own node's client entity
		{s2, "raise", "svc/two", "ok"},
		{s2, "down", "svc/two", "ok"},
		{s2, "unregister", "svc/two", "ok"},
		{s1, "clear", "svc/one", "ok"}, // node 1's own client entity
		{s2, "clear", "node/1", "permission_denied"},
		{s1, "clear", "node/1", "ok"},                // node 1's grant: clear, foreign
		{s1, "raise", "node/1", "permission_denied"}, // ... clear only
	} {
		require.Equal(t, tc.want, asClient(t, dir, tc.socket, tc.op, tc.name), "%s %s via %s", tc.op, tc.name, filepath.Base(filepath.Dir(tc.socket)))
	}
	// Nothing changed that was refused.
	for _, cfg := range cfgs {
		require.True(t, upIn(cfg, []int{1, 2}), "node %d: nodes still up", cfg.NodeID)
	}
	e, err := root1.Get(ctx, "svc/one")
	require.NoError(t, err, "svc/one still registered")
	require.Equal(t, api.StateUp, e.State)
	require.Empty(t, e.Alarms, "only the owner's alarm was cleared by the allowed user, through node 1")
	_, err = root1.SetState(ctx, "svc/one", client.StateDown)
	require.NoError(t, err, "root may")
	n1, err := root1.Get(ctx, "node/1")
	require.NoError(t, err)
	require.Equal(t, api.StateUp, n1.State)
	require.Empty(t, n1.Alarms)
}

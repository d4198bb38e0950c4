package agent

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/wire"
)

// runNode starts one agent with cfg; stop ends it and waits.
func runNode(t *testing.T, cfg *config.Config) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", cfg.NodeID)
	go func() { done <- Run(ctx, cfg, log) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err, "node %d", cfg.NodeID)
		case <-time.After(5 * time.Second):
			t.Fatalf("node %d: Run did not return", cfg.NodeID)
		}
	}
	t.Cleanup(stop)
	return stop
}

// upIn reports whether every node/N of want is up in the shared memory of
// the agent configured by cfg.
func upIn(cfg *config.Config, want []int) bool {
	r, err := shmem.Open(cfg.ShmPath())
	if err != nil {
		return false
	}
	defer r.Close()
	for _, id := range want {
		var e shmem.Entity
		if r.ReadByName(fmt.Sprintf("node/%d", id), &e) != nil || e.State != wire.StateUp {
			return false
		}
	}
	return true
}

// A key is changed without downtime in three rolling steps (docs/security.md):
// accept the new key, seal with the new key while accepting the old one,
// drop the old one. At every point of every step, the nodes already changed
// and those not yet changed hear each other: every node is up everywhere
// after each restart. A node that skips the first step (seals with the new
// key while others know only the old one) is never admitted.
func TestKeyChangeOver(t *testing.T) {
	dir := t.TempDir()
	oldKey, newKey := filepath.Join(dir, "old.key"), filepath.Join(dir, "new.key")
	require.NoError(t, config.GenerateKey(oldKey))
	require.NoError(t, config.GenerateKey(newKey))
	ga, gb, port := testNet(t)
	cluster := uint32(rand.IntN(1<<30) + 1000)
	ids := []int{1, 2, 3}
	cfgs := map[int]*config.Config{}
	stops := map[int]func(){}
	for _, id := range ids {
		cfg := newTestConfig(t, id, cluster, ga, gb, port, dir)
		cfg.KeyFile = oldKey
		cfgs[id] = cfg
		stops[id] = runNode(t, cfg)
	}
	allUp := func(what string) {
		t.Helper()
		require.Eventually(t, func() bool {
			for _, id := range ids {
				if !upIn(cfgs[id], ids) {
					return false
				}
			}
			return true
		}, 10*time.Second, 10*time.Millisecond, "%s: every node up on every node", what)
	}
	allUp("start, old key")

	// A node sealing with the new key only, before anyone accepts it.
	early := newTestConfig(t, 4, cluster, ga, gb, port, dir)
	early.KeyFile = newKey
	early.AllowAlone = true
	stopEarly := runNode(t, early)
	time.Sleep(300 * time.Millisecond) // 30 heartbeat intervals
	for _, id := range ids {
		require.False(t, upIn(cfgs[id], []int{4}), "node %d admitted node 4, whose key it does not accept", id)
	}
	stopEarly()

	steps := []struct {
		name   string
		key    string
		accept []string
	}{
		{"accept the new key", oldKey, []string{newKey}},
		{"seal with the new key, accept the old", newKey, []string{oldKey}},
		{"drop the old key", newKey, nil},
	}
	for _, st := range steps {
		for _, id := range []int{3, 2, 1} {
			stops[id]()
			cfg := *cfgs[id]
			cfg.KeyFile, cfg.AcceptKeyFiles = st.key, st.accept
			cfgs[id] = &cfg
			stops[id] = runNode(t, &cfg)
			allUp(fmt.Sprintf("%s, node %d restarted", st.name, id))
		}
	}
}

// An agent refuses a key file others may read, a short one and a missing
// one, naming the file and the reason; without a key file it refuses a
// non-loopback interface unless insecure is set.
func TestRunRefusesBadKeys(t *testing.T) {
	dir := t.TempDir()
	ga, gb, port := testNet(t)
	base := newTestConfig(t, 1, 77, ga, gb, port, dir)
	run := func(cfg *config.Config) error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		return Run(ctx, cfg, nil)
	}
	wide := filepath.Join(dir, "wide.key")
	require.NoError(t, config.GenerateKey(wide))
	require.NoError(t, os.Chmod(wide, 0o644))
	short := filepath.Join(dir, "short.key")
	require.NoError(t, os.WriteFile(short, []byte("0123456789\n"), 0o600))
	for _, tc := range []struct {
		file, want string
	}{
		{wide, "mode 0644 lets group or others read it"},
		{short, "10 bytes, at least 16 needed"},
		{filepath.Join(dir, "nope.key"), "no such file"},
	} {
		cfg := *base
		cfg.KeyFile = tc.file
		err := run(&cfg)
		require.ErrorIs(t, err, config.ErrKeyFile)
		require.ErrorContains(t, err, tc.file)
		require.ErrorContains(t, err, tc.want)
	}
}

package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/internal/testutil"
	"github.com/fmagent/fmagent/persist"
	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/wire"
)

// runAgent runs cfg in this process with a JSON logger writing to a new
// testutil.SyncBuffer, until the test ends.
func runAgent(t *testing.T, cfg *config.Config) *testutil.SyncBuffer {
	t.Helper()
	lb := &testutil.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, log) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(5 * time.Second):
			t.Errorf("node %d: Run did not return", cfg.NodeID)
		}
	})
	return lb
}

func writeKey(t *testing.T, dir, name, key string) string {
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(key+"\n"), 0o600))
	return p
}

// A node with the wrong cluster key is logged at WARN with its address,
// once (not per packet); a node with another timing profile is logged at
// WARN once; every line names the node; a write leaves an audit line.
func TestMisconfigurationIsLogged(t *testing.T) {
	ga, gb, port := testNet(t)
	dir := t.TempDir()
	good := writeKey(t, dir, "good.key", "the right cluster key, 32 bytes")
	wrong := writeKey(t, dir, "wrong.key", "a wrong cluster key, 32 bytes..")
	cfg1 := newTestConfig(t, 1, 4242, ga, gb, port, dir)
	cfg1.KeyFile, cfg1.AllowAlone = good, true
	cfg2 := newTestConfig(t, 2, 4242, ga, gb, port, dir)
	cfg2.KeyFile = wrong
	cfg3 := newTestConfig(t, 3, 4242, ga, gb, port, dir)
	cfg3.KeyFile = good
	cfg3.Timing.Interval, cfg3.Timing.Misses = 20*time.Millisecond, 4
	log1 := runAgent(t, cfg1)
	runAgent(t, cfg2)
	log3 := runAgent(t, cfg3)

	require.Eventually(t, func() bool {
		return len(log1.JSONLines("fail authentication")) > 0 && len(log1.JSONLines("timing mismatch")) > 0
	}, 10*time.Second, 20*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // node 2 keeps sending: still one line
	auth := log1.JSONLines("fail authentication")
	require.Len(t, auth, 1, "rate-limited")
	require.Equal(t, "WARN", auth[0]["level"])
	require.Equal(t, float64(1), auth[0]["node"])
	require.Contains(t, auth[0]["from"], "127.0.0.1:", "names the sender's address")
	tm := log1.JSONLines("timing mismatch")
	require.Len(t, tm, 1)
	require.Equal(t, "WARN", tm[0]["level"])
	require.Contains(t, tm[0]["msg"], "node 3 sends every 20ms and judges after 4 misses")
	require.Len(t, log3.JSONLines("timing mismatch"), 1, "the other side says so too")

	// Audit: who, from which node, what, verdict.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, cfg1.Paths.Socket)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Register(ctx, "svc/audited", client.KindService)
	require.NoError(t, err)
	_, err = c.Raise(ctx, "svc/audited", "disk-full", client.SevMajor)
	require.NoError(t, err)
	_, err = c.Clear(ctx, "svc/audited", "no-such-alarm")
	require.Error(t, err)
	audits := log1.JSONLines("audit")
	require.Len(t, audits, 3)
	for _, a := range audits {
		require.Equal(t, float64(1), a["node"])
		require.Equal(t, float64(os.Getuid()), a["uid"])
		require.Equal(t, float64(os.Getpid()), a["pid"])
		require.Equal(t, "svc/audited", a["entity"])
	}
	require.Equal(t, "raise", audits[1]["op"])
	require.Equal(t, "disk-full", audits[1]["cause"])
	require.Equal(t, "major", audits[1]["severity"])
	require.Equal(t, "raise", audits[1]["verdict"])
	require.NotZero(t, audits[1]["seq"])
	require.Equal(t, "clear", audits[2]["op"])
	require.Equal(t, "error", audits[2]["verdict"])
}

// A second agent started with node_id 2 while node 2 runs refuses to join
// (ERROR), the real node 2 and node 1 say so (WARN), and node 2 stays up
// and a member, during the copy's life and after it stops.
func TestDuplicateNodeIDRealAgents(t *testing.T) {
	ga, gb, port := testNet(t)
	dir := t.TempDir()
	cfg1 := newTestConfig(t, 1, 4343, ga, gb, port, dir)
	cfg2 := newTestConfig(t, 2, 4343, ga, gb, port, dir)
	log1, log2 := runAgent(t, cfg1), runAgent(t, cfg2)
	nd1 := &testNode{id: 1, cfg: cfg1}
	require.Eventually(t, func() bool {
		r, err := shmem.Open(cfg1.ShmPath())
		if err != nil {
			return false
		}
		nd1.shm = r
		return true
	}, 5*time.Second, 10*time.Millisecond)
	defer nd1.shm.Close()
	waitShm(t, nd1, 10*time.Second, "node 2 up", func() bool {
		st, _ := nd1.state("node/2")
		return st == wire.StateUp
	})
	_, e := nd1.state("node/2")
	inc := e.Incarnation

	copyCfg := newTestConfig(t, 2, 4343, ga, gb, port, filepath.Join(dir, "copy"))
	copyCfg.Paths.Shm += "-copy" // on one host; on another it would be the same name
	ctx, cancel := context.WithCancel(context.Background())
	lbCopy := &testutil.SyncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, copyCfg, slog.New(slog.NewJSONHandler(lbCopy, nil)))
	}()
	stopped := false
	t.Cleanup(func() { // also when an assertion below fails: the copy's segment must not outlive the test
		if !stopped {
			cancel()
			<-done
		}
	})
	require.Eventually(t, func() bool {
		return len(lbCopy.JSONLines("refuses to join")) > 0 && len(log2.JSONLines("this node's node_id 2")) > 0 &&
			len(log1.JSONLines("a second node configured with node_id 2")) > 0
	}, 10*time.Second, 20*time.Millisecond, "copy:\n%s\nnode 2:\n%s\nnode 1:\n%s", lbCopy, log2, log1)
	require.Equal(t, "ERROR", lbCopy.JSONLines("refuses to join")[0]["level"])
	require.Equal(t, "WARN", log2.JSONLines("this node's node_id 2")[0]["level"])
	time.Sleep(200 * time.Millisecond)
	cancel()
	stopped = true
	require.NoError(t, <-done)
	time.Sleep(200 * time.Millisecond)
	st, e := nd1.state("node/2")
	require.Equal(t, wire.StateUp, st, "node 2 stays up")
	require.Equal(t, inc, e.Incarnation, "the real node 2, never replaced by the copy")
	require.Len(t, log1.JSONLines("a second node configured with node_id 2"), 1, "once")
}

// A cold start waiting for quorum: the log names who is missing, and a
// write answers no_master (not not_found, though the table is empty); while
// it waits for a master, the next request on its connection is served.
func TestColdStartWaitingForQuorum(t *testing.T) {
	old := requestTimeout
	requestTimeout = 2 * time.Second
	// Restored once the agent has stopped (cleanups run last first):
	// its writes' goroutines read it until then.
	t.Cleanup(func() { requestTimeout = old })
	ga, gb, port := testNet(t)
	dir := t.TempDir()
	cfg := newTestConfig(t, 1, 4444, ga, gb, port, dir)
	require.NoError(t, os.MkdirAll(cfg.Paths.StateDir, 0o700))
	require.NoError(t, persist.Save(cfg.Paths.StateDir, persist.State{Incarnation: 5, Generation: 7, Members: []uint32{1, 2, 3}}))
	lb := runAgent(t, cfg)
	require.Eventually(t, func() bool { return len(lb.JSONLines("waiting for a quorum")) > 0 }, 5*time.Second, 20*time.Millisecond)
	w := lb.JSONLines("waiting for a quorum")
	require.Len(t, w, 1)
	require.Equal(t, "WARN", w[0]["level"])
	require.Contains(t, w[0]["msg"], "missing {2,3}")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, cfg.Paths.Socket)
	require.NoError(t, err)
	defer c.Close()
	c.UseDatagram(false) // the Raise on the connection, before the Status
	// On the datagram socket, the same answer.
	cd, err := client.Dial(ctx, cfg.Paths.Socket)
	require.NoError(t, err)
	defer cd.Close()
	raisedDgram := make(chan error, 1)
	go func() {
		_, err := cd.Raise(ctx, "svc/anything", "cause", client.SevMajor)
		raisedDgram <- err
	}()
	raised := make(chan error, 1)
	go func() {
		_, err := c.Raise(ctx, "svc/anything", "cause", client.SevMajor)
		raised <- err
	}()
	// The server reads a connection's next request while the one before
	// waits (api.Server: the reader starts the next reader before it
	// handles a request): a Status on the same connection is answered
	// while the Raise still waits for a master. Were it read only after
	// the Raise's answer (2 s), it could not be answered within its own
	// deadline of 1 s, and nothing but the Raise's answer could come
	// first.
	time.Sleep(100 * time.Millisecond) // the Raise sent first
	sctx, scancel := context.WithTimeout(ctx, time.Second)
	defer scancel()
	_, err = c.Status(sctx)
	require.NoError(t, err, "the Status waited for the Raise")
	select {
	case err := <-raised:
		t.Fatalf("the Raise answered before the Status: %v", err)
	default:
	}
	require.ErrorIs(t, <-raised, api.ErrNoMaster)
	require.ErrorIs(t, <-raisedDgram, api.ErrNoMaster)
}

// Package agenttest starts agents for tests outside package agent: a real
// agent in the test's own process, or a real API server over a fake
// handler (a "fake agent") for client and CLI tests that are about the
// unix-socket protocol, not the cluster.
package agenttest

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fmagent/fmagent/agent"
	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/config"
)

// Start validates cfg and runs an agent with it in this process (agent.Run
// in a goroutine, logging to log, or as Run does with nil) until the
// test ends; then it stops the agent and fails the test if Run returned an
// error. The returned stop does the same earlier (once) and returns Run's
// error.
func Start(t testing.TB, cfg *config.Config, log *slog.Logger) (stop func() error) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("agenttest: the test's configuration: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx, cfg, log) }()
	var err error
	stopped := false
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			err = <-done
		}
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("agent %d: Run: %v", cfg.NodeID, err)
		}
	})
	return stop
}

// ServeAPI serves h on a unix socket in a temporary directory with a real
// api.Server until the test ends, and returns the socket's path and a stop
// that shuts the server down earlier (as an agent going away: requests in
// flight are cancelled, connections closed after at most 5 s).
func ServeAPI(t testing.TB, h api.Handler) (path string, stop func()) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "fmagent.sock")
	return path, ServeAPIAt(t, h, path)
}

// ServeAPIAt is ServeAPI on a path of the caller's.
func ServeAPIAt(t testing.TB, h api.Handler, path string) (stop func()) {
	t.Helper()
	srv := &api.Server{Handler: h}
	ln, err := api.Listen(path, 0o660)
	if err != nil {
		t.Fatalf("agenttest: listening on %s: %v", path, err)
	}
	go srv.Serve(ln)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
		})
	}
	t.Cleanup(stop)
	return stop
}

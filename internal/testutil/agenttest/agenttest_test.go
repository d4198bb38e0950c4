package agenttest_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/api/apitest"
	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/internal/testutil"
	"github.com/fmagent/fmagent/internal/testutil/agenttest"
)

// A real single-node agent: it forms a cluster alone, answers on its
// socket, logs to the logger given, and stop ends it without an error.
func TestStart(t *testing.T) {
	n := testutil.NewNet(t)
	cfg := n.Config(1, t.TempDir())
	cfg.AllowAlone = true
	var logs testutil.SyncBuffer
	stop := agenttest.Start(t, cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
	ctx := testutil.Context(t, 20*time.Second)
	testutil.WaitFor(t, 15*time.Second, "node 1 master of its own cluster", func() bool {
		c, err := client.Dial(ctx, cfg.Paths.Socket)
		if err != nil {
			return false
		}
		defer c.Close()
		st, err := c.Status(ctx)
		return err == nil && st.Role == api.RoleMaster
	})
	assert.NotEmpty(t, logs.JSONLines(""), "the agent logs to the logger given")
	require.NoError(t, stop())
	require.NoError(t, stop(), "stop twice is stop once")
	_, err := client.Dial(ctx, cfg.Paths.Socket)
	require.Error(t, err, "nothing answers once stopped")
}

// A configuration the agent would refuse fails the test before any agent
// runs.
func TestStartRefusesBadConfig(t *testing.T) {
	cfg := testutil.NewNet(t).Config(1, t.TempDir())
	cfg.MaxAlarms = 99
	f := &fatal{TB: t}
	func() {
		defer func() { _ = recover() }()
		agenttest.Start(f, cfg, nil)
	}()
	assert.Contains(t, f.msg, "configuration")
}

type fatal struct {
	testing.TB
	msg string
}

func (f *fatal) Helper() {}
func (f *fatal) Fatalf(format string, args ...any) {
	f.msg = format
	panic("fatal") // as FailNow stops the goroutine
}

// The fake agent speaks the real protocol: a client's write reaches the
// handler and is answered.
func TestServeAPI(t *testing.T) {
	fake := apitest.NewHandler()
	path, stop := agenttest.ServeAPI(t, fake)
	ctx := testutil.Context(t, 10*time.Second)
	c, err := client.Dial(ctx, path)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Register(ctx, "svc/x", client.KindService)
	require.NoError(t, err)
	e, err := c.Get(ctx, "svc/x")
	require.NoError(t, err)
	assert.Equal(t, "svc/x", e.Name)
	stop()
	stop()
	_, err = c.Get(ctx, "svc/x")
	assert.Error(t, err, "the server is gone")
}

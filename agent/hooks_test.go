package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/hooks"
)

// The agent runs its notify hooks on real events: an alarm raised and
// cleared, a node lost; the hook gets the event in its environment and as
// JSON on stdin. The example script shipped under dist/ runs too, with a
// stand-in logger(1) on PATH recording what it would send to syslog.
func TestHooksRunOnEvents(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	example := filepath.Join(filepath.Dir(file), "..", "dist", "notify-logger.sh")
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	require.NoError(t, os.MkdirAll(bin, 0o755))
	syslog := filepath.Join(dir, "syslog")
	require.NoError(t, os.WriteFile(filepath.Join(bin, "logger"), []byte("#!/bin/sh\necho \"$*\" >> "+syslog+"\n"), 0o755))
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	out := filepath.Join(dir, "events")
	recorder := filepath.Join(dir, "record.sh")
	require.NoError(t, os.WriteFile(recorder, []byte("#!/bin/sh\n{ echo \"ENV $FMAGENT_EVENT $FMAGENT_ACTION $FMAGENT_ENTITY $FMAGENT_CAUSE $FMAGENT_SEVERITY\"; cat; } >> "+out+"\n"), 0o755))

	ga, gb, port := testNet(t)
	cfg1 := newTestConfig(t, 1, 4545, ga, gb, port, dir)
	cfg1.Hooks = []config.Hook{
		{Command: recorder, On: []string{"alarm", "node"}},
		{Command: example},
	}
	require.NoError(t, cfg1.Validate())
	cfg2 := newTestConfig(t, 2, 4545, ga, gb, port, dir)
	runAgent(t, cfg1)
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	go func() { done2 <- Run(ctx2, cfg2, nil) }()
	defer func() {
		cancel2()
		<-done2
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var c *client.Client
	require.Eventually(t, func() bool {
		var err error
		c, err = client.Dial(ctx, cfg1.Paths.Socket)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	defer c.Close()
	require.Eventually(t, func() bool {
		st, err := c.Status(ctx)
		return err == nil && st.Master != 0 && len(st.Members) == 2 && st.Members[0].State == "up" && st.Members[1].State == "up"
	}, 10*time.Second, 20*time.Millisecond)
	_, err := c.Register(ctx, "svc/hooked", client.KindService)
	require.NoError(t, err)
	_, err = c.Raise(ctx, "svc/hooked", "queue-full", client.SevCritical)
	require.NoError(t, err)
	_, err = c.Clear(ctx, "svc/hooked", "queue-full")
	require.NoError(t, err)
	cancel2() // node 2 stops (with a goodbye): node/2 down, node-left raised
	<-done2
	done2 <- nil

	read := func(p string) string {
		b, _ := os.ReadFile(p)
		return string(b)
	}
	require.Eventually(t, func() bool {
		s := read(out)
		return strings.Contains(s, "ENV alarm raise svc/hooked queue-full critical") &&
			strings.Contains(s, "ENV alarm clear svc/hooked queue-full") &&
			strings.Contains(s, "ENV node down node/2")
	}, 10*time.Second, 20*time.Millisecond, "recorded:\n%s", read(out))
	// The JSON on stdin is the event.
	var raised hooks.Event
	for _, ln := range strings.Split(read(out), "\n") {
		if strings.HasPrefix(ln, "{") && strings.Contains(ln, `"action":"raise"`) && strings.Contains(ln, "svc/hooked") {
			require.NoError(t, json.Unmarshal([]byte(ln), &raised))
		}
	}
	require.Equal(t, "svc/hooked", raised.Entity)
	require.Equal(t, "critical", raised.Severity)
	require.Equal(t, uint32(1), raised.Node)
	require.NotZero(t, raised.Seq)
	// Link events were not asked for by the recorder.
	require.NotContains(t, read(out), "ENV link")

	// The example script: syslog lines with priorities.
	require.Eventually(t, func() bool {
		s := read(syslog)
		return strings.Contains(s, "-p user.crit -- node 1 seq") && strings.Contains(s, "alarm queue-full (critical) raised on svc/hooked") &&
			strings.Contains(s, "node/2 is down")
	}, 10*time.Second, 20*time.Millisecond, "syslog:\n%s", read(syslog))
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests run the real fmagent binary, built once with a stamped
// version, as a separate process.

const stamped = "v9.9.9-test"

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func fmagentBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fmagent-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "fmagent")
		build := exec.Command("go", "build", "-ldflags", "-X github.com/fmagent/fmagent/version.Version="+stamped, "-o", binPath, ".")
		// Without cgo, as the package and make bins build it: with cgo
		// every thread of the agent comes from pthread_create.
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := build.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

// TestMain runs the test binary as fmagent itself when mainEnv is set (the
// daemon tests start it so), and otherwise the tests, removing the stamped
// binary they built.
func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func TestVersionFlag(t *testing.T) {
	out, err := exec.Command(fmagentBin(t), "-version").Output()
	require.NoError(t, err)
	assert.Regexp(t, `^fmagent `+stamped+` .*\(go1\.\S+ linux/\S+\)\n$`, string(out))
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	checkRun := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(fmagentBin(t), args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		return code, stdout.String(), stderr.String()
	}

	good := write("good.toml", "node_id = 3\n[paths]\nstate_dir = \"/srv/fm\"\n")
	code, out, errOut := checkRun("-check-config", good)
	assert.Equal(t, 0, code, errOut)
	assert.Equal(t, good+": ok (node 3, cluster 1, profile 20ms: 4ms × 5, socket /srv/fm/fmagent.sock, state /srv/fm)\n", out)

	// Every problem, one line each, file:line:col first.
	bad := write("bad.toml", "node_id = 0\n\n[timing]\nprofile = \"custom\"\ninterval = \"10ms\"\nmisses = 1\n")
	code, out, errOut = checkRun("-check-config", bad)
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	require.Len(t, lines, 2, errOut)
	assert.Regexp(t, `^fmagent: `+bad+`:1:\d+: node_id = 0: must be at least 1`, lines[0])
	assert.Regexp(t, `^fmagent: `+bad+`:6:\d+: timing.misses = 1: must be at least 3`, lines[1])

	// A syntax error has its column.
	syn := write("syntax.toml", "node_id = 1\npriority = = 3\n")
	code, _, errOut = checkRun("-check-config", syn)
	assert.Equal(t, 1, code)
	assert.Regexp(t, `^fmagent: `+syn+`:2:\d+: `, errOut)

	// What only start would have found: the key file, the plugins' args.
	key := write("short.key", "short\n")
	require.NoError(t, os.Chmod(key, 0o600)) // a key file others may read is refused first
	late := write("late.toml", "node_id = 1\nkey_file = \""+key+"\"\n\n[[plugins]]\nname = \"threshold\"\nargs = { k = \"zero\" }\n\n[[plugins]]\nname = \"nosuch\"\n")
	code, _, errOut = checkRun("-check-config", late)
	assert.Equal(t, 1, code)
	lines = strings.Split(strings.TrimSpace(errOut), "\n")
	require.Len(t, lines, 3, errOut)
	assert.Regexp(t, `^fmagent: `+late+`:2:\d+: key_file = ".*short.key": .*5 bytes, at least 16`, lines[0])
	assert.Regexp(t, `^fmagent: `+late+`:4: plugins\[0\] = "threshold": `, lines[1])
	assert.Regexp(t, `^fmagent: `+late+`:8: plugins\[1\] = "nosuch": `, lines[2])

	code, _, errOut = checkRun("-check-config", filepath.Join(dir, "missing.toml"))
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "no such file")
}

func httpGet(url string) (int, string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestSIGHUPReloads runs a single-node agent and sends it SIGHUP three
// times: with a changed file (log level, plugin chain, metrics address and
// a key that needs a restart), with a broken file, and with the same file.
// It stays up throughout (issue 11: SIGHUP killed it, exit 129), and the
// changes take effect: debug lines appear, the metrics move to the new
// port, and a fault report meets the new chain. SIGTERM then stops it
// cleanly, removing the socket and the segment.
func TestSIGHUPReloads(t *testing.T) {
	bin := fmagentBin(t)
	dir := t.TempDir()
	port := 20000 + os.Getpid()%20000
	x := 1 + os.Getpid()%250
	shm := fmt.Sprintf("fmagent-hup-test-%d", os.Getpid())
	m1, m2 := testutil.FreeTCPPort(t), testutil.FreeTCPPort(t)
	conf := filepath.Join(dir, "fmagent.toml")
	sock := filepath.Join(dir, "state", "fmagent.sock")
	worker := `
[[daemons]]
name = "worker"
command = "/bin/sleep"
args = ["300"]
`
	writeConf := func(level string, metricsPort int, k string, prio int, daemons string) {
		body := fmt.Sprintf(`node_id = 1
cluster_id = %d
priority = %d
allow_alone = true
log_level = %q

[networks.a]
group = "239.254.%d.1"
port = %d
[networks.b]
group = "239.254.%d.2"
port = %d

[paths]
state_dir = %q
shm = %q

[metrics]
listen = "127.0.0.1:%d"

[[plugins]]
name = "threshold"
args = { k = %q, m = "1" }

[[plugins]]
name = "passthrough"
`, 50000+os.Getpid()%10000, prio, level, x, port, x, port, filepath.Join(dir, "state"), shm, metricsPort, k) + daemons
		require.NoError(t, os.WriteFile(conf, []byte(body), 0o644))
	}
	writeConf("info", m1, "1", 100, "")

	t.Cleanup(func() { os.Remove(filepath.Join("/dev/shm", shm)) })
	p := testutil.StartProcess(t, exec.Command(bin, "-config", conf))
	cmd, logs := p.Cmd, &p.Out
	alive := func() {
		t.Helper()
		if err, exited := p.Exited(); exited {
			t.Fatalf("the agent exited: %v\n%s", err, logs.String())
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var c *client.Client
	testutil.WaitFor(t, 10*time.Second, "the socket", func() bool {
		var err error
		c, err = client.Dial(ctx, sock)
		return err == nil
	})
	defer c.Close()
	testutil.WaitFor(t, 10*time.Second, "master", func() bool {
		st, err := c.Status(ctx)
		return err == nil && st.Role == api.RoleMaster
	})
	// The version make stamps, in the status and in the heartbeats (this
	// node's row of the members); the guard's loops from its first step,
	// taken as it starts (a period after it until 4 December 2026).
	st0, err := c.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, stamped, st0.Version, "the stamped version in status")
	require.NotEmpty(t, st0.Members)
	assert.Equal(t, stamped, st0.Members[0].Version, "this node's version in its members' row")
	require.NotNil(t, st0.Watchdog)
	assert.NotEmpty(t, st0.Watchdog.Loops, "the guard's loops listed from its start")
	assert.False(t, st0.Watchdog.LastKick.IsZero(), "kicked (or judged) at once: the last kick is known")
	code, body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/healthz", m1))
	require.NoError(t, err)
	assert.Equal(t, 200, code, body)

	// k = 1: one fault report marks the entity down.
	_, err = c.Register(ctx, "svc/a", client.KindService)
	require.NoError(t, err)
	_, err = c.Report(ctx, "svc/a", "broken", client.SevMajor)
	require.NoError(t, err)
	e, err := c.Get(ctx, "svc/a")
	require.NoError(t, err)
	assert.Equal(t, api.StateDown, e.State, "threshold k=1 before the reload")

	// 1. A changed file, with a daemon to supervise.
	writeConf("debug", m2, "1000", 150, worker)
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	testutil.WaitFor(t, 5*time.Second, "the reload", func() bool { return strings.Contains(logs.String(), "reload: configuration applied") })
	alive()
	l := logs.String()
	assert.Contains(t, l, `msg="SIGHUP: log level changed" from=INFO to=DEBUG`)
	assert.Contains(t, l, `msg="reload: plugin chain replaced (report history kept)" node=1 chain="[threshold passthrough]"`)
	assert.Contains(t, l, fmt.Sprintf(`addr=http://127.0.0.1:%d/metrics`, m2))
	assert.Contains(t, l, `level=WARN msg="reload: changed in the configuration, takes effect at the next restart" node=1 key=priority`)
	assert.Contains(t, l, `applied="[log_level plugins daemons metrics]" needs_restart=[priority]`)
	assert.Contains(t, l, `msg="reload: daemons" node=1 added=[worker] removed=[] changed=[]`)
	var workerPID int32
	testutil.WaitFor(t, 5*time.Second, "the new daemon up in the table", func() bool {
		e, err := c.Get(ctx, "node/1/proc/worker")
		ds, derr := c.Daemons(ctx)
		if err != nil || derr != nil || e.State != api.StateUp || len(ds) != 1 {
			return false
		}
		workerPID = ds[0].PID
		return ds[0].State == "running"
	})
	t.Cleanup(func() { syscall.Kill(int(workerPID), syscall.SIGKILL) })
	_, _, err = httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", m1))
	assert.Error(t, err, "the old metrics address is closed")
	code, body, err = httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", m2))
	require.NoError(t, err)
	assert.Equal(t, 200, code)
	assert.Contains(t, body, "fmagent_role 3")
	// k = 1000: a report now passes threshold and passthrough raises it.
	_, err = c.Register(ctx, "svc/b", client.KindService)
	require.NoError(t, err)
	_, err = c.Report(ctx, "svc/b", "broken", client.SevMajor)
	require.NoError(t, err)
	e, err = c.Get(ctx, "svc/b")
	require.NoError(t, err)
	assert.Equal(t, api.StateUp, e.State, "threshold k=1000 after the reload")
	require.Len(t, e.Alarms, 1, "passthrough raised the report")
	st, err := c.Status(ctx)
	require.NoError(t, err)
	require.Len(t, st.Members, 1)
	assert.Equal(t, uint8(100), st.Members[0].Priority, "priority needs a restart")

	// 2. A broken file: logged with its line, nothing changes.
	require.NoError(t, os.WriteFile(conf, []byte("node_id = 1\n[timing]\nmisses = \"x\"\n"), 0o644))
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	testutil.WaitFor(t, 5*time.Second, "the refusal", func() bool { return strings.Contains(logs.String(), "configuration refused") })
	alive()
	assert.Regexp(t, `level=ERROR msg="SIGHUP: configuration refused; keeping the one in force" err=".*`+conf+`:3`, logs.String())
	code, _, err = httpGet(fmt.Sprintf("http://127.0.0.1:%d/healthz", m2))
	require.NoError(t, err)
	assert.Equal(t, 200, code)

	// 3. The same file as in force: nothing to do.
	writeConf("debug", m2, "1000", 100, worker)
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	testutil.WaitFor(t, 5*time.Second, "no-op reload", func() bool {
		return strings.Contains(logs.String(), "reload: the configuration is unchanged") ||
			strings.Count(logs.String(), "reload: configuration applied") > 1
	})
	alive()
	assert.Contains(t, logs.String(), "reload: the configuration is unchanged")

	// 4. The daemon removed: this agent started it, so it is stopped, and
	// its entity leaves the table.
	writeConf("debug", m2, "1000", 100, "")
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	var getErr, killErr error
	if !testutil.Within(10*time.Second, func() bool {
		_, getErr = c.Get(ctx, "node/1/proc/worker")
		killErr = syscall.Kill(int(workerPID), 0)
		return errors.Is(getErr, api.ErrNotFound) && killErr != nil
	}) {
		t.Fatalf("the daemon not stopped and unregistered: get: %v; kill -0 %d: %v\n%s", getErr, workerPID, killErr, logs.String())
	}
	alive()
	// The log is written within logFlushEvery of the line (logq).
	testutil.WaitFor(t, 5*time.Second, "the reload's daemons line", func() bool {
		return strings.Contains(logs.String(), `msg="reload: daemons" node=1 added=[] removed=[worker] changed=[]`)
	})

	// SIGTERM: clean exit, nothing left behind.
	c.Close()
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	err, exited := p.Wait(10 * time.Second)
	require.True(t, exited, "no exit after SIGTERM\n%s", logs.String())
	require.NoError(t, err, logs.String())
	assert.NoFileExists(t, sock)
	assert.NoFileExists(t, filepath.Join("/dev/shm", shm))
	assert.Contains(t, logs.String(), "msg=stopped")
}

// TestFatalSignalsLog: SIGUSR1 (which would be ignored silently) is logged
// and the agent stays up; SIGABRT (systemd's watchdog) is logged before the
// runtime's goroutine dump, and the process ends (exit status 2, as the Go
// runtime ends after a fatal signal's dump).
func TestFatalSignalsLog(t *testing.T) {
	bin := fmagentBin(t)
	dir := t.TempDir()
	shm := fmt.Sprintf("fmagent-abrt-test-%d", os.Getpid())
	x := 1 + (os.Getpid()+7)%250
	port := 20000 + (os.Getpid()+7)%20000
	conf := filepath.Join(dir, "fmagent.toml")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(`node_id = 1
cluster_id = %d
allow_alone = true
[networks.a]
group = "239.253.%d.1"
port = %d
[networks.b]
group = "239.253.%d.2"
port = %d
[paths]
state_dir = %q
shm = %q
[metrics]
listen = ""
`, 60000+os.Getpid()%10000, x, port, x, port, filepath.Join(dir, "state"), shm)), 0o644))
	t.Cleanup(func() { os.Remove(filepath.Join("/dev/shm", shm)) })
	p := testutil.StartProcess(t, exec.Command(bin, "-config", conf))
	cmd, logs := p.Cmd, &p.Out
	testutil.WaitFor(t, 10*time.Second, "serving", func() bool { return strings.Contains(logs.String(), "msg=serving") })

	require.NoError(t, cmd.Process.Signal(syscall.SIGUSR1))
	testutil.WaitFor(t, 5*time.Second, "SIGUSR1 logged", func() bool {
		return strings.Contains(logs.String(), `msg="signal ignored" signal="user defined signal 1"`)
	})
	if err, exited := p.Wait(200 * time.Millisecond); exited {
		t.Fatalf("SIGUSR1 ended the agent: %v", err)
	}

	require.NoError(t, cmd.Process.Signal(syscall.SIGABRT))
	err, exited := p.Wait(10 * time.Second)
	require.True(t, exited, "no exit after SIGABRT\n%s", logs.String())
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	// The Go runtime's exit after a signal's stack dump.
	assert.Equal(t, 2, ee.ExitCode())
	l := logs.String()
	assert.Contains(t, l, "SIGABRT: abort")
	i := strings.Index(l, `level=ERROR msg="SIGABRT (systemd's watchdog`)
	j := strings.Index(l, "goroutine ")
	require.True(t, i >= 0, "the reason is logged:\n%s", l)
	require.True(t, j > i, "then every goroutine's stack")
}

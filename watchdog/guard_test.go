package watchdog

import (
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/internal/testutil"
)

// A device and systemd's watchdog are kicked together, from the same
// decision; a stalled loop stops both, says which loop, and they resume
// when it makes progress again.
func TestGuardStalledLoopStopsKicks(t *testing.T) {
	dev := &Fake{T: 30 * time.Second, Label: "/dev/watchdog0"}
	sd := &Fake{T: 9 * time.Second, Label: "systemd"}
	var log testutil.SyncBuffer
	h := &Health{}
	recv := h.Loop("receive-a", false)
	timer := h.Loop("timer", true)
	g := &Guard{Kickers: []Kicker{dev, sd}, Health: h, Log: slog.New(slog.NewTextHandler(&log, nil))}
	assert.Equal(t, 3*time.Second, PeriodFor(g.Kickers), "a third of the shortest timeout")

	now := time.Now()
	timer.Beat()
	require.True(t, g.Step(now))
	assert.Equal(t, 1, dev.Kicks())
	assert.Equal(t, 1, sd.Kicks())
	st := g.Status()
	assert.True(t, st.Kicking)
	assert.Equal(t, 9*time.Second, st.Timeout)
	assert.Equal(t, []string{"/dev/watchdog0", "systemd"}, st.Kickers)

	// The receive loop took work 5 s ago and never came back (a lock it
	// waits for, say).
	recv.busy.Store(now.Add(-5 * time.Second).UnixNano())
	timer.Beat()
	require.False(t, g.Step(now))
	assert.Equal(t, 1, dev.Kicks(), "no kick while a loop is stalled")
	assert.Equal(t, 1, sd.Kicks())
	st = g.Status()
	assert.False(t, st.Kicking)
	assert.Equal(t, []string{"receive-a"}, st.Stalled)
	assert.Contains(t, st.Reason, "stalled loop: receive-a")
	assert.Contains(t, log.String(), "stalled loop: receive-a")
	for _, l := range st.Loops {
		assert.Equal(t, l.Name != "receive-a", l.Healthy, l.Name)
	}

	// Back to waiting for input: kicks resume.
	recv.Idle()
	timer.Beat()
	require.True(t, g.Step(time.Now()))
	assert.Equal(t, 2, dev.Kicks())
	assert.Equal(t, 2, sd.Kicks())
	assert.Contains(t, log.String(), "kicking the watchdog again")

	// A periodic loop that stops going round stalls too.
	timer.last.Store(time.Now().Add(-time.Minute).UnixNano())
	require.False(t, g.Step(time.Now()))
	assert.Equal(t, []string{"timer"}, g.Status().Stalled)

	require.NoError(t, g.Close())
	assert.True(t, dev.MagicClosed(), "a clean stop ends with the magic close")
}

// Check (the core's fence decision) and Hold (an escalated daemon) stop
// the kicks with their reason.
func TestGuardHolds(t *testing.T) {
	dev := &Fake{T: 3 * time.Second}
	fence := ""
	g := &Guard{Kickers: []Kicker{dev}, Check: func(time.Time) string { return fence }}
	require.True(t, g.Step(time.Now()))
	fence = "self-fence: isolated"
	require.False(t, g.Step(time.Now()))
	assert.Equal(t, "self-fence: isolated", g.Status().Reason)
	fence = ""
	g.Hold("daemon/db", "critical daemon down")
	require.False(t, g.Step(time.Now()))
	assert.Equal(t, "daemon/db: critical daemon down", g.Status().Reason)
	g.Release("daemon/db")
	require.True(t, g.Step(time.Now()))
	assert.Equal(t, 2, dev.Kicks())
	assert.Equal(t, uint64(2), g.Status().Kicks)
}

// Run kicks on its own every period, both watchdogs, the real systemd
// one included (a datagram on NOTIFY_SOCKET).
func TestGuardRunKicksSystemdAndDevice(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	require.NoError(t, err)
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "300000")
	t.Setenv("WATCHDOG_PID", "")
	sd, err := NewSystemd()
	require.NoError(t, err)
	f := newFake(t)
	dev, err := OpenDevice(f.path, DeviceOptions{Timeout: time.Second, Ioctl: f.ioctl})
	require.NoError(t, err)
	g := &Guard{Kickers: []Kicker{dev, sd}}
	done := make(chan struct{})
	go g.Run(done)
	b := make([]byte, 64)
	for i := 0; i < 3; i++ {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
		n, err := c.Read(b)
		require.NoError(t, err)
		assert.Equal(t, "WATCHDOG=1", string(b[:n]))
	}
	close(done)
	require.NoError(t, g.Close())
	kicks := strings.Count(strings.Join(f.calls, " "), "KEEPALIVE")
	assert.GreaterOrEqual(t, kicks, 3, "the device is kicked with systemd")
	assert.Equal(t, "V", f.written(t))
}

// The real device, opt-in (FMAGENT_TEST_WATCHDOG=1): /dev/watchdog0 or
// /dev/watchdog, after `modprobe softdog` if neither exists. A long timeout
// and the magic close at the end: the machine is never reset (unless the
// driver was built with NOWAYOUT, which the test refuses to risk: it reads
// the driver's identity and options first).
func TestRealDeviceOptIn(t *testing.T) {
	if os.Getenv("FMAGENT_TEST_WATCHDOG") != "1" {
		t.Skip("opt-in: FMAGENT_TEST_WATCHDOG=1 opens the real watchdog device (softdog loaded if none)")
	}
	path, err := ResolvePath(Auto)
	if err != nil {
		out, merr := exec.Command("modprobe", "softdog", "soft_noboot=1").CombinedOutput()
		require.NoError(t, merr, "modprobe softdog: %s", out)
		require.Eventually(t, func() bool { path, err = ResolvePath(Auto); return err == nil }, 5*time.Second, 50*time.Millisecond)
	}
	// NOWAYOUT drivers ignore the magic close: opening one would reset the
	// machine when the test ends. The watchdog core says so per device.
	for _, f := range []string{"/sys/class/watchdog/" + filepath.Base(path) + "/nowayout", "/sys/module/softdog/parameters/nowayout"} {
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) != "0" {
			t.Fatalf("%s = %s: the magic close would not disarm it; refusing to open %s", f, strings.TrimSpace(string(b)), path)
		}
	}
	d, err := OpenDevice(path, DeviceOptions{Timeout: 120 * time.Second})
	require.NoError(t, err)
	defer d.Close()
	t.Logf("%s: identity %q, timeout %v, options %#x, boot status %s", path, d.Info().Identity, d.Timeout(), d.Info().Options, d.Info().BootStatusString())
	assert.Equal(t, 120*time.Second, d.Timeout())
	g := &Guard{Kickers: []Kicker{d}}
	require.True(t, g.Step(time.Now()))
	require.True(t, g.Step(time.Now()))
	require.NoError(t, g.Close())
}

// Run steps at once, not a period after it starts: the status lists the
// loops and the kick from the start (with a period of an hour, the first
// step would otherwise come an hour later, and Status said "kicking" of a
// guard that had not decided anything and listed no loop).
func TestGuardRunStepsAtOnce(t *testing.T) {
	h := &Health{}
	h.Loop("realtime", true)
	f := newFake(t)
	dev, err := OpenDevice(f.path, DeviceOptions{Timeout: time.Second, Ioctl: f.ioctl})
	require.NoError(t, err)
	g := &Guard{Kickers: []Kicker{dev}, Health: h, Period: time.Hour}
	keepalives := func() int { return strings.Count(strings.Join(f.calls, " "), "KEEPALIVE") }
	opened := keepalives()
	before := g.Status()
	require.Empty(t, before.Loops, "nothing decided before Run")
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() { defer close(stopped); g.Run(done) }()
	require.Eventually(t, func() bool { return g.Status().Kicks == 1 }, 5*time.Second, time.Millisecond, "kicked at once")
	st := g.Status()
	require.Len(t, st.Loops, 1)
	assert.Equal(t, "realtime", st.Loops[0].Name)
	assert.True(t, st.Loops[0].Healthy)
	assert.False(t, st.LastKick.IsZero())
	close(done)
	<-stopped
	assert.Equal(t, opened+1, keepalives(), "the device kicked once by the guard")
	require.NoError(t, g.Close())
}

// A loop's window counts from the guard's start, not from the loop's
// registration: an agent registers its loops, opens its sockets, its
// shared memory and its API, then starts them and the guard. On a loaded
// machine that took over a window, the guard's first step found the
// real-time loop "stalled" before it had run, and /healthz said so for a
// period (dist's TestCompletion, under two chaos runs). A loop that then
// never goes round is still a stall, one window on.
func TestGuardCountsLoopsFromItsStart(t *testing.T) {
	h := &Health{}
	rt := h.Loop("realtime", true)
	time.Sleep(60 * time.Millisecond) // the agent's start, longer than the window
	g := &Guard{Health: h, Period: time.Hour, Window: 40 * time.Millisecond}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() { defer close(stopped); g.Run(done) }()
	require.Eventually(t, func() bool { return len(g.Status().Loops) == 1 }, 5*time.Second, time.Millisecond, "the first step")
	st := g.Status()
	assert.True(t, st.Loops[0].Healthy, "not stalled at the start: %+v", st)
	assert.True(t, st.Kicking, st.Reason)
	close(done)
	<-stopped

	time.Sleep(60 * time.Millisecond) // and now it never went round
	g.Step(time.Now())
	st = g.Status()
	assert.False(t, st.Loops[0].Healthy)
	assert.Equal(t, "stalled loop: realtime", st.Reason)
	rt.Beat()
	g.Step(time.Now())
	assert.True(t, g.Status().Kicking, "going round again")
}

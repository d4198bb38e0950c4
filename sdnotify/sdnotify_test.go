package sdnotify

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// listen opens a unixgram socket the way systemd does and points
// NOTIFY_SOCKET at it.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	b := make([]byte, 4096)
	n, err := c.Read(b)
	require.NoError(t, err)
	return string(b[:n])
}

func TestNotifyPath(t *testing.T) {
	c := listen(t, filepath.Join(t.TempDir(), "notify.sock"))
	for _, tc := range []struct {
		f    func() (bool, error)
		want string
	}{
		{Ready, "READY=1"},
		{Watchdog, "WATCHDOG=1"},
		{Stopping, "STOPPING=1"},
		{func() (bool, error) { return Status("joining cluster 1") }, "STATUS=joining cluster 1"},
		{func() (bool, error) { return Notify("STATUS=x\nREADY=1") }, "STATUS=x\nREADY=1"},
	} {
		sent, err := tc.f()
		require.NoError(t, err)
		assert.True(t, sent)
		assert.Equal(t, tc.want, recv(t, c))
	}
}

func TestNotifyAbstract(t *testing.T) {
	c := listen(t, fmt.Sprintf("@fmagent-sdnotify-test-%d-%d", os.Getpid(), rand.Int64()))
	sent, err := Ready()
	require.NoError(t, err)
	assert.True(t, sent)
	assert.Equal(t, "READY=1", recv(t, c))
}

func TestNotifyUnset(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	sent, err := Ready()
	assert.NoError(t, err)
	assert.False(t, sent)
}

func TestNotifyErrors(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "relative.sock")
	sent, err := Ready()
	assert.Error(t, err)
	assert.False(t, sent)

	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody-listens"))
	sent, err = Ready()
	assert.Error(t, err)
	assert.False(t, sent)
}

func TestWatchdogInterval(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "")
	t.Setenv("WATCHDOG_PID", "")
	_, ok := WatchdogInterval()
	assert.False(t, ok)

	t.Setenv("WATCHDOG_USEC", "3000000")
	d, ok := WatchdogInterval()
	assert.True(t, ok)
	assert.Equal(t, 3*time.Second, d)

	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	d, ok = WatchdogInterval()
	assert.True(t, ok)
	assert.Equal(t, 3*time.Second, d)

	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()+1))
	_, ok = WatchdogInterval()
	assert.False(t, ok, "the watchdog is another process's")

	t.Setenv("WATCHDOG_PID", "")
	for _, bad := range []string{"0", "-5", "abc", "1.5"} {
		t.Setenv("WATCHDOG_USEC", bad)
		_, ok = WatchdogInterval()
		assert.False(t, ok, bad)
	}
}

package watchdog

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// fakeDevice is a regular file standing in for /dev/watchdog (a test must
// never open the real device: that arms it and would reset the machine),
// with a fake ioctl that records the sequence.
type fakeDevice struct {
	path      string
	calls     []string
	driverSec int32 // what the "driver" sets for a requested timeout
	failOn    uint
}

func newFake(t *testing.T) *fakeDevice {
	t.Helper()
	p := filepath.Join(t.TempDir(), "watchdog")
	require.NoError(t, os.WriteFile(p, nil, 0o600))
	require.False(t, strings.HasPrefix(p, "/dev/"), "never a real device")
	return &fakeDevice{path: p, driverSec: 60}
}

func (f *fakeDevice) ioctl(fd uintptr, req uint, arg *int32) error {
	if fd == 0 {
		return errors.New("no fd")
	}
	if req == f.failOn {
		return unix.ENOTTY
	}
	switch req {
	case unix.WDIOC_SETTIMEOUT:
		f.calls = append(f.calls, "SETTIMEOUT "+itoa(*arg))
		f.driverSec = *arg
		if *arg > 100 { // a driver that caps the timeout writes back its own
			f.driverSec = 100
			*arg = 100
		}
	case unix.WDIOC_GETTIMEOUT:
		f.calls = append(f.calls, "GETTIMEOUT")
		*arg = f.driverSec
	case unix.WDIOC_KEEPALIVE:
		f.calls = append(f.calls, "KEEPALIVE")
	default:
		f.calls = append(f.calls, "unknown")
		return unix.ENOTTY
	}
	return nil
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

func (f *fakeDevice) written(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(f.path)
	require.NoError(t, err)
	return string(b)
}

func TestIoctlNumbers(t *testing.T) {
	// <linux/watchdog.h>: _IOR('W', 5, int), _IOWR('W', 6, int), _IOR('W', 7, int).
	ior := func(nr uint) uint { return 2<<30 | 4<<16 | 'W'<<8 | nr }
	iowr := func(nr uint) uint { return 3<<30 | 4<<16 | 'W'<<8 | nr }
	assert.Equal(t, ior(5), uint(wdiocKeepalive))
	assert.Equal(t, iowr(6), uint(wdiocSetTimeout))
	assert.Equal(t, ior(7), uint(wdiocGetTimeout))
}

func TestDeviceSequence(t *testing.T) {
	f := newFake(t)
	d, err := OpenDevice(f.path, DeviceOptions{Timeout: 4500 * time.Millisecond, ioctl: f.ioctl})
	require.NoError(t, err)
	assert.Equal(t, []string{"SETTIMEOUT 5", "GETTIMEOUT", "KEEPALIVE"}, f.calls, "timeout rounded up to whole seconds")
	assert.Equal(t, 5*time.Second, d.Timeout())
	assert.Equal(t, 5*time.Second/3, KickPeriod(d))

	require.NoError(t, d.Kick())
	require.NoError(t, d.Kick())
	assert.Equal(t, []string{"SETTIMEOUT 5", "GETTIMEOUT", "KEEPALIVE", "KEEPALIVE", "KEEPALIVE"}, f.calls)
	assert.Empty(t, f.written(t), "nothing written while running")

	require.NoError(t, d.Close())
	assert.Equal(t, "V", f.written(t), "a clean stop writes the magic 'V'")
	assert.ErrorIs(t, d.Kick(), ErrClosed)
	require.NoError(t, d.Close(), "Close twice")
	assert.Equal(t, "V", f.written(t))
}

func TestDeviceDriverTimeout(t *testing.T) {
	f := newFake(t)
	d, err := OpenDevice(f.path, DeviceOptions{Timeout: 300 * time.Second, ioctl: f.ioctl})
	require.NoError(t, err)
	assert.Equal(t, 100*time.Second, d.Timeout(), "the timeout the driver chose")
	require.NoError(t, d.Close())

	// No timeout asked: the driver's stays.
	f = newFake(t)
	d, err = OpenDevice(f.path, DeviceOptions{ioctl: f.ioctl})
	require.NoError(t, err)
	assert.Equal(t, []string{"GETTIMEOUT", "KEEPALIVE"}, f.calls)
	assert.Equal(t, 60*time.Second, d.Timeout())
	require.NoError(t, d.Close())
}

func TestDeviceKeepArmed(t *testing.T) {
	f := newFake(t)
	d, err := OpenDevice(f.path, DeviceOptions{KeepArmed: true, ioctl: f.ioctl})
	require.NoError(t, err)
	require.NoError(t, d.Close())
	assert.Empty(t, f.written(t), "KeepArmed: no magic close")

	f = newFake(t)
	d, err = OpenDevice(f.path, DeviceOptions{ioctl: f.ioctl})
	require.NoError(t, err)
	require.NoError(t, d.CloseArmed())
	assert.Empty(t, f.written(t), "CloseArmed: no magic close")
}

// A failed setup disarms the device before returning the error, even with
// KeepArmed: a start that failed must not reset the machine.
func TestDeviceSetupFailureDisarms(t *testing.T) {
	for _, req := range []uint{unix.WDIOC_SETTIMEOUT, unix.WDIOC_GETTIMEOUT, unix.WDIOC_KEEPALIVE} {
		f := newFake(t)
		f.failOn = req
		d, err := OpenDevice(f.path, DeviceOptions{Timeout: 10 * time.Second, KeepArmed: true, ioctl: f.ioctl})
		require.Error(t, err)
		assert.Nil(t, d)
		assert.ErrorIs(t, err, unix.ENOTTY)
		assert.Contains(t, err.Error(), f.path)
		assert.Equal(t, "V", f.written(t), "disarmed after a failed setup (req %#x)", req)
	}
	f := newFake(t)
	f.driverSec = 0
	_, err := OpenDevice(f.path, DeviceOptions{ioctl: f.ioctl})
	require.Error(t, err)
	assert.Equal(t, "V", f.written(t))
}

func TestDeviceKickError(t *testing.T) {
	f := newFake(t)
	d, err := OpenDevice(f.path, DeviceOptions{ioctl: f.ioctl})
	require.NoError(t, err)
	f.failOn = unix.WDIOC_KEEPALIVE
	err = d.Kick()
	assert.ErrorIs(t, err, unix.ENOTTY)
	assert.Contains(t, err.Error(), "WDIOC_KEEPALIVE")
	require.NoError(t, d.Close())
}

func TestDeviceMissing(t *testing.T) {
	_, err := OpenDevice(filepath.Join(t.TempDir(), "nope"), DeviceOptions{ioctl: func(uintptr, uint, *int32) error {
		t.Fatal("no ioctl on a device that failed to open")
		return nil
	}})
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// The real ioctl on a regular file fails (ENOTTY): the device path is
// exercised end to end without a device, and the file gets the magic close.
func TestRealIoctlOnRegularFile(t *testing.T) {
	f := newFake(t)
	_, err := OpenDevice(f.path, DeviceOptions{})
	require.Error(t, err)
	assert.ErrorIs(t, err, unix.ENOTTY)
	assert.Equal(t, "V", f.written(t))
}

func TestSystemd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	require.NoError(t, err)
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "6000000")
	t.Setenv("WATCHDOG_PID", "")

	w, err := Open("", DeviceOptions{})
	require.NoError(t, err)
	s, ok := w.(*Systemd)
	require.True(t, ok, "with WATCHDOG_USEC and no device: systemd's watchdog, got %T", w)
	assert.Equal(t, 6*time.Second, s.Timeout())
	assert.Equal(t, 2*time.Second, KickPeriod(w))
	require.NoError(t, w.Kick())
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	b := make([]byte, 64)
	n, err := c.Read(b)
	require.NoError(t, err)
	assert.Equal(t, "WATCHDOG=1", string(b[:n]))
	require.NoError(t, w.Close())

	// NOTIFY_SOCKET gone: kicking fails loudly.
	t.Setenv("NOTIFY_SOCKET", "")
	assert.Error(t, w.Kick())
}

func TestOpenNoop(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "")
	w, err := Open("", DeviceOptions{})
	require.NoError(t, err)
	assert.Equal(t, Noop{}, w)
	assert.NoError(t, w.Kick())
	assert.NoError(t, w.Close())
	assert.Zero(t, KickPeriod(w))
	_, err = NewSystemd()
	assert.ErrorIs(t, err, ErrNoSystemdWatchdog)
}

func TestOpenDevicePath(t *testing.T) {
	f := newFake(t)
	w, err := Open(f.path, DeviceOptions{ioctl: f.ioctl})
	require.NoError(t, err)
	_, ok := w.(*Device)
	assert.True(t, ok)
	require.NoError(t, w.Close())
	assert.Equal(t, "V", f.written(t))
}

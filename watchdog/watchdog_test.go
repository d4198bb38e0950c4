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
	"unsafe"

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
	boot      int32 // WDIOC_GETBOOTSTATUS
	failOn    uint  // this ioctl fails with ENOTTY
	notty     map[uint]bool
}

func newFake(t *testing.T) *fakeDevice {
	t.Helper()
	p := filepath.Join(t.TempDir(), "watchdog")
	require.NoError(t, os.WriteFile(p, nil, 0o600))
	require.False(t, strings.HasPrefix(p, "/dev/"), "never a real device")
	return &fakeDevice{path: p, driverSec: 60}
}

func (f *fakeDevice) ioctl(fd uintptr, req uint, p unsafe.Pointer) error {
	if fd == 0 {
		return errors.New("no fd")
	}
	if req == f.failOn || f.notty[req] {
		return unix.ENOTTY
	}
	arg := (*int32)(p)
	switch req {
	case unix.WDIOC_GETSUPPORT:
		f.calls = append(f.calls, "GETSUPPORT")
		wi := (*unix.WatchdogInfo)(p)
		wi.Options = unix.WDIOF_SETTIMEOUT | unix.WDIOF_MAGICCLOSE | unix.WDIOF_KEEPALIVEPING
		copy(wi.Identity[:], "Fake Watchdog")
	case unix.WDIOC_GETBOOTSTATUS:
		f.calls = append(f.calls, "GETBOOTSTATUS")
		*arg = f.boot
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
	// <linux/watchdog.h>: _IOR('W', 5, int), _IOWR('W', 6, int), _IOR('W', 7, int),
	// _IOR('W', 0, struct watchdog_info) (40 bytes), _IOR('W', 2, int).
	ior := func(nr, size uint) uint { return 2<<30 | size<<16 | 'W'<<8 | nr }
	iowr := func(nr uint) uint { return 3<<30 | 4<<16 | 'W'<<8 | nr }
	assert.Equal(t, ior(5, 4), uint(wdiocKeepalive))
	assert.Equal(t, iowr(6), uint(wdiocSetTimeout))
	assert.Equal(t, ior(7, 4), uint(wdiocGetTimeout))
	assert.Equal(t, ior(0, 40), uint(wdiocGetSupport))
	assert.Equal(t, ior(2, 4), uint(wdiocGetBootStatus))
}

func TestDeviceSequence(t *testing.T) {
	f := newFake(t)
	d, err := OpenDevice(f.path, DeviceOptions{Timeout: 4500 * time.Millisecond, Ioctl: f.ioctl})
	require.NoError(t, err)
	assert.Equal(t, []string{"GETSUPPORT", "GETBOOTSTATUS", "SETTIMEOUT 5", "GETTIMEOUT", "KEEPALIVE"}, f.calls, "timeout rounded up to whole seconds")
	assert.Equal(t, 5*time.Second, d.Timeout())
	assert.Equal(t, 5*time.Second/3, PeriodFor([]Kicker{d}))
	assert.Equal(t, "Fake Watchdog", d.Info().Identity)
	assert.True(t, d.Info().BootStatusKnown)
	assert.False(t, d.Info().WatchdogReset())
	assert.Equal(t, "normal", d.Info().BootStatusString())
	assert.Equal(t, f.path, d.Name())

	require.NoError(t, d.Kick())
	require.NoError(t, d.Kick())
	assert.Equal(t, []string{"GETSUPPORT", "GETBOOTSTATUS", "SETTIMEOUT 5", "GETTIMEOUT", "KEEPALIVE", "KEEPALIVE", "KEEPALIVE"}, f.calls)
	assert.Empty(t, f.written(t), "nothing written while running")

	require.NoError(t, d.Close())
	assert.Equal(t, "V", f.written(t), "a clean stop writes the magic 'V'")
	assert.ErrorIs(t, d.Kick(), ErrClosed)
	require.NoError(t, d.Close(), "Close twice")
	assert.Equal(t, "V", f.written(t))
}

// The boot status says the watchdog reset the machine: the agent raises an
// alarm from this.
func TestDeviceBootStatus(t *testing.T) {
	f := newFake(t)
	f.boot = unix.WDIOF_CARDRESET
	d, err := OpenDevice(f.path, DeviceOptions{Ioctl: f.ioctl})
	require.NoError(t, err)
	assert.True(t, d.Info().WatchdogReset())
	assert.Contains(t, d.Info().BootStatusString(), "watchdog reset")
	require.NoError(t, d.Close())
}

func TestDeviceDriverTimeout(t *testing.T) {
	f := newFake(t)
	d, err := OpenDevice(f.path, DeviceOptions{Timeout: 300 * time.Second, Ioctl: f.ioctl})
	require.NoError(t, err)
	assert.Equal(t, 100*time.Second, d.Timeout(), "the timeout the driver chose")
	require.NoError(t, d.Close())

	// No timeout asked: the driver's stays.
	f = newFake(t)
	d, err = OpenDevice(f.path, DeviceOptions{Ioctl: f.ioctl})
	require.NoError(t, err)
	assert.Equal(t, []string{"GETSUPPORT", "GETBOOTSTATUS", "GETTIMEOUT", "KEEPALIVE"}, f.calls)
	assert.Equal(t, 60*time.Second, d.Timeout())
	require.NoError(t, d.Close())
}

// ENOTTY is "the driver lacks this ioctl", not a failure.
func TestDeviceNotSupported(t *testing.T) {
	f := newFake(t)
	f.notty = map[uint]bool{unix.WDIOC_GETSUPPORT: true, unix.WDIOC_GETBOOTSTATUS: true, unix.WDIOC_KEEPALIVE: true}
	d, err := OpenDevice(f.path, DeviceOptions{Timeout: 30 * time.Second, Ioctl: f.ioctl})
	require.NoError(t, err)
	assert.Equal(t, "", d.Info().Identity)
	assert.False(t, d.Info().BootStatusKnown)
	assert.Contains(t, d.Info().BootStatusString(), "not supported")
	assert.Equal(t, 30*time.Second, d.Timeout())
	assert.Equal(t, "k", f.written(t), "no WDIOC_KEEPALIVE: the first kick is a write")
	require.NoError(t, d.Kick())
	require.NoError(t, d.Close())
	assert.Equal(t, "kkV", f.written(t))

	// No SETTIMEOUT: the driver's timeout stays.
	f = newFake(t)
	f.notty = map[uint]bool{unix.WDIOC_SETTIMEOUT: true}
	d, err = OpenDevice(f.path, DeviceOptions{Timeout: 30 * time.Second, Ioctl: f.ioctl})
	require.NoError(t, err)
	assert.False(t, d.Info().TimeoutSet)
	assert.Equal(t, 60*time.Second, d.Timeout())
	require.NoError(t, d.Close())

	// No GETTIMEOUT: what SETTIMEOUT wrote back.
	f = newFake(t)
	f.notty = map[uint]bool{unix.WDIOC_GETTIMEOUT: true}
	d, err = OpenDevice(f.path, DeviceOptions{Timeout: 200 * time.Second, Ioctl: f.ioctl})
	require.NoError(t, err)
	assert.Equal(t, 100*time.Second, d.Timeout())
	require.NoError(t, d.Close())

	// Neither: the timeout cannot be known, which fails (disarmed).
	f = newFake(t)
	f.notty = map[uint]bool{unix.WDIOC_GETTIMEOUT: true, unix.WDIOC_SETTIMEOUT: true}
	_, err = OpenDevice(f.path, DeviceOptions{Timeout: 20 * time.Second, Ioctl: f.ioctl})
	require.ErrorIs(t, err, ErrNotSupported)
	assert.Equal(t, "V", f.written(t))
}

func TestDeviceKeepArmed(t *testing.T) {
	f := newFake(t)
	d, err := OpenDevice(f.path, DeviceOptions{KeepArmed: true, Ioctl: f.ioctl})
	require.NoError(t, err)
	require.NoError(t, d.Close())
	assert.Empty(t, f.written(t), "KeepArmed: no magic close")

	f = newFake(t)
	d, err = OpenDevice(f.path, DeviceOptions{Ioctl: f.ioctl})
	require.NoError(t, err)
	require.NoError(t, d.CloseArmed())
	assert.Empty(t, f.written(t), "CloseArmed: no magic close")
}

// A failed setup disarms the device before returning the error, even with
// KeepArmed: a start that failed must not reset the machine.
func TestDeviceSetupFailureDisarms(t *testing.T) {
	for _, req := range []uint{unix.WDIOC_GETSUPPORT, unix.WDIOC_GETBOOTSTATUS, unix.WDIOC_SETTIMEOUT, unix.WDIOC_GETTIMEOUT, unix.WDIOC_KEEPALIVE} {
		f := newFake(t)
		ioctl := func(fd uintptr, r uint, p unsafe.Pointer) error {
			if r == req {
				return unix.EIO
			}
			return f.ioctl(fd, r, p)
		}
		d, err := OpenDevice(f.path, DeviceOptions{Timeout: 10 * time.Second, KeepArmed: true, Ioctl: ioctl})
		require.Error(t, err)
		assert.Nil(t, d)
		assert.ErrorIs(t, err, unix.EIO)
		assert.Contains(t, err.Error(), f.path)
		assert.Equal(t, "V", f.written(t), "disarmed after a failed setup (req %#x)", req)
	}
	f := newFake(t)
	f.driverSec = 0
	_, err := OpenDevice(f.path, DeviceOptions{Ioctl: f.ioctl})
	require.Error(t, err)
	assert.Equal(t, "V", f.written(t))
}

func TestDeviceMissing(t *testing.T) {
	_, err := OpenDevice(filepath.Join(t.TempDir(), "nope"), DeviceOptions{Ioctl: func(uintptr, uint, unsafe.Pointer) error {
		t.Fatal("no ioctl on a device that failed to open")
		return nil
	}})
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// The real ioctl on a regular file fails (ENOTTY for every ioctl): the
// timeout cannot be known, the open fails and the file gets the magic close.
func TestRealIoctlOnRegularFile(t *testing.T) {
	f := newFake(t)
	_, err := OpenDevice(f.path, DeviceOptions{Timeout: 10 * time.Second})
	require.Error(t, err)
	assert.ErrorIs(t, err, unix.ENOTTY)
	assert.ErrorIs(t, err, ErrNotSupported)
	assert.Equal(t, "V", f.written(t))
}

func TestResolvePath(t *testing.T) {
	p, err := ResolvePath("")
	require.NoError(t, err)
	assert.Equal(t, "", p)
	p, err = ResolvePath("/dev/watchdog1")
	require.NoError(t, err)
	assert.Equal(t, "/dev/watchdog1", p)
	old := DefaultPaths
	defer func() { DefaultPaths = old }()
	dir := t.TempDir()
	second := filepath.Join(dir, "watchdog")
	require.NoError(t, os.WriteFile(second, nil, 0o600))
	DefaultPaths = []string{filepath.Join(dir, "watchdog0"), second}
	p, err = ResolvePath(Auto)
	require.NoError(t, err)
	assert.Equal(t, second, p, "watchdog0 missing: the next one")
	DefaultPaths = []string{filepath.Join(dir, "none")}
	_, err = ResolvePath(Auto)
	assert.ErrorIs(t, err, ErrNoDevice)
}

func TestSystemd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	require.NoError(t, err)
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "6000000")
	t.Setenv("WATCHDOG_PID", "")

	s, err := NewSystemd()
	require.NoError(t, err)
	assert.Equal(t, 6*time.Second, s.Timeout())
	assert.Equal(t, 2*time.Second, PeriodFor([]Kicker{s}))
	require.NoError(t, s.Kick())
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	b := make([]byte, 64)
	n, err := c.Read(b)
	require.NoError(t, err)
	assert.Equal(t, "WATCHDOG=1", string(b[:n]))
	require.NoError(t, s.Close())

	// NOTIFY_SOCKET gone: kicking fails loudly.
	t.Setenv("NOTIFY_SOCKET", "")
	assert.Error(t, s.Kick())

	t.Setenv("WATCHDOG_USEC", "")
	_, err = NewSystemd()
	assert.ErrorIs(t, err, ErrNoSystemdWatchdog)
}

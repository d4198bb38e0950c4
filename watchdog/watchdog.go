// Package watchdog puts the Linux watchdog device (/dev/watchdog and
// friends, through the WDIOC_* ioctls) and systemd's service watchdog
// (WATCHDOG=1 over sd_notify) behind one small interface. The agent kicks
// it while the node is healthy; an isolated node that must fence itself
// stops kicking (DESIGN §2) and the hardware, or systemd, resets it.
package watchdog

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/sdnotify"
)

// Watchdog is kicked while the node is healthy.
type Watchdog interface {
	// Kick postpones the reset by one timeout.
	Kick() error
	// Close stops watching: the device is disarmed with the magic close
	// (unless it was opened with KeepArmed).
	Close() error
}

// Open returns the watchdog the configuration asks for: the device at path
// when path is not empty, else systemd's watchdog when the service manager
// enabled one for this process (WATCHDOG_USEC), else a no-op.
func Open(path string, opts DeviceOptions) (Watchdog, error) {
	if path != "" {
		return OpenDevice(path, opts)
	}
	if s, err := NewSystemd(); err == nil {
		return s, nil
	}
	return Noop{}, nil
}

// KickPeriod is how often to kick w: a third of its timeout, so that one
// late kick is not yet a reset; 0 for a watchdog with no timeout (Noop).
func KickPeriod(w Watchdog) time.Duration {
	if t, ok := w.(interface{ Timeout() time.Duration }); ok {
		return t.Timeout() / 3
	}
	return 0
}

// Noop is the watchdog when none is configured.
type Noop struct{}

func (Noop) Kick() error  { return nil }
func (Noop) Close() error { return nil }

// ioctl numbers from <linux/watchdog.h>, as x/sys/unix has them.
const (
	wdiocKeepalive  = unix.WDIOC_KEEPALIVE  // _IOR('W', 5, int)
	wdiocSetTimeout = unix.WDIOC_SETTIMEOUT // _IOWR('W', 6, int)
	wdiocGetTimeout = unix.WDIOC_GETTIMEOUT // _IOR('W', 7, int)
)

// ioctlFunc performs one int-argument ioctl; tests replace it, because
// opening a real watchdog device arms it and would reset the machine.
type ioctlFunc func(fd uintptr, req uint, arg *int32) error

func sysIoctl(fd uintptr, req uint, arg *int32) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, uintptr(req), uintptr(unsafe.Pointer(arg)))
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		default:
			return e
		}
	}
}

// DeviceOptions configure OpenDevice.
type DeviceOptions struct {
	// Timeout asks the driver for this timeout (whole seconds, rounded up);
	// 0 keeps the driver's. The driver may pick another: see Timeout().
	Timeout time.Duration
	// KeepArmed makes Close leave the watchdog armed (no magic close): the
	// machine then resets one timeout after the last kick unless someone
	// opens the device again and kicks.
	KeepArmed bool

	ioctl ioctlFunc // nil: the real ioctl(2)
}

// Device is a Linux watchdog device. Opening it arms it.
type Device struct {
	mu        sync.Mutex
	f         *os.File
	ioctl     ioctlFunc
	timeout   time.Duration
	keepArmed bool
}

// OpenDevice opens and arms the watchdog device at path, sets its timeout
// if asked, reads back the timeout in force and kicks it once. If any step
// after opening fails, the device is disarmed (magic close) before the
// error is returned, so a failed start does not reset the machine.
func OpenDevice(path string, opts DeviceOptions) (*Device, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("watchdog: %w", err)
	}
	d := &Device{f: f, ioctl: opts.ioctl, keepArmed: opts.KeepArmed}
	if d.ioctl == nil {
		d.ioctl = sysIoctl
	}
	fail := func(what string, err error) (*Device, error) {
		d.keepArmed = false
		d.Close()
		return nil, fmt.Errorf("watchdog: %s %s: %w", what, path, err)
	}
	if opts.Timeout > 0 {
		secs := int32((opts.Timeout + time.Second - 1) / time.Second)
		if err := d.ioctl(f.Fd(), wdiocSetTimeout, &secs); err != nil {
			return fail("WDIOC_SETTIMEOUT", err)
		}
	}
	var secs int32
	if err := d.ioctl(f.Fd(), wdiocGetTimeout, &secs); err != nil {
		return fail("WDIOC_GETTIMEOUT", err)
	}
	if secs <= 0 {
		return fail("WDIOC_GETTIMEOUT", fmt.Errorf("timeout %d s", secs))
	}
	d.timeout = time.Duration(secs) * time.Second
	if err := d.Kick(); err != nil {
		return fail("first kick of", err)
	}
	return d, nil
}

// Timeout is the timeout the driver is using.
func (d *Device) Timeout() time.Duration { return d.timeout }

// ErrClosed is returned by Kick after Close.
var ErrClosed = errors.New("watchdog: closed")

// Kick sends WDIOC_KEEPALIVE.
func (d *Device) Kick() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return ErrClosed
	}
	var dummy int32
	if err := d.ioctl(d.f.Fd(), wdiocKeepalive, &dummy); err != nil {
		return fmt.Errorf("watchdog: WDIOC_KEEPALIVE: %w", err)
	}
	return nil
}

// Close disarms the device with the magic close (writing 'V' just before
// closing it), unless it was opened with KeepArmed. Drivers built with
// CONFIG_WATCHDOG_NOWAYOUT ignore the magic close.
func (d *Device) Close() error {
	return d.close(!d.keepArmed)
}

// CloseArmed closes the device without the magic close, whatever the
// options: the machine resets one timeout after the last kick.
func (d *Device) CloseArmed() error {
	return d.close(false)
}

func (d *Device) close(disarm bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return nil
	}
	var werr error
	if disarm {
		if _, err := d.f.Write([]byte{'V'}); err != nil {
			werr = fmt.Errorf("watchdog: magic close: %w", err)
		}
	}
	cerr := d.f.Close()
	d.f = nil
	if werr != nil {
		return werr
	}
	return cerr
}

// Systemd is systemd's service watchdog (WatchdogSec= in the unit).
type Systemd struct {
	interval time.Duration
}

// ErrNoSystemdWatchdog: systemd did not enable a watchdog for this process.
var ErrNoSystemdWatchdog = errors.New("watchdog: systemd's watchdog is not enabled for this process (no WATCHDOG_USEC)")

// NewSystemd returns systemd's watchdog if systemd enabled one for us.
func NewSystemd() (*Systemd, error) {
	d, ok := sdnotify.WatchdogInterval()
	if !ok {
		return nil, ErrNoSystemdWatchdog
	}
	return &Systemd{interval: d}, nil
}

// Timeout is WatchdogSec.
func (s *Systemd) Timeout() time.Duration { return s.interval }

// Kick sends WATCHDOG=1.
func (s *Systemd) Kick() error {
	sent, err := sdnotify.Watchdog()
	if err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	if !sent {
		return errors.New("watchdog: NOTIFY_SOCKET is not set: systemd's watchdog cannot be kicked")
	}
	return nil
}

// Close does nothing: systemd stops watching when the service stops.
func (s *Systemd) Close() error { return nil }

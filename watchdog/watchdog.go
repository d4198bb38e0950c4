// Package watchdog puts the Linux watchdog device (/dev/watchdog0 and
// friends, through the WDIOC_* ioctls) and systemd's service watchdog
// (WATCHDOG=1 over sd_notify) behind one small interface, Kicker, and kicks
// them together from one health signal (Guard): every critical loop of the
// agent made progress within the kick period, and nothing holds the kicks
// (a self-fence decision of the core, a critical daemon that could not be
// kept up). A node that must fence itself stops kicking (DESIGN §2) and the
// hardware, or systemd, resets it.
//
// Opening a real watchdog device arms it: the tests use a fake ioctl on a
// regular file, or the Fake kicker; the one test that opens a real device
// (softdog) is opt-in and uses a long timeout and the magic close.
package watchdog

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/sdnotify"
)

// Kicker is one watchdog: a device or systemd's.
type Kicker interface {
	// Kick postpones the reset by one timeout.
	Kick() error
	// Timeout is the reset timeout in force.
	Timeout() time.Duration
	// Close stops watching: a device is disarmed with the magic close
	// (unless it was opened with KeepArmed).
	Close() error
	// Name says what it is ("/dev/watchdog0", "systemd").
	Name() string
}

// Sentinel errors.
var (
	// ErrClosed is returned by Kick after Close.
	ErrClosed = errors.New("watchdog: closed")
	// ErrNotSupported: the driver lacks an ioctl (ENOTTY). Not a failure
	// by itself; it fails OpenDevice only when the timeout cannot be known.
	ErrNotSupported = errors.New("watchdog: not supported by the driver")
	// ErrNoDevice: "auto" found neither /dev/watchdog0 nor /dev/watchdog.
	ErrNoDevice = errors.New("watchdog: no watchdog device")
	// ErrNoSystemdWatchdog: systemd did not enable a watchdog for this process.
	ErrNoSystemdWatchdog = errors.New("watchdog: systemd's watchdog is not enabled for this process (no WATCHDOG_USEC)")
)

// Auto is the device setting that picks the first of DefaultPaths present.
const Auto = "auto"

// DefaultPaths are tried in order for Auto: watchdog0 is the first device
// of the watchdog core (with the full ioctl set); /dev/watchdog is the
// legacy name, usually the same device.
var DefaultPaths = []string{"/dev/watchdog0", "/dev/watchdog"}

// ResolvePath returns the device path for a configured setting: "" stays ""
// (no device), Auto is the first of DefaultPaths that exists, anything else
// is used as is.
func ResolvePath(setting string) (string, error) {
	if setting != Auto {
		return setting, nil
	}
	for _, p := range DefaultPaths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w (tried %s)", ErrNoDevice, strings.Join(DefaultPaths, ", "))
}

// ioctl numbers from <linux/watchdog.h>, as x/sys/unix has them.
const (
	wdiocGetSupport    = unix.WDIOC_GETSUPPORT    // _IOR('W', 0, struct watchdog_info)
	wdiocGetBootStatus = unix.WDIOC_GETBOOTSTATUS // _IOR('W', 2, int)
	wdiocKeepalive     = unix.WDIOC_KEEPALIVE     // _IOR('W', 5, int)
	wdiocSetTimeout    = unix.WDIOC_SETTIMEOUT    // _IOWR('W', 6, int)
	wdiocGetTimeout    = unix.WDIOC_GETTIMEOUT    // _IOR('W', 7, int)
)

// IoctlFunc performs one ioctl. Tests give a fake driver, because opening
// a real watchdog device arms it and would reset the machine.
type IoctlFunc func(fd uintptr, req uint, arg unsafe.Pointer) error

func sysIoctl(fd uintptr, req uint, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, uintptr(req), uintptr(arg))
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
	// KeepArmed makes Close leave the watchdog armed (no magic close).
	KeepArmed bool

	// Ioctl is the driver: nil for the real ioctl(2); tests give a fake
	// one (on a regular file standing in for the device).
	Ioctl IoctlFunc
}

// Info is what the driver says about itself and the last boot.
type Info struct {
	Identity string // WDIOC_GETSUPPORT's identity, "" if not supported
	Options  uint32 // WDIOF_* the driver supports
	// BootStatus is WDIOC_GETBOOTSTATUS (WDIOF_* flags of the last reset);
	// BootStatusKnown is false when the driver lacks the ioctl.
	BootStatus      uint32
	BootStatusKnown bool
	// TimeoutSet is false when the driver lacks WDIOC_SETTIMEOUT (the
	// driver's timeout stays).
	TimeoutSet bool
}

// WatchdogReset reports whether the last reboot was caused by the watchdog
// (WDIOF_CARDRESET in the boot status).
func (i Info) WatchdogReset() bool {
	return i.BootStatusKnown && i.BootStatus&unix.WDIOF_CARDRESET != 0
}

// BootStatusString describes the boot status for humans.
func (i Info) BootStatusString() string {
	switch {
	case !i.BootStatusKnown:
		return "unknown (not supported by the driver)"
	case i.WatchdogReset():
		return fmt.Sprintf("watchdog reset (0x%x)", i.BootStatus)
	case i.BootStatus == 0:
		return "normal"
	}
	return fmt.Sprintf("0x%x", i.BootStatus)
}

// Device is a Linux watchdog device. Opening it arms it.
type Device struct {
	mu        sync.Mutex
	path      string
	f         *os.File
	ioctl     IoctlFunc
	timeout   time.Duration
	keepArmed bool
	writeKick bool // the driver lacks WDIOC_KEEPALIVE: kick by writing
	info      Info
}

var _ Kicker = (*Device)(nil)

// OpenDevice opens and arms the watchdog device at path, reads what the
// driver supports and the boot status, sets its timeout if asked, reads back
// the timeout in force (drivers round) and kicks it once. ENOTTY from an
// ioctl means the driver lacks it: GETSUPPORT and GETBOOTSTATUS are then
// unknown, SETTIMEOUT leaves the driver's timeout, KEEPALIVE falls back to a
// write; only a timeout that cannot be known at all fails. If any step after
// opening fails, the device is disarmed (magic close) before the error is
// returned, so a failed start does not reset the machine.
func OpenDevice(path string, opts DeviceOptions) (*Device, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("watchdog: %w", err)
	}
	d := &Device{path: path, f: f, ioctl: opts.Ioctl, keepArmed: opts.KeepArmed}
	if d.ioctl == nil {
		d.ioctl = sysIoctl
	}
	fail := func(what string, err error) (*Device, error) {
		d.keepArmed = false
		d.Close()
		return nil, fmt.Errorf("watchdog: %s %s: %w", what, path, err)
	}
	fd := f.Fd()
	var wi unix.WatchdogInfo
	switch err := d.ioctl(fd, wdiocGetSupport, unsafe.Pointer(&wi)); {
	case err == nil:
		d.info.Options = wi.Options
		d.info.Identity = strings.TrimRight(string(wi.Identity[:]), "\x00")
	case !errors.Is(err, unix.ENOTTY):
		return fail("WDIOC_GETSUPPORT", err)
	}
	var boot int32
	switch err := d.ioctl(fd, wdiocGetBootStatus, unsafe.Pointer(&boot)); {
	case err == nil:
		d.info.BootStatus, d.info.BootStatusKnown = uint32(boot), true
	case !errors.Is(err, unix.ENOTTY):
		return fail("WDIOC_GETBOOTSTATUS", err)
	}
	var setSecs int32
	if opts.Timeout > 0 {
		setSecs = int32((opts.Timeout + time.Second - 1) / time.Second)
		switch err := d.ioctl(fd, wdiocSetTimeout, unsafe.Pointer(&setSecs)); {
		case err == nil:
			d.info.TimeoutSet = true // the driver wrote back what it chose
		case errors.Is(err, unix.ENOTTY):
			setSecs = 0
		default:
			return fail("WDIOC_SETTIMEOUT", err)
		}
	}
	var secs int32
	switch err := d.ioctl(fd, wdiocGetTimeout, unsafe.Pointer(&secs)); {
	case err == nil:
	case errors.Is(err, unix.ENOTTY) && setSecs > 0:
		secs = setSecs
	case errors.Is(err, unix.ENOTTY):
		return fail("WDIOC_GETTIMEOUT", fmt.Errorf("%w: %w: the timeout in force cannot be known", ErrNotSupported, err))
	default:
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

// Name is the device's path.
func (d *Device) Name() string { return d.path }

// Info is what the driver said at open.
func (d *Device) Info() Info { return d.info }

// Kick sends WDIOC_KEEPALIVE (or, for a driver without it, writes a byte
// other than the magic 'V').
func (d *Device) Kick() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return ErrClosed
	}
	if !d.writeKick {
		var dummy int32
		err := d.ioctl(d.f.Fd(), wdiocKeepalive, unsafe.Pointer(&dummy))
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.ENOTTY) {
			return fmt.Errorf("watchdog: WDIOC_KEEPALIVE: %w", err)
		}
		d.writeKick = true
	}
	if _, err := d.f.Write([]byte{'k'}); err != nil {
		return fmt.Errorf("watchdog: keepalive write: %w", err)
	}
	return nil
}

// Close disarms the device with the magic close (writing 'V' just before
// closing it), unless it was opened with KeepArmed. Drivers built with
// CONFIG_WATCHDOG_NOWAYOUT ignore the magic close.
func (d *Device) Close() error { return d.close(!d.keepArmed) }

// CloseArmed closes the device without the magic close, whatever the
// options: the machine resets one timeout after the last kick.
func (d *Device) CloseArmed() error { return d.close(false) }

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

var _ Kicker = (*Systemd)(nil)

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

// Name is "systemd".
func (s *Systemd) Name() string { return "systemd" }

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

// Fake is a Kicker for tests: it records every kick and the magic close.
type Fake struct {
	mu      sync.Mutex
	T       time.Duration // Timeout()
	Label   string        // Name(); "fake" if empty
	kicks   []time.Time
	closed  bool
	magic   bool
	KickErr error // returned by Kick when set
}

var _ Kicker = (*Fake)(nil)

// Kick records a kick.
func (f *Fake) Kick() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return ErrClosed
	}
	f.kicks = append(f.kicks, time.Now())
	return f.KickErr
}

// Timeout returns T.
func (f *Fake) Timeout() time.Duration { return f.T }

// Name returns Label.
func (f *Fake) Name() string {
	if f.Label == "" {
		return "fake"
	}
	return f.Label
}

// Close records the magic close.
func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed, f.magic = true, true
	}
	return nil
}

// Kicks is the number of kicks so far.
func (f *Fake) Kicks() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.kicks)
}

// LastKick is the time of the last kick (zero if none).
func (f *Fake) LastKick() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.kicks) == 0 {
		return time.Time{}
	}
	return f.kicks[len(f.kicks)-1]
}

// MagicClosed reports whether Close (the magic close) was called.
func (f *Fake) MagicClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.magic
}

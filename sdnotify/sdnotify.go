// Package sdnotify speaks systemd's notification protocol (sd_notify(3)):
// one datagram of newline-separated VAR=VALUE assignments to the unixgram
// socket named by $NOTIFY_SOCKET (a path, or an abstract name written with
// a leading '@'). Without $NOTIFY_SOCKET every call is a no-op that reports
// nothing was sent.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// Notify sends state (e.g. "READY=1", "STATUS=joining\nREADY=1") to
// $NOTIFY_SOCKET. sent is false, with no error, when $NOTIFY_SOCKET is unset
// (not started by systemd, or NotifyAccess= forbids us).
func Notify(state string) (sent bool, err error) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return false, nil
	}
	if name[0] != '/' && name[0] != '@' {
		return false, fmt.Errorf("sdnotify: NOTIFY_SOCKET=%q is neither a path nor an abstract name ('@...')", name)
	}
	// Go maps a leading '@' to the abstract namespace (a leading NUL).
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sdnotify: %w", err)
	}
	return true, nil
}

// Ready tells systemd that start-up is finished (Type=notify).
func Ready() (bool, error) { return Notify("READY=1") }

// Stopping tells systemd that the service is shutting down.
func Stopping() (bool, error) { return Notify("STOPPING=1") }

// Watchdog kicks systemd's service watchdog (WatchdogSec=).
func Watchdog() (bool, error) { return Notify("WATCHDOG=1") }

// Status sets the one-line status systemctl status shows.
func Status(s string) (bool, error) { return Notify("STATUS=" + s) }

// WatchdogInterval is systemd's watchdog timeout for this process, from
// $WATCHDOG_USEC (and $WATCHDOG_PID, which must be ours if set). ok is false
// when the watchdog is not enabled for us. Kick at half the interval or more
// often, as sd_watchdog_enabled(3) advises.
func WatchdogInterval() (d time.Duration, ok bool) {
	us := os.Getenv("WATCHDOG_USEC")
	if us == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(us, 10, 63)
	if err != nil || n == 0 {
		return 0, false
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil || pid != os.Getpid() {
			return 0, false
		}
	}
	return time.Duration(n) * time.Microsecond, true
}

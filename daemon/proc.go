package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The start time of a process tells a PID's owner from a later process that
// reused the number: /proc/PID/stat field 22 is the start time in clock
// ticks since boot. Ticks are USER_HZ, which the kernel fixes at 100 for
// /proc whatever its internal HZ.
const userHZ = 100

// ErrNoProcess: no process has that PID (or it is a zombie).
var ErrNoProcess = errors.New("daemon: no such process")

// StartTicks returns the start time of process pid in clock ticks since
// boot.
func StartTicks(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("%w: %d", ErrNoProcess, pid)
		}
		return 0, fmt.Errorf("daemon: %w", err)
	}
	// The command name (field 2) is in parentheses and may hold anything,
	// ')' included: the fields after it start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("daemon: /proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("daemon: /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, fmt.Errorf("%w: %d is a zombie", ErrNoProcess, pid)
	}
	t, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("daemon: /proc/%d/stat: start time %q", pid, f[19])
	}
	return t, nil
}

var (
	bootOnce sync.Once
	bootTime time.Time
	bootErr  error
)

// BootTime is the system's boot time (btime in /proc/stat, whole seconds).
func BootTime() (time.Time, error) {
	bootOnce.Do(func() {
		b, err := os.ReadFile("/proc/stat")
		if err != nil {
			bootErr = fmt.Errorf("daemon: %w", err)
			return
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "btime "); ok {
				s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil {
					break
				}
				bootTime = time.Unix(s, 0)
				return
			}
		}
		bootErr = errors.New("daemon: /proc/stat has no btime")
	})
	return bootTime, bootErr
}

// StartedAt converts start ticks to wall time (to about a second: btime is
// whole seconds).
func StartedAt(ticks uint64) (time.Time, error) {
	bt, err := BootTime()
	if err != nil {
		return time.Time{}, err
	}
	return bt.Add(time.Duration(ticks) * time.Second / userHZ), nil
}

// pidfileSlack absorbs btime's one-second granularity when a process start
// time is compared with a pidfile's modification time.
const pidfileSlack = 2 * time.Second

// ReadPidFile reads the PID in path and checks that the process running
// under it now is the one that wrote the file (or had it written): a
// process that started after the file was last written reused the PID.
func ReadPidFile(path string) (pid int, ticks uint64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("daemon: pidfile: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, fmt.Errorf("daemon: pidfile: %w", err)
	}
	pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, 0, fmt.Errorf("daemon: pidfile %s: %q is not a PID", path, strings.TrimSpace(string(b)))
	}
	ticks, err = StartTicks(pid)
	if err != nil {
		return 0, 0, err
	}
	at, err := StartedAt(ticks)
	if err != nil {
		return 0, 0, err
	}
	if at.After(fi.ModTime().Add(pidfileSlack)) {
		return 0, 0, fmt.Errorf("%w: pid %d in %s started at %s, after the file was written (%s): the PID was reused",
			ErrNoProcess, pid, path, at.Format(time.RFC3339), fi.ModTime().Format(time.RFC3339))
	}
	return pid, ticks, nil
}

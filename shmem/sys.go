package shmem

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func ld64(p unsafe.Pointer, off uintptr) uint64 {
	return atomic.LoadUint64((*uint64)(unsafe.Add(p, off)))
}
func ld32(p unsafe.Pointer, off uintptr) uint32 {
	return atomic.LoadUint32((*uint32)(unsafe.Add(p, off)))
}
func st64(p unsafe.Pointer, off uintptr, v uint64) {
	atomic.StoreUint64((*uint64)(unsafe.Add(p, off)), v)
}
func st32(p unsafe.Pointer, off uintptr, v uint32) {
	atomic.StoreUint32((*uint32)(unsafe.Add(p, off)), v)
}

// monoNow is CLOCK_MONOTONIC in nanoseconds, the clock of the heartbeat (the
// same clock C readers read with clock_gettime), without a system call:
// Go's monotonic clock is CLOCK_MONOTONIC, read through the vDSO, so now is
// the base's CLOCK_MONOTONIC plus the Go time since the base. The writer
// beats at every tick of the agent's real-time loop, which makes no
// system call Go's scheduler is told of (transport.Waiter.HoldP); x/sys's
// clock_gettime is one, and it was a few per cent of an idle agent's CPU.
func monoNow() int64 { return monoBase.ns + int64(time.Since(monoBase.at)) }

// monoBase pairs a Go time with a CLOCK_MONOTONIC reading taken between
// two Go readings err apart (the tightest of several tries): monoNow is
// off by at most err, a microsecond or two.
var monoBase = newMonoBase()

type monoPair struct {
	at  time.Time
	ns  int64
	err time.Duration
}

func newMonoBase() monoPair {
	best := monoPair{err: math.MaxInt64}
	for range 16 {
		var ts unix.Timespec
		t0 := time.Now()
		if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
			continue
		}
		t1 := time.Now()
		if e := t1.Sub(t0); e < best.err {
			// The clock was read somewhere between t0 and t1: pair it
			// with the middle.
			best = monoPair{at: t0.Add(e / 2), ns: ts.Nano(), err: (e + 1) / 2}
		}
	}
	if best.at.IsZero() {
		panic("shmem: clock_gettime(CLOCK_MONOTONIC) fails") // Linux never does
	}
	return best
}

// procStat returns the state letter and start time (clock ticks since boot,
// field 22) of a process from /proc/PID/stat.
func procStat(pid int) (state byte, start uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, errors.New("bad /proc stat")
	}
	f := bytes.Fields(b[i+2:])
	if len(f) < 20 {
		return 0, 0, errors.New("bad /proc stat")
	}
	start, err = strconv.ParseUint(string(f[19]), 10, 64)
	return f[0][0], start, err
}

// processAlive reports whether process pid exists, is not a zombie and, if
// startTicks is non-zero, started at startTicks (so a reused pid is not
// mistaken for the writer). It works within one pid namespace.
func processAlive(pid uint32, startTicks uint64) bool {
	if pid == 0 || pid > math.MaxInt32 {
		return false
	}
	state, start, err := procStat(int(pid))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false
		}
		err := unix.Kill(int(pid), 0)
		return err == nil || err == unix.EPERM
	}
	if state == 'Z' || state == 'X' || state == 'x' {
		return false
	}
	return startTicks == 0 || start == startTicks
}

// foreign says why the file described by st is not a segment the agent
// created ("" if it is): a segment is a regular file owned by root, by self
// (the caller's effective UID) or by also (0: nobody more), and writable
// only by its owner. A file anyone else could have made or changed is never
// trusted.
func foreign(st *unix.Stat_t, self, also uint32) string {
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Sprintf("not a regular file (mode %#o)", st.Mode)
	case st.Uid != 0 && st.Uid != self && (also == 0 || st.Uid != also):
		return fmt.Sprintf("owned by uid %d, not root or uid %d", st.Uid, self)
	case st.Mode&0o022 != 0:
		return fmt.Sprintf("mode %#o is writable by group or others", st.Mode&0o7777)
	}
	return ""
}

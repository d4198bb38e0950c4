package transport

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The function runs on one OS thread throughout, even across reschedules.
func TestRunLockedStaysOnOneThread(t *testing.T) {
	var tids []int
	err := RunLocked(ThreadOptions{}, func() {
		for range 20 {
			tids = append(tids, unix.Gettid())
			runtime.Gosched()
		}
	})
	require.NoError(t, err)
	for _, tid := range tids {
		assert.Equal(t, tids[0], tid, "the goroutine moved to another thread")
	}
}

// With Realtime the locked thread runs SCHED_FIFO; or, where that is not
// permitted, RunLocked logs why, runs fn anyway and returns the error.
func TestRunLockedRealtime(t *testing.T) {
	before, err := unix.SchedGetAttr(0, 0)
	require.NoError(t, err)
	var logs []string
	var inside *unix.SchedAttr
	var insideErr error
	ran := false
	rtErr := RunLocked(ThreadOptions{Realtime: true, Priority: 5, Logf: func(f string, a ...any) {
		logs = append(logs, fmt.Sprintf(f, a...))
	}}, func() {
		ran = true
		inside, insideErr = unix.SchedGetAttr(0, 0)
	})
	require.True(t, ran, "fn must run even without SCHED_FIFO")
	require.NoError(t, insideErr)
	if rtErr != nil {
		t.Logf("SCHED_FIFO not permitted here: %v", rtErr)
		require.Len(t, logs, 1, "a refusal is logged")
		assert.Contains(t, logs[0], "SCHED_FIFO")
		assert.Equal(t, before.Policy, inside.Policy, "fn runs at the normal policy")
		return
	}
	assert.Empty(t, logs)
	assert.Equal(t, uint32(unix.SCHED_FIFO), inside.Policy)
	assert.Equal(t, uint32(5), inside.Priority)
	assert.Equal(t, uint64(unix.SCHED_FLAG_RESET_ON_FORK), inside.Flags&unix.SCHED_FLAG_RESET_ON_FORK)
	// This goroutine is not locked, but the restored thread must not be
	// FIFO: check every thread of the process instead.
	assertNoFIFOThreads(t)
}

func TestRunLockedBadPriority(t *testing.T) {
	var logs []string
	ran := false
	err := RunLocked(ThreadOptions{Realtime: true, Priority: 100, Logf: func(f string, a ...any) {
		logs = append(logs, fmt.Sprintf(f, a...))
	}}, func() { ran = true })
	assert.True(t, ran)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "out of range")
	assert.Len(t, logs, 1)
}

// assertNoFIFOThreads checks that no thread of the process is left at
// SCHED_FIFO.
func assertNoFIFOThreads(t *testing.T) {
	t.Helper()
	d, err := unix.Open("/proc/self/task", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	require.NoError(t, err)
	defer unix.Close(d)
	buf := make([]byte, 8192)
	n, err := unix.ReadDirent(d, buf)
	require.NoError(t, err)
	var names []string
	_, _, names = unix.ParseDirent(buf[:n], -1, names)
	checked := 0
	for _, name := range names {
		var tid int
		if _, err := fmt.Sscan(name, &tid); err != nil {
			continue
		}
		attr, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			continue // the thread exited
		}
		checked++
		assert.NotEqual(t, uint32(unix.SCHED_FIFO), attr.Policy, "thread %d left at SCHED_FIFO", tid)
	}
	assert.Positive(t, checked)
}

// Without CAP_SYS_NICE and with RLIMIT_RTPRIO 0, SCHED_FIFO is refused:
// RunLocked logs it and runs fn anyway. Capabilities are per thread, so the
// test drops CAP_SYS_NICE on a thread of its own, which it never unlocks:
// the thread ends with its goroutine instead of going back to the pool.
func TestRunLockedNotPermitted(t *testing.T) {
	var lim unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_RTPRIO, &lim))
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_RTPRIO, &unix.Rlimit{Cur: 0, Max: lim.Max}))
	defer unix.Setrlimit(unix.RLIMIT_RTPRIO, &lim)

	type result struct {
		err    error
		logs   []string
		ran    bool
		policy uint32
		setup  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var r result
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if r.setup = unix.Capget(&hdr, &data[0]); r.setup == nil {
			data[0].Effective &^= 1 << unix.CAP_SYS_NICE
			r.setup = unix.Capset(&hdr, &data[0])
		}
		if r.setup == nil {
			r.err = RunLocked(ThreadOptions{Realtime: true, Logf: func(f string, a ...any) {
				r.logs = append(r.logs, fmt.Sprintf(f, a...))
			}}, func() {
				r.ran = true
				if attr, err := unix.SchedGetAttr(0, 0); err == nil {
					r.policy = attr.Policy
				}
			})
		}
		ch <- r
	}()
	r := <-ch
	require.NoError(t, r.setup)
	assert.True(t, r.ran)
	require.Error(t, r.err)
	assert.ErrorIs(t, r.err, unix.EPERM)
	require.Len(t, r.logs, 1)
	assert.Contains(t, r.logs[0], "normal scheduling policy")
	assert.Equal(t, uint32(0), r.policy, "SCHED_OTHER")
}

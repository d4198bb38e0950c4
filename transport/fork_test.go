package transport

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

const forkChildEnv = "FMAGENT_TEST_NICE_PARENT"

// After SetProcessNice every thread of the process is at the normal policy
// (a real-time policy inherited from the parent is dropped) with the nice
// value,
// including the threads Go creates afterwards (a thread at nice 0 holding
// a P holds up a stop-the-world, and so the real-time loop, behind a CPU
// hog); a child started with StartNormal has the process's original nice
// value, while one started plainly inherits -20 (which is why the agent
// starts its hooks and daemons with StartNormal). Runs in a re-executed
// test binary, so this one keeps its nice value.
func TestProcessNiceThreadsAndChildren(t *testing.T) {
	if os.Getenv(forkChildEnv) == "1" {
		// As if started by a parent at SCHED_FIFO (without reset on
		// fork): SetProcessNice puts the thread back at the normal policy.
		runtime.LockOSThread()
		if err := unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 1}, 0); err != nil {
			os.Stdout.WriteString("no-nice " + err.Error() + "\n")
			return
		}
		orig, err := SetProcessNice(-20)
		if err != nil {
			os.Stdout.WriteString("no-nice " + err.Error() + "\n")
			return
		}
		before := len(threads(t))
		// Make Go create threads: each locked goroutine blocked holds one.
		var wg, ready sync.WaitGroup
		release := make(chan struct{})
		for range 8 {
			wg.Add(1)
			ready.Add(1)
			go func() {
				defer wg.Done()
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				ready.Done()
				<-release
			}()
		}
		ready.Wait()
		time.Sleep(10 * time.Millisecond)
		after := threads(t)
		other := 0
		for _, tid := range after {
			if a, err := unix.SchedGetAttr(tid, 0); err == nil && (a.Nice != -20 || a.Policy != 0) {
				other++
			}
		}
		close(release)
		wg.Wait()
		runtime.UnlockOSThread()
		plain, err := exec.Command("cat", "/proc/self/stat").Output()
		require.NoError(t, err)
		var out strings.Builder
		c := exec.Command("cat", "/proc/self/stat")
		c.Stdout = &out
		require.NoError(t, StartNormal(c, orig))
		require.NoError(t, c.Wait())
		fmt.Printf("threads %d→%d other %d orig %d plain-child %s normal-child %s\n",
			before, len(after), other, orig, statField(string(plain), 19), statField(out.String(), 19))
		return
	}
	out := reexec(t, "TestProcessNiceThreadsAndChildren", "1")
	var before, after, other, orig int
	var plain, child string
	i := strings.Index(out, "threads ")
	require.GreaterOrEqual(t, i, 0, "%s", out)
	_, err := fmt.Sscanf(out[i:], "threads %d→%d other %d orig %d plain-child %s normal-child %s", &before, &after, &other, &orig, &plain, &child)
	require.NoError(t, err, "%s", out)
	require.Greater(t, after, before, "the test created no thread: %s", out)
	require.Zero(t, other, "threads created after SetProcessNice do not have its nice value: %s", out)
	require.Equal(t, "-20", plain, "a plain child inherits the nice value: %s", out)
	require.Equal(t, fmt.Sprint(orig), child, "StartNormal's child has the original nice value: %s", out)
}

// reexec runs test again in a new test binary with forkChildEnv set to
// val and returns its output; a child that may not set nice -20 (it prints
// "no-nice") skips the test.
func reexec(t *testing.T, test, val string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.v")
	cmd.Env = append(os.Environ(), forkChildEnv+"="+val)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	if strings.Contains(string(out), "no-nice") {
		t.Skipf("nice -20 is not permitted here (not root?): %s", out)
	}
	return string(out)
}

// threads lists the process's thread IDs.
func threads(t *testing.T) []int {
	ents, err := os.ReadDir("/proc/self/task")
	require.NoError(t, err)
	var tids []int
	for _, e := range ents {
		var tid int
		if _, err := fmt.Sscan(e.Name(), &tid); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids
}

// statField is field n (1-based, as in proc(5)) of a /proc/PID/stat line.
func statField(stat string, n int) string {
	i := strings.LastIndexByte(stat, ')')
	f := strings.Fields(stat[i+1:])
	return f[n-3]
}

// A Background's thread is at SCHED_BATCH and its nice value, and stays
// there through SetProcessNice and KeepNice (which give every other thread
// -20); Hurry raises it for a while (not to its own nice value); the work given to Do runs on it; Stop
// ends the thread, and work given after runs on the caller's. Runs in a
// re-executed test binary, as above.
func TestBackgroundKeepsItsPriority(t *testing.T) {
	if os.Getenv(forkChildEnv) == "bg" {
		bg, err := StartBackground(10)
		if err != nil {
			fmt.Printf("error %v\n", err)
			return
		}
		if _, err := SetProcessNice(-20); err != nil {
			os.Stdout.WriteString("no-nice " + err.Error() + "\n")
			return
		}
		if _, err := KeepNice(-20); err != nil {
			fmt.Printf("error %v\n", err)
			return
		}
		var ranOn int
		var attr *unix.SchedAttr
		bg.Do(func() {
			ranOn = unix.Gettid()
			attr, err = unix.SchedGetAttr(0, 0)
		})
		if err != nil {
			fmt.Printf("error %v\n", err)
			return
		}
		// Hurried: at the normal policy and -20 until done.
		done := bg.Hurry(-20)
		hurried, herr := unix.SchedGetAttr(bg.Tid(), 0)
		done()
		back, berr := unix.SchedGetAttr(bg.Tid(), 0)
		if herr != nil || berr != nil {
			fmt.Printf("error %v %v\n", herr, berr)
			return
		}
		fmt.Printf("hurried %d/%d back %d/%d\n", hurried.Policy, hurried.Nice, back.Policy, back.Nice)
		// Hurried to its own nice value (or one less favoured): left as it is.
		done = bg.Hurry(10)
		same, serr := unix.SchedGetAttr(bg.Tid(), 0)
		done()
		if serr != nil {
			fmt.Printf("error %v\n", serr)
			return
		}
		fmt.Printf("not hurried %d/%d\n", same.Policy, same.Nice)
		others := 0
		for _, tid := range threads(t) {
			if a, err := unix.SchedGetAttr(tid, 0); err == nil && tid != bg.Tid() && (a.Nice != -20 || a.Policy != 0) {
				others++
			}
		}
		bg.Stop()
		after := 0
		bg.Do(func() { after = unix.Gettid() })
		if after == bg.Tid() {
			fmt.Printf("error: work ran on the stopped thread\n")
			return
		}
		// Go ends a locked goroutine's thread just after it returns, but
		// for the process's main thread, which it parks for good.
		if bg.Tid() == os.Getpid() {
			err = os.ErrNotExist
		}
		for i := 0; i < 100 && err == nil; i++ {
			if _, err = os.Stat(fmt.Sprintf("/proc/self/task/%d", bg.Tid())); err != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		fmt.Printf("background tid %d ran-on %d policy %d nice %d others %d gone %v\n",
			bg.Tid(), ranOn, attr.Policy, attr.Nice, others, os.IsNotExist(err))
		return
	}
	out := reexec(t, "TestBackgroundKeepsItsPriority", "bg")
	i := strings.Index(out, "background ")
	require.GreaterOrEqual(t, i, 0, "%s", out)
	var tid, ranOn, policy, nice, others int
	var gone bool
	_, err := fmt.Sscanf(out[i:], "background tid %d ran-on %d policy %d nice %d others %d gone %t", &tid, &ranOn, &policy, &nice, &others, &gone)
	require.NoError(t, err, "%s", out)
	require.Equal(t, tid, ranOn, "Do ran on another thread: %s", out)
	require.Equal(t, unix.SCHED_BATCH, policy, "%s", out)
	require.Equal(t, 10, nice, "SetProcessNice or KeepNice changed the background thread: %s", out)
	require.Zero(t, others, "%s", out)
	require.True(t, gone, "the thread outlived Stop: %s", out)
	require.Contains(t, out, fmt.Sprintf("hurried 0/-20 back %d/10", unix.SCHED_BATCH), "Hurry raises the thread and its done puts it back")
	require.Contains(t, out, fmt.Sprintf("not hurried %d/10", unix.SCHED_BATCH), "Hurry to the thread's own nice value changes nothing")
}

package bench

import (
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// splitThreads counts a thread at SCHED_FIFO or SCHED_RR as real-time
// whatever its ID, the process's second thread as sysmon, and every other
// thread as other; a thread born during the window counts from zero, one
// that ended is not counted.
func TestSplitThreads(t *testing.T) {
	before := map[int]threadRun{
		100: {runNs: 1e6},            // main
		101: {runNs: 5e6},            // sysmon
		102: {runNs: 9e6},            // ended during the window
		103: {runNs: 2e6, policy: 1}, // the loop
	}
	after := map[int]threadRun{
		100: {runNs: 3e6},
		101: {runNs: 8e6},
		103: {runNs: 12e6, policy: 1},
		107: {runNs: 4e6, policy: 2}, // born during the window, SCHED_RR
		110: {runNs: 1e6},            // born during the window
	}
	got := splitThreads(before, after, time.Second)
	want := ThreadSplit{Realtime: 14e-3, Sysmon: 3e-3, Other: 3e-3}
	if got == nil || *got != want {
		t.Fatalf("split %+v, want %+v", got, want)
	}
	if splitThreads(before, nil, time.Second) != nil {
		t.Error("a split of no threads")
	}
}

// procThreads reads this very process: its threads, each with a CPU time,
// the main thread's (its ID the process's) among them, and each thread's
// policy: one thread put at SCHED_BATCH (no privilege needed) is read at 3,
// the others at SCHED_OTHER (0).
func TestProcThreads(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	batch := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_BATCH}
	if err := unix.SchedSetAttr(0, &batch, 0); err != nil {
		t.Fatal(err)
	}
	defer func() {
		normal := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}
		if err := unix.SchedSetAttr(0, &normal, 0); err != nil {
			t.Fatal(err)
		}
	}()
	th, err := procThreads(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	main, ok := th[os.Getpid()]
	if len(th) < 2 || !ok || main.runNs == 0 {
		t.Fatalf("%d threads, main %+v (found %v)", len(th), main, ok)
	}
	for id, r := range th {
		want := 0
		if id == tid {
			want = unix.SCHED_BATCH
		}
		if r.policy != want {
			t.Errorf("thread %d: policy %d, want %d", id, r.policy, want)
		}
	}
}

package shmem_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/fmagent/fmagent/internal/testutil"

	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/wire"
)

// The helper writer: the test binary re-executed with FMSHM_HELPER set.
// It creates the segment at FMSHM_PATH with the entities "victim" and
// "other", in mode "stuck" leaves victim's slot with an odd seq (a writer
// stopped in the middle of writing it), prints "ready" and beats until
// killed.
func TestMain(m *testing.M) {
	if mode := os.Getenv("FMSHM_HELPER"); mode != "" {
		helper(mode, os.Getenv("FMSHM_PATH"))
		return
	}
	testutil.RemoveDeadShm("fmshm-test-")
	os.Exit(testutil.CheckShmLeftovers("fmshm-test-", m.Run()))
}

func helper(mode, path string) {
	if mode == "fulltmpfs" {
		os.Exit(fullTmpfsHelper(path))
	}
	w, err := shmem.Create(path, shmem.Options{Capacity: 16, HeartbeatTimeout: 2 * time.Second})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	for _, n := range []string{"victim", "other"} {
		e := shmem.Entity{Kind: wire.KindProcess, State: wire.StateUp}
		_ = e.SetName(n)
		if err := w.Put(&e); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
	}
	if mode == "stuck" && !shmem.FreezeMidWrite(w, shmem.IDOf("victim")) {
		fmt.Println("error: freeze")
		os.Exit(1)
	}
	fmt.Println("ready")
	for {
		w.Beat()
		time.Sleep(20 * time.Millisecond)
	}
}

func startHelper(t *testing.T, mode, path string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FMSHM_HELPER="+mode, "FMSHM_PATH="+path)
	out, err := cmd.StdoutPipe()
	check(t, err)
	cmd.Stderr = os.Stderr
	check(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("helper: %q %v", line, err)
	}
	return cmd
}

func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	check(t, cmd.Process.Signal(syscall.SIGKILL))
	cmd.Wait() // reap it: a zombie still has its pid
}

func TestWriterDiesMidWrite(t *testing.T) {
	p := shmPath(t)
	cmd := startHelper(t, "stuck", p)
	opts := shmem.ReaderOptions{MaxWait: 50 * time.Millisecond}
	r, err := shmem.OpenWith(p, opts)
	check(t, err)
	defer r.Close()
	var e shmem.Entity
	check(t, r.Read(shmem.IDOf("other"), &e))

	// The writer is alive but the slot stays odd: ErrTorn after MaxWait,
	// not a hang.
	t0 := time.Now()
	err = r.Read(shmem.IDOf("victim"), &e)
	el := time.Since(t0)
	checkIs(t, err, shmem.ErrTorn)
	t.Logf("live stuck writer: %v after %v", err, el)
	if el > time.Second {
		t.Fatalf("took %v", el)
	}
	_, _, err = r.Snapshot(nil)
	checkIs(t, err, shmem.ErrTorn)

	// The writer dies (SIGKILL) with the slot odd: ErrWriterDead, fast.
	kill(t, cmd)
	t0 = time.Now()
	err = r.Read(shmem.IDOf("victim"), &e)
	el = time.Since(t0)
	checkIs(t, err, shmem.ErrWriterDead)
	t.Logf("dead writer: %v after %v", err, el)
	if el > time.Second {
		t.Fatalf("took %v", el)
	}
	_, _, err = r.Snapshot(nil)
	checkIs(t, err, shmem.ErrWriterDead)
	checkIs(t, r.Check(), shmem.ErrWriterDead)
	if h := r.Header(); h.WriterAlive {
		t.Fatalf("header says the writer is alive: %+v", h)
	}
	// Consistent slots still read (the last state, from a dead writer).
	check(t, r.Read(shmem.IDOf("other"), &e))
	// A new writer may take over the path of a dead one.
	w, err := shmem.Create(p, shmem.Options{Capacity: 16})
	check(t, err)
	defer w.Close()
	checkIs(t, r.Read(shmem.IDOf("other"), &e), shmem.ErrRecreated)
}

func TestRecreated(t *testing.T) {
	p := shmPath(t)
	cmd := startHelper(t, "hold", p)
	// A live writer's segment cannot be taken over.
	_, err := shmem.Create(p, shmem.Options{Capacity: 16})
	checkIs(t, err, shmem.ErrInUse)

	r, err := shmem.Open(p)
	check(t, err)
	defer r.Close()
	check(t, r.Check())
	gen := r.Generation()
	kill(t, cmd)
	checkIs(t, r.Check(), shmem.ErrWriterDead)

	// A waiter on the old segment is woken when it is replaced. (This one
	// trusts the heartbeat only, which is still fresh, so that it waits for
	// the replacement rather than noticing the dead pid first.)
	rw, err := shmem.OpenWith(p, shmem.ReaderOptions{NoPIDCheck: true})
	check(t, err)
	defer rw.Close()
	waitErr := make(chan error, 1)
	go func() { _, err := rw.WaitTimeout(rw.Seq(), 5*time.Second); waitErr <- err }()
	time.Sleep(20 * time.Millisecond)

	w, err := shmem.Create(p, shmem.Options{Capacity: 16})
	check(t, err)
	defer w.Close()
	var e shmem.Entity
	checkIs(t, r.Read(shmem.IDOf("other"), &e), shmem.ErrRecreated)
	checkIs(t, r.Check(), shmem.ErrRecreated)
	select {
	case err := <-waitErr:
		checkIs(t, err, shmem.ErrRecreated)
	case <-time.After(2 * time.Second):
		t.Fatal("waiter not woken by the replacement")
	}
	r2, err := shmem.Open(p)
	check(t, err)
	defer r2.Close()
	if r2.Generation() <= gen {
		t.Fatalf("generation %d, old %d", r2.Generation(), gen)
	}

	// A segment removed by hand and created anew cannot be marked; Check
	// still notices the new file at the path.
	check(t, w.Close())
	check(t, os.Remove(p))
	w3, err := shmem.Create(p, shmem.Options{Capacity: 16})
	check(t, err)
	defer w3.Close()
	err = r2.Check()
	if !errors.Is(err, shmem.ErrRecreated) && !errors.Is(err, shmem.ErrClosed) {
		t.Fatalf("check: %v", err)
	}
	r3, err := shmem.Open(p)
	check(t, err)
	defer r3.Close()
	check(t, r3.Check())
}

func TestHeartbeatTimeout(t *testing.T) {
	w, err := shmem.NewHeap(shmem.Options{Capacity: 4, HeartbeatTimeout: 300 * time.Millisecond})
	check(t, err)
	r, err := w.Reader()
	check(t, err)
	if h := r.Header(); !h.WriterAlive {
		t.Fatalf("%+v", h)
	}
	time.Sleep(400 * time.Millisecond)
	if h := r.Header(); h.WriterAlive || h.HeartbeatAge < 300*time.Millisecond {
		t.Fatalf("%+v", h)
	}
	checkIs(t, r.Check(), shmem.ErrWriterDead)
	w.Beat()
	check(t, r.Check())
}

package testutil

import (
	"os/exec"
	"testing"
	"time"
)

// Process is a child process a test started (a real fmagent, a client),
// with its standard output and error collected in Out.
type Process struct {
	Cmd    *exec.Cmd
	Out    SyncBuffer
	exited chan error // Wait's result, put back by whoever takes it
}

// StartProcess starts cmd with its output going to the Process's Out, and
// kills it (SIGKILL) and waits for it when the test ends, if it still
// runs.
func StartProcess(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{Cmd: cmd, exited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = &p.Out, &p.Out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmd.Path, err)
		return nil
	}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		p.Wait(time.Minute)
	})
	return p
}

// Wait waits up to d for the process to exit, and returns how it exited
// and whether it did. It may be asked again: the answer stays.
func (p *Process) Wait(d time.Duration) (err error, exited bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err = <-p.exited:
		p.exited <- err
		return err, true
	case <-t.C:
		return nil, false
	}
}

// Exited says, without waiting, whether the process has exited and how.
func (p *Process) Exited() (err error, exited bool) {
	select {
	case err = <-p.exited:
		p.exited <- err
		return err, true
	default:
		return nil, false
	}
}

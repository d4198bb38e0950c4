package testutil

import (
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProcess(t *testing.T) {
	p := StartProcess(t, exec.Command("/bin/sh", "-c", "echo out; echo err >&2; exec sleep 60"))
	WaitFor(t, 5*time.Second, "both lines", func() bool { return len(p.Out.Lines()) == 2 })
	assert.ElementsMatch(t, []string{"out", "err"}, p.Out.Lines())
	_, exited := p.Exited()
	assert.False(t, exited, "it sleeps")
	_, exited = p.Wait(50 * time.Millisecond)
	assert.False(t, exited)

	require.NoError(t, p.Cmd.Process.Kill())
	err, exited := p.Wait(5 * time.Second)
	require.True(t, exited)
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	err2, exited := p.Exited()
	assert.True(t, exited, "asked again, the same answer")
	assert.Equal(t, err, err2)
}

// The process a test leaves running is killed when the test ends.
func TestProcessKilledAtCleanup(t *testing.T) {
	var p *Process
	t.Run("inner", func(t *testing.T) {
		p = StartProcess(t, exec.Command("/bin/sleep", "60"))
	})
	_, exited := p.Exited()
	assert.True(t, exited, "killed and waited for by the inner test's cleanup")
}

func TestStartProcessFails(t *testing.T) {
	f := &fakeTB{TB: t}
	assert.Nil(t, StartProcess(f, exec.Command("/nonexistent/binary")))
	assert.Contains(t, f.failed, "starting")
}

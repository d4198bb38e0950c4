package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/wire"
)

// holdEnv makes the test binary a client that registers a process entity
// tied to itself, says so on stdout and lives until its stdin closes.
const holdEnv = "FMAGENT_TEST_HOLD_CLIENT"

func init() {
	spec := os.Getenv(holdEnv)
	if spec == "" {
		return
	}
	socket, name, _ := strings.Cut(spec, "|")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	c, err := client.Dial(ctx, socket)
	if err == nil {
		_, err = c.Register(ctx, name, client.KindProcess, client.AsProcess())
	}
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hold child:", err)
		os.Exit(1)
	}
	c.Close() // the entity stays tied to this process, not to the connection
	fmt.Println("registered")
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// holdChild starts a process that registers name on socket and lives until
// stop is called.
func holdChild(t *testing.T, socket, name string) (stop func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+socket+"|"+name)
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err, "child for %s", name)
	require.Equal(t, "registered\n", line)
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		in.Close()
		cmd.Wait()
	}
	t.Cleanup(stop)
	return stop
}

// Issue 8: restarting only the agent on a node marked every service and
// process that node owns down, though they still ran. The restarted agent
// adopts what still runs (a process by its pid and start time, a service it
// registered) and only what really died stays down; an adopted process is
// still watched.
func TestAgentRestartAdoptsLiveEntities(t *testing.T) {
	tc := startClusterWith(t, 2, nil)
	waitFormed(t, tc)
	n1, n2 := tc.nodes[0], tc.nodes[1]
	socket := n2.cfg.Paths.Socket
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := n2.client(t)
	mustWrite(t, "register svc/keep", func() error { _, err := c.Register(ctx, "svc/keep", client.KindService); return err })
	stopLives := holdChild(t, socket, "node/2/proc/lives")
	stopDies := holdChild(t, socket, "node/2/proc/dies")
	c.Close()

	up := func(names ...string) func() bool {
		return func() bool {
			for _, name := range names {
				if st, _ := n1.state(name); st != wire.StateUp {
					return false
				}
			}
			return true
		}
	}
	waitShm(t, n1, 5*time.Second, "registered entities up on node 1", up("svc/keep", "node/2/proc/lives", "node/2/proc/dies"))

	// The agent of node 2 stops (its host keeps running); one of its
	// processes dies while it is away; it comes back.
	tc.stopNode(n2)
	stopDies()
	tc.startNode(n2)

	waitShm(t, n1, 15*time.Second, "live entities of node 2 adopted", up("node/2", "svc/keep", "node/2/proc/lives"))
	waitShm(t, n1, 5*time.Second, "the dead process down", func() bool {
		st, _ := n1.state("node/2/proc/dies")
		return st == wire.StateDown
	})
	// And they stay so past the master's grace period for a restarted
	// node's entities.
	time.Sleep(n2.cfg.Timing.Detection()*20 + 2500*time.Millisecond)
	for _, name := range []string{"svc/keep", "node/2/proc/lives"} {
		st, e := n1.state(name)
		require.Equal(t, wire.StateUp, st, "%s after the grace period", name)
		_, n2e := n1.state("node/2")
		require.Equal(t, n2e.Incarnation, e.Incarnation, "%s adopted under node 2's new incarnation", name)
	}
	st, _ := n1.state("node/2/proc/dies")
	require.Equal(t, wire.StateDown, st)

	// The adopted process is watched by the new agent: its exit is seen.
	stopLives()
	waitShm(t, n1, 5*time.Second, "adopted process's exit seen", func() bool {
		st, _ := n1.state("node/2/proc/lives")
		return st == wire.StateDown
	})
}

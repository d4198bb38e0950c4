package agent

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/transport"
	"github.com/fmagent/fmagent/transport/bindtest"
	"github.com/fmagent/fmagent/wire"
	"golang.org/x/sys/unix"
)

// On the fake network (bindtest), whose OnSend hook runs on the sender's
// goroutine and thread.
//
// Issue 13: the API's goroutine sent a request's packets itself, holding
// a.mu, on a thread at the normal policy: the report to the master and,
// on the master, the change to every node. Its first send woke the other
// agents' real-time loops, which preempted it, and its own node's loop,
// woken by the master's change, waited for a.mu meanwhile (0.9 ms in a
// trace of five agents). Every report and every change must leave from the
// real-time loop, or from a request's own goroutine put at the loop's
// priority for the send (submitOffLoop): clients on the master and on the
// other nodes register an entity, take it down and up, and raise and clear
// an alarm. Where SCHED_FIFO is not permitted (not root) nothing runs at
// it, and the sends off the loop are expected at the normal policy.
func TestRequestsAreSentAtRealtimePriority(t *testing.T) {
	tc, nw := startFakeClusterWith(t, 3, nil)
	waitFormed(t, tc)

	sent := recordSenders(t, nw, wire.TypeReport, wire.TypeUpdate)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	master := tc.nodes[0].shm.Header().Master
	sawMaster, sawOther := false, false
	for _, nd := range tc.nodes {
		if wire.NodeID(nd.id) == master {
			sawMaster = true
		} else {
			sawOther = true
		}
		c := nd.client(t)
		name := fmt.Sprintf("svc/sent-at-rt-%d", nd.id)
		_, err := c.Register(ctx, name, client.KindService)
		require.NoError(t, err)
		for _, st := range []client.State{client.StateDown, client.StateUp} {
			_, err = c.SetState(ctx, name, st)
			require.NoError(t, err, "node %d: %v", nd.id, st)
		}
		_, err = c.Raise(ctx, name, "overload", client.SevMajor)
		require.NoError(t, err)
		_, err = c.Clear(ctx, name, "overload")
		require.NoError(t, err)
	}
	byLoop, offLoop, elsewhere := sent.stop()
	require.True(t, sawMaster && sawOther, "clients on the master and on other nodes")

	require.Empty(t, elsewhere, "reports and changes sent by a goroutine other than the real-time loop, at the normal policy")
	require.Positive(t, offLoop[wire.TypeReport], "the followers' reports, sent by the API's goroutine at the loop's priority")
	require.Positive(t, offLoop[wire.TypeUpdate], "the master's changes for its own clients' reports, sent by the API's goroutine")
	t.Logf("sent by the loops: %v; by the requests' goroutines: %v (SCHED_FIFO permitted: %v)", byLoop, offLoop, sent.fifo)
}

// senders records, for the packet types asked for, how many of each type
// the real-time loop sent and how many a request's goroutine sent in
// submitOffLoop (at SCHED_FIFO, where permitted), and the stacks of those
// sent otherwise.
type senders struct {
	nw        *bindtest.Network
	fifo      bool // SCHED_FIFO is permitted here (the agents' loops use it)
	mu        sync.Mutex
	byLoop    map[wire.Type]int
	offLoop   map[wire.Type]int
	elsewhere []string
}

// recordSenders starts recording on nw until stop or the test's end.
func recordSenders(t *testing.T, nw *bindtest.Network, types ...wire.Type) *senders {
	s := &senders{nw: nw, byLoop: map[wire.Type]int{}, offLoop: map[wire.Type]int{},
		fifo: transport.ProbeRealtime(config.Default().Realtime.Priority) == nil}
	nw.OnSend(func(node uint32, n wire.Net, pkt []byte) {
		typ := wire.PeekType(pkt)
		if !slices.Contains(types, typ) {
			return
		}
		attr, err := unix.SchedGetAttr(0, 0) // the sending thread's
		atFIFO := err == nil && attr.Policy == unix.SCHED_FIFO
		buf := make([]byte, 32<<10)
		stack := string(buf[:runtime.Stack(buf, false)])
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case strings.Contains(stack, ".(*agent).rtRun("):
			s.byLoop[typ]++
		case strings.Contains(stack, ".(*agent).submitOffLoop(") && atFIFO == s.fifo:
			s.offLoop[typ]++
		default:
			s.elsewhere = append(s.elsewhere, fmt.Sprintf("node %d, %v (SCHED_FIFO %v):\n%s", node, typ, atFIFO, stack))
		}
	})
	t.Cleanup(func() { nw.OnSend(nil) })
	return s
}

// stop ends the recording and returns what it saw.
func (s *senders) stop() (byLoop, offLoop map[wire.Type]int, elsewhere []string) {
	s.nw.OnSend(nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byLoop, s.offLoop, s.elsewhere
}

// A switchover asked through the API: its call (an election packet to the
// master, which passes it to the vice) is sent by the asking node's
// real-time loop, not by the API's goroutine holding the agent's lock.
func TestSwitchoverIsSentByTheRealtimeLoop(t *testing.T) {
	tc, nw := startFakeClusterWith(t, 3, nil)
	waitFormed(t, tc)
	master := tc.nodes[0].shm.Header().Master
	var member *testNode
	for _, nd := range tc.nodes {
		if wire.NodeID(nd.id) != master {
			member = nd
		}
	}
	before, err := member.client(t).Status(context.Background())
	require.NoError(t, err)
	require.NotZero(t, before.Vice, "a vice-master to hand over to")

	sent := recordSenders(t, nw, wire.TypeElection)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, member.client(t).Switchover(ctx))
	after, err := member.client(t).Status(context.Background())
	require.NoError(t, err)
	require.Equal(t, before.Vice, after.Master, "the vice took over")
	byLoop, _, elsewhere := sent.stop()

	require.Empty(t, elsewhere, "election packets sent by a goroutine other than the real-time loop")
	require.Positive(t, byLoop[wire.TypeElection], "the call and the election, sent by the loops")
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/wire"
)

// stopNode stops nd's agent and waits for it (its done channel keeps the
// result for the cluster's cleanup).
func (tc *testCluster) stopNode(nd *testNode) {
	tc.t.Helper()
	nd.cancel()
	select {
	case err := <-nd.done:
		require.NoError(tc.t, err, "node %d: Run", nd.id)
		nd.done <- err
	case <-time.After(5 * time.Second):
		tc.t.Fatalf("node %d: Run did not return", nd.id)
	}
	if nd.shm != nil {
		nd.shm.Close()
		nd.shm = nil
	}
}

// startNode starts nd's agent again with the same configuration (state
// directory, socket, shared memory) and opens its segment.
func (tc *testCluster) startNode(nd *testNode) {
	t := tc.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	nd.cancel, nd.done = cancel, make(chan error, 1)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", nd.id)
	cfg, done := nd.cfg, nd.done
	go func() { done <- Run(ctx, cfg, log) }()
	openSegment(t, nd, "its restart")
}

// listAll lists every entity nd's API holds, by name, with its alarms'
// causes sorted.
func listAll(c *client.Client) (map[string][]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	all, err := c.List(ctx, client.Filter{})
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, e := range all {
		causes := []string{}
		for _, a := range e.Alarms {
			causes = append(causes, a.Cause)
		}
		sort.Strings(causes)
		out[e.Name] = causes
	}
	return out, nil
}

// Issue 8: restarting the whole cluster lost every alarm and every
// registered entity. Registered entities and uncleared alarms come back on
// every node; what was cleared or unregistered stays gone.
func TestFullClusterRestartKeepsTable(t *testing.T) {
	tc := startClusterWith(t, 3, nil)
	waitFormed(t, tc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	want := map[string][]string{}
	for _, nd := range tc.nodes {
		c := nd.client(t)
		for i := range 3 {
			name := fmt.Sprintf("svc/n%d-%d", nd.id, i)
			mustWrite(t, "register "+name, func() error { _, err := c.Register(ctx, name, client.KindService); return err })
			want[name] = []string{}
		}
		// Alarms raised on this node's and on another node's entities.
		for _, x := range []struct{ name, cause string }{
			{fmt.Sprintf("svc/n%d-0", nd.id), "disk"}, {fmt.Sprintf("svc/n%d-1", nd.id), "cpu"}, {fmt.Sprintf("svc/n%d-1", nd.id), "gone-later"},
		} {
			mustWrite(t, "raise "+x.name, func() error { _, err := c.Raise(ctx, x.name, x.cause, client.SevMajor); return err })
		}
	}
	// Clears and unregisters from other nodes than the writers.
	for _, nd := range tc.nodes {
		c := tc.nodes[nd.id%3].client(t)
		mustWrite(t, "clear", func() error { _, err := c.Clear(ctx, fmt.Sprintf("svc/n%d-1", nd.id), "gone-later"); return err })
		own := nd.client(t)
		mustWrite(t, "unregister", func() error { _, err := own.Unregister(ctx, fmt.Sprintf("svc/n%d-2", nd.id)); return err })
		delete(want, fmt.Sprintf("svc/n%d-2", nd.id))
		want[fmt.Sprintf("svc/n%d-0", nd.id)] = []string{"disk"}
		want[fmt.Sprintf("svc/n%d-1", nd.id)] = []string{"cpu"}
	}
	// A client on node 1 raises an alarm on node/2 too (kept, though node
	// states are re-derived).
	c1 := tc.nodes[0].client(t)
	mustWrite(t, "raise node/2 fan", func() error { _, err := c1.Raise(ctx, "node/2", "fan", client.SevMinor); return err })

	// holds waits until every node's API and shared memory hold want, and
	// node/2 is up; on a time-out it says which check did not hold. Each
	// check is waited for: on a loaded machine a node may be declared down
	// falsely and rejoin (its table replaced by the master's) between the
	// writes and the checks, which is not what this test is about; what
	// was lost or resurrected stays so, and fails here after 10 s.
	holds := func(when string) {
		t.Helper()
		for _, nd := range tc.nodes {
			c := nd.client(t)
			mismatch := func() string {
				got, err := listAll(c)
				if err != nil {
					return fmt.Sprintf("list: %v", err)
				}
				for name, causes := range want {
					if g, ok := got[name]; !ok || fmt.Sprint(g) != fmt.Sprint(causes) {
						return fmt.Sprintf("API: %s has alarms %v (present %v), want %v; the whole list: %v", name, g, ok, causes, got)
					}
				}
				for name := range got {
					if _, ok := want[name]; !ok && strings.HasPrefix(name, "svc/") {
						return fmt.Sprintf("API: %s is listed (cleared or unregistered); the whole list: %v", name, got)
					}
				}
				if g := fmt.Sprint(got["node/2"]); g != "[fan]" {
					return fmt.Sprintf("API: node/2 has alarms %s, want [fan]", g)
				}
				for name := range want {
					st, e := nd.state(name)
					if st == 0 {
						return fmt.Sprintf("shared memory: %s absent", name)
					}
					if int(e.NAlarms) != len(want[name]) {
						return fmt.Sprintf("shared memory: %s has %d alarms, want %d", name, e.NAlarms, len(want[name]))
					}
				}
				e, err := c.Get(ctx, "node/2")
				if err != nil {
					return fmt.Sprintf("get node/2: %v", err)
				}
				if e.State != api.StateUp {
					return fmt.Sprintf("API: node/2 (re-derived) is %v, want up", e.State)
				}
				return ""
			}
			var last string
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				if last = mismatch(); last == "" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("node %d %s: %s", nd.id, when, last)
				}
			}
		}
	}
	// Before the restart: a failure here is not about persistence (a
	// cleared alarm re-asserted after a master change is the core's
	// resurrection, issue 8's first item).
	holds("before the restart")

	// The whole cluster stops, the master last: a master change before the
	// end would let a follower's ledger re-assert what was cleared (the
	// core's resurrection bug, issue 8, first item), which is not what this
	// test is about.
	master := tc.nodes[0].shm.Header().Master
	for _, nd := range tc.nodes {
		if wire.NodeID(nd.id) != master {
			tc.stopNode(nd)
		}
	}
	tc.stopNode(tc.nodes[master-1])
	for _, nd := range tc.nodes {
		tc.startNode(nd)
	}
	waitFormed(t, tc)
	holds("after the restart")
	t.Logf("after a full restart every node holds %d registered entities and their %d uncleared alarms", len(want), 6+1)
}

// mustWrite runs a write until it succeeds, retrying while its outcome is
// unknown (timeout, no master, unavailable: elections happen on a loaded
// machine). A not_found after an unknown outcome means the earlier attempt
// was applied (a clear or unregister). Writes here are idempotent.
func mustWrite(t *testing.T, what string, write func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	unknown := false
	for {
		err := write()
		switch {
		case err == nil:
			return
		case unknown && errors.Is(err, api.ErrNotFound):
			return
		case errors.Is(err, api.ErrTimeout) || errors.Is(err, api.ErrNoMaster) || errors.Is(err, api.ErrUnavailable):
			unknown = true
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(20 * time.Millisecond)
		default:
			t.Fatalf("%s: %v", what, err)
		}
	}
}

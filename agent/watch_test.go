package agent

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/wire"
)

// next returns the next event of w, failing after d.
func next(t *testing.T, w *client.Watch, d time.Duration) api.Event {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		require.True(t, ok, "watch ended: %v", w.Err())
		return ev
	case <-time.After(d):
		t.Fatalf("no event within %v", d)
	}
	return api.Event{}
}

// untilSync collects the events up to and including the EventSync.
func untilSync(t *testing.T, w *client.Watch) (evs []api.Event, sync api.Event) {
	t.Helper()
	for {
		ev := next(t, w, 5*time.Second)
		if ev.Kind == api.EventSync {
			return evs, ev
		}
		evs = append(evs, ev)
	}
}

// Watch starts with a snapshot and then streams from there; a watch resumes
// from a cursor with what it missed; an unresumable cursor gets a snapshot;
// after a failover the watch sees the master change and no alarm announced
// again.
func TestWatchSnapshotResumeFailover(t *testing.T) {
	tc := startCluster(t, 3)
	for _, nd := range tc.nodes {
		waitShm(t, nd, 10*time.Second, "cluster formed", func() bool {
			for i := 1; i <= 3; i++ {
				if st, _ := nd.state(string("node/" + string(rune('0'+i)))); st != wire.StateUp {
					return false
				}
			}
			return nd.shm.Header().Master != 0
		})
	}
	master := tc.nodes[0].shm.Header().Master
	var watched *testNode // a node that is not the master
	for _, nd := range tc.nodes {
		if wire.NodeID(nd.id) != master {
			watched = nd
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := watched.client(t)
	_, err := c.Register(ctx, "svc/w", client.KindService)
	require.NoError(t, err)
	_, err = c.Raise(ctx, "svc/w", "a", client.SevMajor)
	require.NoError(t, err)

	// Snapshot, then live.
	w, err := c.WatchSnapshot(ctx, "svc/")
	require.NoError(t, err)
	snap, sync := untilSync(t, w)
	require.Len(t, snap, 1)
	require.Equal(t, api.EventSnapshot, snap[0].Kind)
	require.Equal(t, "svc/w", snap[0].Entity.Name)
	require.Len(t, snap[0].Entity.Alarms, 1)
	require.False(t, sync.Resumed)
	require.NotZero(t, sync.Agent)
	_, err = c.Raise(ctx, "svc/w", "b", client.SevMinor)
	require.NoError(t, err)
	ev := next(t, w, 5*time.Second)
	require.Equal(t, api.EventRaise, ev.Kind)
	require.Equal(t, "b", ev.Cause)
	require.Equal(t, api.SevMinor, ev.Severity)
	require.Greater(t, ev.Cursor, sync.Cursor)
	// Published in this node's shared memory after the master made it (one
	// host, one clock), and the snapshot's rows are not changes.
	require.False(t, ev.PublishedAt.IsZero(), "a live change carries published_at")
	require.False(t, ev.PublishedAt.Before(ev.Time), "published %v before made %v", ev.PublishedAt, ev.Time)
	require.Less(t, ev.PublishedAt.Sub(ev.Time), 5*time.Second)
	require.True(t, snap[0].PublishedAt.IsZero())
	last := ev
	w.Close()

	// Missed while away: resumed from the cursor.
	_, err = c.Clear(ctx, "svc/w", "b")
	require.NoError(t, err)
	_, err = c.Raise(ctx, "svc/w", "c", client.SevCritical)
	require.NoError(t, err)
	w, err = c.WatchFrom(ctx, "svc/", last.Agent, last.Cursor)
	require.NoError(t, err)
	replay, sync := untilSync(t, w)
	require.True(t, sync.Resumed)
	// Exactly what this node's history holds after the cursor (on a loaded
	// machine a failover may add changes: the owner's re-assertions).
	h, err := c.History(ctx, "svc/", api.MaxHistory)
	require.NoError(t, err)
	var want []api.Event
	for _, e := range h.Events {
		if e.Cursor > last.Cursor && e.Cursor <= sync.Cursor {
			want = append(want, e)
		}
	}
	require.Equal(t, len(want), len(replay), "%+v", replay)
	for i := range want {
		require.Equal(t, want[i].Cursor, replay[i].Cursor)
		require.Equal(t, want[i].Kind, replay[i].Kind)
		require.Equal(t, want[i].Cause, replay[i].Cause)
	}
	// The two writes made while away are in the replay, in their order
	// (with whatever state changes a loaded machine's failover added).
	clearAt, raiseAt := -1, -1
	for i, e := range replay {
		switch {
		case e.Kind == api.EventClear && e.Cause == "b" && clearAt < 0:
			clearAt = i
		case e.Kind == api.EventRaise && e.Cause == "c":
			raiseAt = i
		}
	}
	require.GreaterOrEqual(t, clearAt, 0, "the clear of b is replayed: %+v", replay)
	require.Greater(t, raiseAt, clearAt, "the raise of c is replayed after it: %+v", replay)
	w.Close()

	// Another agent run's cursor: a snapshot instead.
	w, err = c.WatchFrom(ctx, "svc/", last.Agent+1, last.Cursor)
	require.NoError(t, err)
	snap, sync = untilSync(t, w)
	require.False(t, sync.Resumed)
	require.Len(t, snap, 1)
	require.GreaterOrEqual(t, len(snap[0].Entity.Alarms), 2)
	w.Close()

	// Failover: the master stops. The watch of everything, on another
	// node, sees the new master; no alarm of svc/w is announced again. (On
	// a loaded machine the master may have changed already: the one the
	// snapshot names is the one stopped.)
	for try := 0; ; try++ {
		w, err = c.WatchSnapshot(ctx, "")
		require.NoError(t, err)
		_, sync = untilSync(t, w)
		if sync.Master != 0 && sync.Master != wire.NodeID(watched.id) {
			break
		}
		w.Close()
		require.Less(t, try, 20, "no master other than the watched node")
		time.Sleep(100 * time.Millisecond)
	}
	master = sync.Master
	tc.nodes[master-1].cancel()
	deadline := time.After(5 * time.Second)
	newMaster := wire.NodeID(0)
	var after []api.Event
	settle := time.NewTimer(time.Hour)
	for done := false; !done; {
		select {
		case ev, ok := <-w.Events():
			require.True(t, ok, "watch ended: %v", w.Err())
			after = append(after, ev)
			if ev.Kind == api.EventMaster && ev.Master != 0 && ev.Master != master && newMaster == 0 {
				newMaster = ev.Master
				settle.Reset(500 * time.Millisecond) // let the new master's snapshot and alarms come
			}
		case <-settle.C:
			done = true
		case <-deadline:
			t.Fatalf("no new master seen: %+v", after)
		}
	}
	sawRole, sawDown := false, false
	for _, ev := range after {
		if ev.Entity.Name == "svc/w" {
			require.NotEqual(t, api.EventRaise, ev.Kind, "an unchanged alarm announced again after the failover: %+v", ev)
		}
		if ev.Kind == api.EventRole {
			sawRole = true
		}
		if ev.Kind == api.EventState && ev.Entity.Name == "node/"+string(rune('0'+master)) && ev.Entity.State == api.StateDown {
			sawDown = true
		}
	}
	require.True(t, sawDown, "the old master's node down: %+v", after)
	_ = sawRole
	w.Close()

	// History: kept on this node, with the fail count of the old master.
	h, err = c.History(ctx, "", 0)
	require.NoError(t, err)
	require.NotEmpty(t, h.Events)
	var fails uint64
	for _, ec := range h.Counts {
		if ec.Name == "node/"+string(rune('0'+master)) {
			fails = ec.Fails
		}
	}
	require.GreaterOrEqual(t, fails, uint64(1), "the old master failed at least once")
}

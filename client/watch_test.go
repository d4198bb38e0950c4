package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
)

func next(t *testing.T, w *client.Watch) api.Event {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		require.True(t, ok, "watch ended: %v", w.Err())
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
		return api.Event{}
	}
}

func closed(t *testing.T, w *client.Watch) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-w.Events():
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("Events not closed")
		}
	}
}

func TestWatchStreamsInOrder(t *testing.T) {
	a := startAgent(t, "")
	c := dial(t, a.path)
	ctx := ctxT(t)
	w, err := c.Watch(ctx, "node/2/")
	require.NoError(t, err)
	defer w.Close()

	// Watch returned: the agent has subscribed, nothing can be missed.
	_, err = c.Register(ctx, "node/1/link/a", client.KindLink) // not under the prefix
	require.NoError(t, err)
	_, err = c.Register(ctx, "node/2/link/a", client.KindLink)
	require.NoError(t, err)
	_, err = c.Raise(ctx, "node/2/link/a", "link-down", client.SevMajor)
	require.NoError(t, err)
	_, err = c.SetState(ctx, "node/2/link/a", client.StateDown)
	require.NoError(t, err)
	_, err = c.Clear(ctx, "node/2/link/a", "link-down")
	require.NoError(t, err)
	_, err = c.Unregister(ctx, "node/2/link/a")
	require.NoError(t, err)

	want := []api.EventKind{api.EventRegister, api.EventRaise, api.EventState, api.EventClear, api.EventUnregister}
	var seq uint64
	for _, k := range want {
		ev := next(t, w)
		assert.Equal(t, k, ev.Kind)
		assert.Equal(t, "node/2/link/a", ev.Entity.Name)
		assert.Greater(t, ev.Seq, seq)
		seq = ev.Seq
		switch k {
		case api.EventRaise:
			assert.Equal(t, "link-down", ev.Cause)
			assert.Len(t, ev.Entity.Alarms, 1)
		case api.EventState:
			assert.Equal(t, client.StateDown, ev.Entity.State)
		}
	}
	require.NoError(t, w.Close())
	closed(t, w)
	assert.NoError(t, w.Err(), "ended by Close")
	require.Eventually(t, func() bool { return a.fake.WatcherCount() == 0 }, 5*time.Second, time.Millisecond)
}

func TestWatchStopsWhenContextCanceled(t *testing.T) {
	a := startAgent(t, "")
	c := dial(t, a.path)
	ctx, cancel := context.WithCancel(context.Background())
	w, err := c.Watch(ctx, "")
	require.NoError(t, err)
	_, err = c.Register(ctxT(t), "x", client.KindCustom)
	require.NoError(t, err)
	assert.Equal(t, api.EventRegister, next(t, w).Kind)
	assert.Equal(t, 1, a.fake.WatcherCount())

	cancel()
	closed(t, w)
	assert.ErrorIs(t, w.Err(), context.Canceled)
	// The agent saw the client go: its Watch returned.
	require.Eventually(t, func() bool { return a.fake.WatcherCount() == 0 }, 5*time.Second, time.Millisecond)
	require.NoError(t, w.Close())
}

func TestWatchAgentGoesAway(t *testing.T) {
	a := startAgent(t, "")
	c := dial(t, a.path)
	w, err := c.Watch(ctxT(t), "")
	require.NoError(t, err)
	defer w.Close()
	a.stop()
	closed(t, w)
	assert.ErrorIs(t, w.Err(), api.ErrUnavailable)
}

func TestWatchRefused(t *testing.T) {
	a := startAgent(t, "")
	a.fake.Hook = func(ctx context.Context, m string) error {
		if m == "watch" {
			return api.Errorf(api.ErrNoMaster, "not yet joined")
		}
		return nil
	}
	c := dial(t, a.path)
	_, err := c.Watch(ctxT(t), "")
	assert.ErrorIs(t, err, api.ErrNoMaster)
	_, err = c.Watch(ctxT(t), string(make([]byte, 300)))
	assert.ErrorIs(t, err, api.ErrBadRequest)
}

func TestWatchOnHungAgent(t *testing.T) {
	path := hungAgent(t)
	c := dial(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Watch(ctx, "")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

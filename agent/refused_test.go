package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/wire"
)

// The alarm limit has one source: config refuses max_alarms above what a
// shared-memory slot holds, instead of the agent cutting 16 to 8 silently.
func TestAlarmLimitOneSource(t *testing.T) {
	require.Equal(t, shmem.MaxAlarms, config.MaxMaxAlarms)
	cfg := config.Default()
	cfg.MaxAlarms = 16
	err := Run(context.Background(), cfg, nil)
	require.ErrorContains(t, err, "max_alarms = 16: must be in 1..8")
}

// waitFormed waits until every node has a master and sees every node up.
func waitFormed(t *testing.T, tc *testCluster) {
	t.Helper()
	for _, nd := range tc.nodes {
		waitShm(t, nd, 10*time.Second, "cluster formed", func() bool {
			if nd.shm.Header().Master == 0 {
				return false
			}
			for _, o := range tc.nodes {
				if st, _ := nd.state(fmt.Sprintf("node/%d", o.id)); st != wire.StateUp {
					return false
				}
			}
			return true
		})
	}
}

// On the fake network (bindtest): what is tested is the master's refusal
// and the API's answer, not sockets.
//
// Issue 8: with an entity's alarms full, a raise was answered "verdict
// raise, seq N" and stored nowhere. Now a raise no more severe than every
// alarm the entity carries is the error limit and the table does not
// change; a more severe one displaces the least severe (DESIGN §9: a
// critical alarm is never refused in favour of minor ones); a refresh of
// an alarm the entity carries still works.
func TestRaiseOverLimitIsAnError(t *testing.T) {
	const limit = 3
	tc, _ := startFakeClusterWith(t, 2, func(c *config.Config) { c.MaxAlarms = limit })
	waitFormed(t, tc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, nd := range tc.nodes {
		c := nd.client(t)
		name := fmt.Sprintf("svc/full-%d", nd.id)
		_, err := c.Register(ctx, name, client.KindService)
		require.NoError(t, err)
		for i := range limit {
			res, err := c.Raise(ctx, name, fmt.Sprintf("cause-%d", i), client.SevMinor)
			require.NoError(t, err)
			require.Equal(t, "raise", res.Verdict)
		}
		before, err := c.Get(ctx, name)
		require.NoError(t, err)
		require.Len(t, before.Alarms, limit)

		_, err = c.Raise(ctx, name, "another", client.SevMinor)
		require.ErrorIs(t, err, api.ErrLimit, "node %d: a raise over max_alarms, no more severe", nd.id)

		after, err := c.Get(ctx, name)
		require.NoError(t, err)
		require.Len(t, after.Alarms, limit)
		for _, al := range after.Alarms {
			require.NotEqual(t, "another", al.Cause)
		}

		res, err := c.Raise(ctx, name, "outage", client.SevCritical)
		require.NoError(t, err, "node %d: a more severe raise displaces", nd.id)
		require.Equal(t, "raise", res.Verdict)
		after, err = c.Get(ctx, name)
		require.NoError(t, err)
		require.Len(t, after.Alarms, limit)
		causes := map[string]bool{}
		for _, al := range after.Alarms {
			causes[al.Cause] = true
		}
		require.True(t, causes["outage"], "the critical alarm is stored")
		require.False(t, causes["cause-0"], "the oldest least severe alarm was displaced")
		// A refresh of a carried alarm is not a new alarm: applied.
		res, err = c.Raise(ctx, name, "cause-1", client.SevMajor)
		require.NoError(t, err)
		require.Equal(t, "raise", res.Verdict)
	}
}

// On the fake network (bindtest), like TestRaiseOverLimitIsAnError.
//
// Issue 8: past the shared memory's capacity, entities the API listed were
// missing from shared memory ("fmctl get" said "no entity"). A registration
// that does not fit is refused with limit, and everything the API lists is
// in every node's shared memory.
func TestRegisterPastShmCapacity(t *testing.T) {
	const capacity = 16
	tc, _ := startFakeClusterWith(t, 2, func(c *config.Config) { c.Shm.Entities = capacity })
	waitFormed(t, tc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := tc.nodes[1].client(t)
	require.Equal(t, capacity, tc.nodes[1].shm.Capacity())

	var registered, refused int
	for i := 0; i < 2*capacity; i++ {
		_, err := c.Register(ctx, fmt.Sprintf("svc/s%02d", i), client.KindService)
		if err != nil {
			require.ErrorIs(t, err, api.ErrLimit, "register %d", i)
			require.ErrorContains(t, err, "[shm] entities")
			refused++
			continue
		}
		registered++
	}
	require.NotZero(t, registered)
	require.NotZero(t, refused)
	// A report about an unknown name would register it: refused alike.
	_, err := c.Report(ctx, "svc/unknown", "x", client.SevMajor)
	require.ErrorIs(t, err, api.ErrLimit)

	all, err := c.List(ctx, client.Filter{})
	require.NoError(t, err)
	require.LessOrEqual(t, len(all), capacity)
	for _, nd := range tc.nodes {
		waitShm(t, nd, 5*time.Second, "every listed entity in shared memory", func() bool {
			for _, e := range all {
				if st, _ := nd.state(e.Name); st == 0 {
					return false
				}
			}
			return true
		})
	}
	t.Logf("capacity %d: %d registered, %d refused with limit, %d entities listed and in shared memory on both nodes", capacity, registered, refused, len(all))
}

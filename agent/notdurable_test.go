package agent

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/wire"
)

// TestNotDurableStops: a node that cannot save the epoch it must follow
// stops (Run returns ErrNotDurable) without sending anything under it,
// and its peers judge it down; the one whose disk holds the new epoch
// takes over. Three real agents on lo; the state directory of the node
// that is neither master nor vice-master is turned into a file (which
// fails as root too), then the master is stopped.
func TestNotDurableStops(t *testing.T) {
	tc := startCluster(t, 3)
	var master, vice wire.NodeID
	for _, nd := range tc.nodes {
		waitShm(t, nd, 10*time.Second, "cluster formed", func() bool {
			if nd.shm.Header().Master == 0 {
				return false
			}
			for i := 1; i <= 3; i++ {
				if st, _ := nd.state(fmt.Sprintf("node/%d", i)); st != wire.StateUp {
					return false
				}
			}
			return true
		})
	}
	master = tc.nodes[0].shm.Header().Master
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := tc.nodes[0].client(t).Status(ctx)
		if err != nil || st.Vice == 0 {
			return false
		}
		vice = st.Vice
		return true
	}, 5*time.Second, 20*time.Millisecond, "a vice-master")
	var broken, heir *testNode
	for _, nd := range tc.nodes {
		switch wire.NodeID(nd.id) {
		case master, vice:
			if wire.NodeID(nd.id) == vice {
				heir = nd
			}
		default:
			broken = nd
		}
	}
	require.NotNil(t, broken)
	require.NotNil(t, heir)
	epoch := heir.shm.Header().Epoch

	// The agent writes into its state directory meanwhile (the table
	// saver): RemoveAll can meet a file created after it listed the
	// directory ("directory not empty", seen once in make test), so it is
	// tried again until the file takes the directory's place.
	dir := broken.cfg.Paths.StateDir
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		err := os.RemoveAll(dir)
		if err == nil {
			var f *os.File
			if f, err = os.OpenFile(dir, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
				require.NoError(t, f.Close())
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("replacing the state directory %s with a file: %v", dir, err)
		}
	}
	t.Cleanup(func() { os.Remove(dir) })

	tc.nodes[master-1].cancel()

	select {
	case err := <-broken.done:
		require.ErrorIs(t, err, ErrNotDurable, "node %d", broken.id)
		broken.done <- nil // for the cleanup: this failure was the point
	case <-time.After(5 * time.Second):
		t.Fatalf("node %d still running after its master's death, with no disk for the new epoch", broken.id)
	}
	// The heir reigns, at a new epoch, and judged the broken node down
	// (it stopped without a goodbye, which would carry that epoch too).
	waitShm(t, heir, 5*time.Second, "the broken node down at the heir", func() bool {
		h := heir.shm.Header()
		st, _ := heir.state(fmt.Sprintf("node/%d", broken.id))
		return h.Master == wire.NodeID(heir.id) && h.Epoch > epoch && st == wire.StateDown
	})
}

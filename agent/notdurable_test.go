package agent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/persist"
	"github.com/fmagent/fmagent/wire"
)

// TestNotDurableStops: a node that cannot save the epoch it must follow
// stops (Run returns ErrNotDurable) without sending anything under it,
// and its peers judge it down; the one whose disk holds the new epoch
// takes over. Three real agents on lo; the state directory of the node
// that is neither master nor vice-master is turned into a file (which
// fails as root too), then the master is stopped. Every new epoch must be
// saved here (epochReserve 1): with the reserve, the next epoch is on
// disk already (TestFailoverNeedsNoDisk).
func TestNotDurableStops(t *testing.T) {
	epochReserve = 1
	t.Cleanup(func() { epochReserve = 0 })
	tc := startCluster(t, 3)
	master, heir, broken := breakFollowerDisk(t, tc)
	epoch := heir.shm.Header().Epoch

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

// TestFailoverNeedsNoDisk: with the epoch's reserve (core.
// DefaultEpochReserve), a failover saves nothing first. The node whose
// state directory is gone follows the heir at the new epoch and stays up,
// and the heir's state file is not written for its claim. Three real
// agents on lo, as TestNotDurableStops (which, without the reserve, stops
// the same node).
func TestFailoverNeedsNoDisk(t *testing.T) {
	tc := startCluster(t, 3)
	master, heir, broken := breakFollowerDisk(t, tc)
	epoch := heir.shm.Header().Epoch
	heirState := filepath.Join(heir.cfg.Paths.StateDir, persist.FileName)
	before, err := os.ReadFile(heirState)
	require.NoError(t, err)

	tc.nodes[master-1].cancel()

	for _, nd := range []*testNode{heir, broken} {
		waitShm(t, nd, 5*time.Second, "the heir reigning at a new epoch, the old master down", func() bool {
			h := nd.shm.Header()
			st, _ := nd.state(fmt.Sprintf("node/%d", master))
			return h.Master == wire.NodeID(heir.id) && h.Epoch > epoch && st == wire.StateDown
		})
	}
	select {
	case err := <-broken.done:
		broken.done <- err
		t.Fatalf("node %d stopped (%v): the new epoch was within the reserve on its disk", broken.id, err)
	default:
	}
	after, err := os.ReadFile(heirState)
	require.NoError(t, err)
	require.Equal(t, before, after, "the heir's state file written for a claim within its reserve")
}

// breakFollowerDisk waits for tc's master and vice-master and turns the
// state directory of a third node into a file, so that every save it
// tries fails (as root too). It returns the master's ID, the heir and the
// broken node.
func breakFollowerDisk(t *testing.T, tc *testCluster) (master wire.NodeID, heir, broken *testNode) {
	t.Helper()
	master, vice := formedWithVice(t, tc)
	for _, nd := range tc.nodes {
		switch wire.NodeID(nd.id) {
		case master:
		case vice:
			heir = nd
		default:
			broken = nd
		}
	}
	require.NotNil(t, broken)
	require.NotNil(t, heir)

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
	return master, heir, broken
}

// TestEpochSavedWhileMembershipSaveWaits: the membership saves (the saver
// goroutine's, persist.SaveMembers) share no lock with the saves of an
// epoch the real-time loop must have on disk before it sends, so a
// membership save that cannot finish (here its file's lock held by the
// test, as a busy disk would keep its write) does not stop the heir from
// taking over. Four real agents on lo; the heir's membership file is
// locked, a node that is neither master nor heir is stopped (the heir's
// saver is then stuck with the new membership), then the master. Every
// new epoch is saved first here (epochReserve 1), so the heir saves its
// claim.
func TestEpochSavedWhileMembershipSaveWaits(t *testing.T) {
	epochReserve = 1
	t.Cleanup(func() { epochReserve = 0 })
	tc := startCluster(t, 4)
	master, vice := formedWithVice(t, tc)
	heir := tc.nodes[vice-1]
	t.Logf("master %d, heir %d", master, vice)
	epoch := heir.shm.Header().Epoch

	dir := heir.cfg.Paths.StateDir
	lf := lockMembers(t, heir)
	released := false
	release := func() {
		if !released {
			released = true
			require.NoError(t, lf.Close()) // releases the lock
		}
	}
	defer release()
	before, _ := os.ReadFile(persist.MembersPath(dir))

	var other *testNode
	for _, nd := range tc.nodes {
		if id := wire.NodeID(nd.id); id != master && id != vice {
			other = nd
			break
		}
	}
	membersSaverStuck(t, heir, other, lf)
	tc.nodes[master-1].cancel()

	waitShm(t, heir, 5*time.Second, "the heir reigning, the old master down", func() bool {
		h := heir.shm.Header()
		st, _ := heir.state(fmt.Sprintf("node/%d", master))
		return h.Master == wire.NodeID(heir.id) && h.Epoch > epoch && st == wire.StateDown
	})
	st, err := persist.Load(dir)
	require.NoError(t, err)
	require.Greater(t, st.Epoch, epoch, "the new epoch on disk")
	during, _ := os.ReadFile(persist.MembersPath(dir))
	require.Equal(t, before, during, "the membership file untouched while its lock is held")

	// Released, the membership save that waited lands.
	release()
	require.Eventually(t, func() bool {
		after, _ := os.ReadFile(persist.MembersPath(dir))
		return !bytes.Equal(before, after)
	}, 5*time.Second, 10*time.Millisecond, "the membership saved once its file's lock is free")
}

// lockMembers takes the lock of nd's membership file (released when the
// file returned is closed): nd's membership saver then waits, as for a
// write a busy disk keeps waiting.
func lockMembers(t *testing.T, nd *testNode) *os.File {
	t.Helper()
	lf, err := os.OpenFile(filepath.Join(nd.cfg.Paths.StateDir, persist.MembersFileName+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	require.NoError(t, err)
	require.NoError(t, unix.Flock(int(lf.Fd()), unix.LOCK_EX))
	return lf
}

// membersSaverStuck stops other and waits until nd has judged it down and
// nd's membership saver, with the new membership, waits for the lock lf
// holds (lockMembers); it returns the lock file's inode.
func membersSaverStuck(t *testing.T, nd, other *testNode, lf *os.File) uint64 {
	t.Helper()
	other.cancel()
	waitShm(t, nd, 5*time.Second, fmt.Sprintf("the stopped node %d down at node %d", other.id, nd.id), func() bool {
		st, _ := nd.state(fmt.Sprintf("node/%d", other.id))
		return st == wire.StateDown
	})
	var fi unix.Stat_t
	require.NoError(t, unix.Fstat(int(lf.Fd()), &fi))
	require.Eventually(t, func() bool { return flockWaiter(t, fi.Ino) },
		5*time.Second, 5*time.Millisecond, "node %d's membership saver waiting for its file's lock", nd.id)
	return fi.Ino
}

// flockWaiter reports whether /proc/locks shows a process waiting for a
// flock on the file of inode ino (a line "N: -> FLOCK ... MAJ:MIN:INO ...").
func flockWaiter(t *testing.T, ino uint64) bool {
	b, err := os.ReadFile("/proc/locks")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 7 || f[1] != "->" || f[2] != "FLOCK" {
			continue
		}
		if dev := strings.Split(f[6], ":"); len(dev) == 3 && dev[2] == strconv.FormatUint(ino, 10) {
			return true
		}
	}
	return false
}

// formedWithVice waits until every node of tc has a master and sees every
// node up, and until the master has named a vice-master; it returns both.
func formedWithVice(t *testing.T, tc *testCluster) (master, vice wire.NodeID) {
	t.Helper()
	for _, nd := range tc.nodes {
		waitShm(t, nd, 10*time.Second, "cluster formed", func() bool {
			if nd.shm.Header().Master == 0 {
				return false
			}
			for i := 1; i <= len(tc.nodes); i++ {
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
	return master, vice
}

// TestWriteAckedWhileMembershipSaveWaits: a client's write is acknowledged
// once this node's table save is on disk, and that save shares no thread
// with the membership saves, which a busy disk may keep waiting (here the
// membership file's lock is held by the test). Until 4 December 2026 both
// went to one background thread: the write's acknowledgement waited
// behind the stuck membership save and timed out, though nothing it needs
// was waiting. Three real agents on lo, the loops at SCHED_FIFO (where the
// files are written on the background threads); the writer's node is not
// the master, the third node is stopped so that its saver has a new
// membership to save.
func TestWriteAckedWhileMembershipSaveWaits(t *testing.T) {
	tc, agents, _ := startClusterAgents(t, 3)
	master, _ := formedWithVice(t, tc)
	var writer, other *testNode
	for _, nd := range tc.nodes {
		if wire.NodeID(nd.id) == master {
			continue
		}
		if writer == nil {
			writer = nd
		} else {
			other = nd
		}
	}
	a := agents[wire.NodeID(writer.id)]
	a.mu.Lock()
	rtPrio, bgOn := a.rtPrio, a.bg != nil
	a.mu.Unlock()
	require.True(t, rtPrio > 0 && bgOn, "the loop at SCHED_FIFO (%d) with its background threads (%v): the files are written there only then", rtPrio, bgOn)
	c := writer.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Register(ctx, "svc/acked", client.KindService)
	require.NoError(t, err)

	lf := lockMembers(t, writer)
	defer lf.Close()
	ino := membersSaverStuck(t, writer, other, lf)

	wctx, wcancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer wcancel()
	res, err := c.Raise(wctx, "svc/acked", "while-members-wait", client.SevMinor)
	require.NoError(t, err, "the write acknowledged while the membership save waits")
	require.Equal(t, "raise", res.Verdict)
	tab, err := persist.LoadTable(writer.cfg.Paths.StateDir)
	require.NoError(t, err)
	require.NotNil(t, tab)
	require.GreaterOrEqual(t, tab.Seq, res.Seq, "the acknowledged write in the table file")
	require.True(t, flockWaiter(t, ino), "the membership save still waiting")
}

// TestCleanStopSavesExactEpoch: an agent stopped cleanly leaves the exact
// epoch it held in its state file, not its reserve; started again, it
// writes a new reserve above it before it speaks, and the epoch a switchover
// to it then takes is the next one: no jump (core.Node.StopPersist). Three
// real agents on lo: the master is stopped, the vice-master takes over,
// the old master comes back and is handed the reign back.
func TestCleanStopSavesExactEpoch(t *testing.T) {
	tc := startCluster(t, 3)
	master, vice := formedWithVice(t, tc)
	old := tc.nodes[master-1]
	epoch := old.shm.Header().Epoch
	dir := old.cfg.Paths.StateDir

	tc.stopNode(old)
	st, err := persist.Load(dir)
	require.NoError(t, err)
	require.True(t, st.EpochExact, "a clean stop leaves the exact epoch")
	require.Equal(t, epoch, st.Epoch)

	heir := tc.nodes[vice-1]
	waitShm(t, heir, 5*time.Second, "the vice-master reigning", func() bool {
		return heir.shm.Header().Master == vice
	})
	reign := heir.shm.Header().Epoch
	require.Equal(t, epoch+1, reign, "one election")

	tc.startNode(old)
	waitShm(t, old, 5*time.Second, "the old master following the new one", func() bool {
		h := old.shm.Header()
		return h.Master == vice && h.Epoch == reign
	})
	st, err = persist.Load(dir)
	require.NoError(t, err)
	require.False(t, st.EpochExact, "started again, a reserve on disk")
	require.Equal(t, epoch+core.DefaultEpochReserve-1, st.Epoch)

	// The reign handed back to it (the third node stopped, it is the
	// vice-master; a switchover): the next epoch, not one past its reserve.
	for _, nd := range tc.nodes {
		if nd != old && nd != heir {
			tc.stopNode(nd)
		}
	}
	c := old.client(t)
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := c.Status(ctx)
		return err == nil && s.Vice == wire.NodeID(old.id)
	}, 5*time.Second, 10*time.Millisecond, "the old master named vice-master")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, c.Switchover(ctx))
	waitShm(t, old, 5*time.Second, "the old master reigning again", func() bool {
		return old.shm.Header().Master == wire.NodeID(old.id)
	})
	require.Equal(t, reign+1, old.shm.Header().Epoch, "no jump")
}

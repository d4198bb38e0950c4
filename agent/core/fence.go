package core

import (
	"fmt"
	"time"
)

// Self-fencing (DESIGN §2): a node cut off from the cluster must stop its
// services before the others take them over, and the watchdog is how it
// stops: the agent stops kicking it. The decision is here, in the core, so
// the simulator sees it and replays it; the shell only acts on Fence().
//
// A node fences only where that protects the cluster:
//   - it was a member of a formed cluster in this incarnation (it followed,
//     or was, a master while at least one peer was live): a node that never
//     joined (booted before its switch came up, the survivor of a pair that
//     lost power) has no one to protect from itself and keeps kicking;
//   - it has no live peer on either network now;
//   - it has seen no master, itself included, for the fence timeout: a node
//     that the cluster's own quorum rules let lead alone (the vice-master of
//     a two-node pair that claimed, a master that lost one peer) is a
//     master, and does not fence;
//   - the operator did not let it run alone (allow_alone).
//
// It unfences as soon as a master is back: with a device the machine has
// been reset by then; with systemd's watchdog the agent was restarted.

// FenceConfig turns self-fencing on.
type FenceConfig struct {
	Enabled bool
	// Timeout is how long without a master (and without a live peer) an
	// isolated member waits before it fences.
	Timeout time.Duration
}

// FenceStatus is the self-fence decision and what it rests on.
type FenceStatus struct {
	Enabled  bool
	Joined   bool // a member of a formed cluster in this incarnation
	Isolated bool // no live peer on either network
	// NoMasterFor is how long this node has had no master (0 with one).
	NoMasterFor time.Duration
	Fenced      bool
	Timeout     time.Duration
}

// Reason says why the node fenced, "" when it does not (formatted on
// demand: Tick allocates nothing).
func (s FenceStatus) Reason() string {
	if !s.Fenced {
		return ""
	}
	return fmt.Sprintf("self-fence: a member of a formed cluster, no live peer on either network and no master for %v (fence timeout %v)",
		s.NoMasterFor.Round(time.Millisecond), s.Timeout)
}

type fenceState struct {
	cfg        FenceConfig
	joined     bool
	lastMaster time.Time
	st         FenceStatus
}

// SetFence configures self-fencing (off until called).
func (n *Node) SetFence(c FenceConfig) {
	n.fence.cfg = c
	if n.fence.lastMaster.IsZero() {
		n.fence.lastMaster = n.now
	}
	n.fenceTick(n.now)
}

// Fence returns the self-fence decision as of the last Tick.
func (n *Node) Fence() FenceStatus { return n.fence.st }

// fenceTick re-decides; called from Tick.
func (n *Node) fenceTick(now time.Time) {
	f := &n.fence
	if f.lastMaster.IsZero() {
		f.lastMaster = n.start
	}
	live := n.liveCount()
	master := n.el.State().Master
	if master != 0 {
		f.lastMaster = now
		if live > 0 {
			f.joined = true
		}
	}
	st := FenceStatus{Enabled: f.cfg.Enabled, Joined: f.joined, Isolated: live == 0, Timeout: f.cfg.Timeout}
	if master == 0 {
		st.NoMasterFor = now.Sub(f.lastMaster)
	}
	st.Fenced = st.Enabled && st.Joined && st.Isolated && master == 0 && !n.cfg.AllowAlone &&
		st.NoMasterFor >= f.cfg.Timeout
	f.st = st
}

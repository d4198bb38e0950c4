package core_test

import (
	"time"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/wire"
)

// stepAny steps pkt into n as the shell would have read it: a heartbeat
// from the heartbeat socket (StepHeartbeat), anything else from the group
// or unicast socket (Step).
func stepAny(n *core.Node, now time.Time, net wire.Net, pkt []byte) (wire.NodeID, error) {
	if wire.PeekType(pkt) == wire.TypeHeartbeat {
		return n.StepHeartbeat(now, net, pkt)
	}
	return n.Step(now, net, pkt)
}

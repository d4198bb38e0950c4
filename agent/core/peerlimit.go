package core

import (
	"errors"

	"github.com/fmagent/fmagent/wire"
)

// ErrPeerLimit is returned by Step for an authenticated packet from a new
// node when this node already knows wire.MaxPeers peers: a heartbeat's view
// carries at most that many, so a larger cluster cannot be judged right.
// The packet is dropped, the node is not added; the shell says so loudly.
var ErrPeerLimit = errors.New("core: peer limit reached (wire.MaxPeers other nodes); a packet from one more node dropped")

// admitPeer reports whether a packet from sender may create or use a peer.
func (n *Node) admitPeer(sender wire.NodeID) error {
	if _, ok := n.peers[sender]; ok || len(n.peers) < wire.MaxPeers {
		return nil
	}
	return ErrPeerLimit
}

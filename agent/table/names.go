package table

import (
	"strconv"

	"github.com/cespare/xxhash/v2"

	"github.com/fmagent/fmagent/wire"
)

// ID is the entity ID of name: xxhash64 of its bytes. Every node computes it
// the same way, so an ID can travel instead of a name.
func ID(name string) uint64 { return xxhash.Sum64String(name) }

// idBytes is ID for a name still in a packet buffer (no string conversion).
func idBytes(name []byte) uint64 { return xxhash.Sum64(name) }

// Names of the entities the agent itself owns. The layout is part of the
// protocol: every node derives the same IDs from these names.
//
//	node/<id>              the node
//	node/<id>/link/<a|b>   the node's attachment to network A or B
//	node/<id>/proc/<name>  a process on the node
const nodePrefix = "node/"

// NodeName is the entity name of node id.
func NodeName(id wire.NodeID) string {
	var b [32]byte
	return string(appendNode(b[:0], id))
}

// LinkName is the entity name of node id's link on network net.
func LinkName(id wire.NodeID, net wire.Net) string {
	var b [40]byte
	return string(appendLink(b[:0], id, net))
}

// ProcName is the entity name of process name on node id.
func ProcName(id wire.NodeID, name string) string {
	var b [64]byte
	buf := append(appendNode(b[:0], id), "/proc/"...)
	return string(append(buf, name...))
}

// NodeEntityID is ID(NodeName(id)) without building a string: the core calls
// it on every membership event, so it hashes a stack buffer and allocates
// nothing.
func NodeEntityID(id wire.NodeID) uint64 {
	var b [32]byte
	return xxhash.Sum64(appendNode(b[:0], id))
}

// LinkEntityID is ID(LinkName(id, net)), allocation-free like NodeEntityID.
func LinkEntityID(id wire.NodeID, net wire.Net) uint64 {
	var b [40]byte
	return xxhash.Sum64(appendLink(b[:0], id, net))
}

func appendNode(b []byte, id wire.NodeID) []byte {
	b = append(b, nodePrefix...)
	return strconv.AppendUint(b, uint64(id), 10)
}

func appendLink(b []byte, id wire.NodeID, net wire.Net) []byte {
	b = appendNode(b, id)
	b = append(b, "/link/"...)
	// Networks are letters, as operators name them: a, b.
	return append(b, 'a'+byte(net))
}

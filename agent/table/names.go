package table

import (
	"strconv"
	"strings"

	"github.com/fmagent/fmagent/wire"
)

// ID is the entity ID of name (wire.EntityID: xxhash64 of its bytes). Every
// node computes it the same way, so an ID can travel instead of a name.
func ID(name string) uint64 { return wire.EntityID(name) }

// idBytes is ID for a name still in a packet buffer (no string conversion).
func idBytes(name []byte) uint64 { return wire.EntityIDBytes(name) }

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
	return wire.EntityIDBytes(appendNode(b[:0], id))
}

// LinkEntityID is ID(LinkName(id, net)), allocation-free like NodeEntityID.
func LinkEntityID(id wire.NodeID, net wire.Net) uint64 {
	var b [40]byte
	return wire.EntityIDBytes(appendLink(b[:0], id, net))
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

// KindOfName infers an entity's kind from the naming convention above
// (svc/... is a service; anything else not under node/ is custom).
func KindOfName(name string) wire.EntityKind {
	switch {
	case strings.Contains(name, "/link/"):
		return wire.KindLink
	case strings.Contains(name, "/proc/"):
		return wire.KindProcess
	case strings.HasPrefix(name, nodePrefix) && strings.Count(name, "/") == 1:
		return wire.KindNode
	case strings.HasPrefix(name, "svc/"):
		return wire.KindService
	}
	return wire.KindCustom
}

// NodeOfName returns N for a name under node/N (node/N itself or
// node/N/...), and false for any other name.
func NodeOfName(name string) (wire.NodeID, bool) {
	if !strings.HasPrefix(name, nodePrefix) {
		return 0, false
	}
	rest := name[len(nodePrefix):]
	var id uint64
	i := 0
	for ; i < len(rest) && rest[i] >= '0' && rest[i] <= '9' && id <= 1<<32-1; i++ {
		id = id*10 + uint64(rest[i]-'0')
	}
	if i == 0 || id == 0 || id > 1<<32-1 || (i < len(rest) && rest[i] != '/') {
		return 0, false
	}
	return wire.NodeID(id), true
}

// OwnerOfName is the owner an entity first named in a report gets:
// "node/N/..." is owned by N; anything else by the reporter.
func OwnerOfName(name string, reporter wire.NodeID) wire.NodeID {
	if n, ok := NodeOfName(name); ok {
		return n
	}
	return reporter
}

package agent

import (
	"time"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/transport"
	"github.com/fmagent/fmagent/wire"
)

// raised checks, once this node's table has reached seq, that the raise the
// master answered with seq took effect, and returns ErrLimit if it did not:
// a write not applied is an error, never a success.
//
// The master numbers a change before its table applies it; a raise the
// table refuses (the entity already carries max_alarms alarms) still
// consumes its seq on every node and changes nothing. The core's answer
// does not (yet) say so, so the shell reads the outcome back: the entity is
// here with its alarms full, the alarm is not, and nothing changed the
// entity at or after seq: then the raise at seq was refused. If a later write touched the entity
// (or removed it) the raise may have been applied and then superseded, and
// it is answered as applied.
func (a *agent) raised(name, cause string, seq uint64) error {
	if seq == 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.lookup(name)
	if !ok {
		return nil
	}
	limit := a.core.Table().MaxAlarms()
	if _, ok := e.Alarm(cause); ok || e.ChangedSeq >= seq || len(e.Alarms) < limit {
		// Applied; or applied and superseded; or not here for another
		// reason than the limit (a table replaced by a new master's
		// snapshot, where seqs are another master's): the master's
		// answer stands.
		return nil
	}
	return api.Errorf(api.ErrLimit, "alarm %q on %q was not raised (seq %d refused): the entity carries %d alarms, the limit (max_alarms) is %d; clear one first",
		cause, name, seq, len(e.Alarms), limit)
}

// roomFor returns ErrLimit if registering the entity id, which this node's
// table does not hold, would exceed what this node's shared memory holds:
// such a registration is refused, never applied and left out of shared
// memory. mu held.
//
// It is this node's own resource, checked where the request comes in; an
// entity another node registers past this node's capacity (nodes configured
// with different [shm] entities) is counted in fmagent_shm_errors_total and
// logged at each commit that cannot publish it.
func (a *agent) roomFor(id uint64, name string) error {
	if a.shm == nil {
		return nil
	}
	tab := a.core.Table()
	if _, ok := tab.Get(id); ok {
		return nil
	}
	if n, c := tab.Len(), a.shm.Capacity(); n >= c {
		return api.Errorf(api.ErrLimit, "%q was not registered: the table holds %d entities and this node's shared memory holds %d ([shm] entities)", name, n, c)
	}
	return nil
}

// peerLimit logs, at most once a minute, that a node beyond the peer limit
// is being ignored: the cluster is larger than an agent can follow.
func (a *agent) peerLimit(m *transport.Message) {
	now := time.Now()
	if now.Sub(a.peerLimitLogged) < time.Minute {
		return
	}
	a.peerLimitLogged = now
	a.log.Error("peer limit reached: packets from one more node are dropped; the cluster has more nodes than an agent can follow",
		"limit", wire.MaxPeers, "net", netName(m.Net), "from", m.From.String())
}

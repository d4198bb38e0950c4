package api

import "strings"

// Requests: what a client asks.

// RegisterRequest creates an entity owned by this node.
type RegisterRequest struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// Process ties the entity to the calling process (the peer of the
	// connection, by SO_PEERCRED): the agent marks it down when that
	// process exits.
	Process bool `json:"process,omitempty"`
	Txn     bool `json:"txn,omitempty"` // apply the change as a cluster transaction
}

// UnregisterRequest removes an entity.
type UnregisterRequest struct {
	Name string `json:"name"`
}

// ReportRequest is a fault: "I believe Name is broken". The master's plugin
// chain decides what becomes of it.
type ReportRequest struct {
	Name     string   `json:"name"`
	Cause    string   `json:"cause,omitempty"`
	Severity Severity `json:"severity,omitempty"` // default indeterminate
	Txn      bool     `json:"txn,omitempty"`
}

// RaiseRequest raises (or refreshes) the alarm Cause on Name.
type RaiseRequest struct {
	Name     string   `json:"name"`
	Cause    string   `json:"cause"`
	Severity Severity `json:"severity"`
}

// ClearRequest clears the alarm Cause on Name.
type ClearRequest struct {
	Name  string `json:"name"`
	Cause string `json:"cause"`
}

// SetStateRequest is the owner speaking for its own entity.
type SetStateRequest struct {
	Name  string `json:"name"`
	State State  `json:"state"`
}

// GetRequest reads one entity.
type GetRequest struct {
	Name string `json:"name"`
}

// ListRequest reads the entities matching every filter given.
type ListRequest struct {
	Prefix      string `json:"prefix,omitempty"`       // name prefix
	Kind        Kind   `json:"kind,omitempty"`         // "" any
	State       State  `json:"state,omitempty"`        // "" any
	AlarmedOnly bool   `json:"alarmed_only,omitempty"` // only entities with an alarm
}

// Match reports whether e passes the filters of r.
func (r *ListRequest) Match(e *Entity) bool {
	return strings.HasPrefix(e.Name, r.Prefix) &&
		(r.Kind == "" || e.Kind == r.Kind) &&
		(r.State == "" || e.State == r.State) &&
		(!r.AlarmedOnly || len(e.Alarms) > 0)
}

// WatchRequest subscribes to the changes of the entities whose name starts
// with Prefix ("" for all).
type WatchRequest struct {
	Prefix string `json:"prefix,omitempty"`
	// Snapshot: start with every matching entity (EventSnapshot) and an
	// EventSync, then stream the changes after it.
	Snapshot bool `json:"snapshot,omitempty"`
	// From and Agent resume a watch: the events after cursor From of agent
	// run Agent (an EventSync's), replayed from the agent's history, then
	// an EventSync (Resumed), then live. If the history no longer holds
	// them (or the agent restarted), a snapshot is sent instead.
	From  uint64 `json:"from,omitempty"`
	Agent uint64 `json:"agent,omitempty"`

	ready func() // set by the server; see Ready
}

// Ready tells the server that the Handler has subscribed: the server then
// acknowledges the Watch, and the client's Watch call returns. A Handler's
// Watch must call Ready (or send an event, which implies it) once every
// change from then on will reach send; until then the client waits. Calling
// it more than once is harmless.
func (r *WatchRequest) Ready() {
	if r.ready != nil {
		r.ready()
	}
}

// StatusRequest has no fields.
type StatusRequest struct{}

// SwitchoverRequest asks the master to hand over to the vice-master. It has
// no fields.
type SwitchoverRequest struct{}

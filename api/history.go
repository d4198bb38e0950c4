package api

import (
	"context"
	"time"

	"github.com/fmagent/fmagent/wire"
)

// OpHistory asks for the agent's recent history (HistoryRequest ->
// HistoryResult). Served only by a Handler that also implements
// HistoryHandler; others answer unavailable.
const OpHistory Op = 0x0e

// Events of a Watch about the cluster rather than one entity: delivered to
// a watch of every entity (Prefix "").
const (
	EventMaster EventKind = "master" // the master or epoch changed (Master, Epoch; Master 0: none)
	EventRole   EventKind = "role"   // this node's role changed (Role)
	EventStale  EventKind = "stale"  // no word from a master for the stale timeout
	EventFresh  EventKind = "fresh"  // a master again after stale
	// EventSnapshot is one entity of a Watch's initial snapshot
	// (WatchRequest.Snapshot, or a resume the history no longer covers).
	EventSnapshot EventKind = "snapshot"
	// EventSync ends the snapshot (or the replay of a resume): every event
	// after it is live. Its Cursor is where the stream stands and Agent the
	// agent run the cursors belong to; Resumed says whether the stream
	// resumed after WatchRequest.From (true) or started over with a
	// snapshot (false).
	EventSync EventKind = "sync"
)

// HistoryHandler is implemented by a Handler that keeps a history.
type HistoryHandler interface {
	History(ctx context.Context, req *HistoryRequest) (*HistoryResult, error)
}

// HistoryRequest asks for the most recent history entries.
type HistoryRequest struct {
	// Limit is the most entries returned (newest last); 0: DefaultHistory.
	Limit int `json:"limit,omitempty"`
	// Prefix keeps only the entries of entities whose name starts with it
	// (cluster entries, with no entity, only with Prefix "").
	Prefix string `json:"prefix,omitempty"`
}

// DefaultHistory is the number of history entries returned by default; the
// agent keeps more (see the agent's history size).
const DefaultHistory = 50

// MaxHistory is the largest Limit.
const MaxHistory = 4096

// Validate checks r.
func (r *HistoryRequest) Validate() error {
	if r.Limit < 0 || r.Limit > MaxHistory {
		return Errorf(ErrBadRequest, "limit %d: must be in 0..%d", r.Limit, MaxHistory)
	}
	return checkText("prefix", r.Prefix, wire.MaxName, false)
}

// HistoryResult is the recent history of this node's table and cluster
// view, and the per-entity counts.
type HistoryResult struct {
	// Agent is this agent run; Cursor the newest entry's cursor.
	Agent  uint64  `json:"agent"`
	Cursor uint64  `json:"cursor"`
	Events []Event `json:"events"` // oldest first; never null
	// Counts are the per-entity fail and flap counts since the agent
	// started, for the entities with at least one state change or alarm.
	Counts []EntityCounts `json:"counts"` // never null
}

// EntityCounts are the failure counts of one entity, as this node saw it.
type EntityCounts struct {
	Name     string    `json:"name"`
	Fails    uint64    `json:"fails"`  // transitions to down
	Flaps    uint64    `json:"flaps"`  // state changes in the last FlapWindow
	Raises   uint64    `json:"raises"` // alarms raised (new, not refreshed)
	LastFail time.Time `json:"last_fail,omitzero"`
	State    State     `json:"state,omitempty"`
}

// FlapWindow is the window Flaps counts state changes in.
const FlapWindow = 10 * time.Minute

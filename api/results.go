package api

import (
	"encoding/json"
	"time"

	"github.com/fmagent/fmagent/wire"
)

// Results: what the agent answers.

// Alarm is an active alarm on an entity.
type Alarm struct {
	Cause    string      `json:"cause"`
	Severity Severity    `json:"severity"`
	RaisedAt time.Time   `json:"raised_at"` // RFC 3339 with nanoseconds, master's clock
	RaisedBy wire.NodeID `json:"raised_by"` // node whose report raised it
}

// Entity is one row of the cluster table.
type Entity struct {
	ID          ID          `json:"id"` // xxhash64 of Name, "0x%016x"
	Name        string      `json:"name"`
	Kind        Kind        `json:"kind"`
	Owner       wire.NodeID `json:"owner"` // node that speaks for it
	State       State       `json:"state"`
	Incarnation uint64      `json:"incarnation"`
	ChangedAt   time.Time   `json:"changed_at"`  // time of the last change, master's clock
	ChangedSeq  uint64      `json:"changed_seq"` // table seq of the last change
	ChangedBy   wire.NodeID `json:"changed_by"`  // node whose report caused it
	Alarms      []Alarm     `json:"alarms"`      // never null: [] when none
	// Version is that of the entity's latest registration (see
	// ReportResult.Version); in a register reply, that registration's.
	Version *WriteVersion `json:"version,omitempty"`
}

// MarshalJSON writes alarms as [] rather than null when there are none, so
// the JSON shape is stable.
// Times are written in UTC.
func (e Entity) MarshalJSON() ([]byte, error) {
	type plain Entity
	alarms := make([]Alarm, len(e.Alarms))
	for i, a := range e.Alarms {
		a.RaisedAt = a.RaisedAt.UTC()
		alarms[i] = a
	}
	e.Alarms = alarms
	e.ChangedAt = e.ChangedAt.UTC()
	return json.Marshal(plain(e))
}

// Links is how one node hears a peer on each of the two networks.
type Links struct {
	A bool `json:"a"`
	B bool `json:"b"`
}

// Member is one node of the cluster as this node sees it.
type Member struct {
	Node        wire.NodeID `json:"node"`
	Incarnation uint64      `json:"incarnation"`
	Role        Role        `json:"role"`
	State       State       `json:"state"`
	Links       Links       `json:"links"` // as this node hears the member
	Priority    uint8       `json:"priority"`
	Eligible    bool        `json:"eligible"` // may become master
	// Bound is this node's detection bound for the member: the configured
	// one, or wider after a false down (agent/core/detector.go); 0 for
	// this node itself.
	Bound time.Duration `json:"bound_ns,omitempty"`

	// Appended (issue 11): the member's software version and timing, as
	// its heartbeats say, and when this node last heard it on each network.
	Version  string    `json:"version,omitempty"`
	Interval Duration  `json:"interval,omitempty"`
	Misses   int       `json:"misses,omitempty"`
	HeardA   time.Time `json:"heard_a,omitzero"`
	HeardB   time.Time `json:"heard_b,omitzero"`
}

// Duration is a time.Duration written in JSON as its string ("10ms").
type Duration time.Duration

// MarshalText writes d as time.Duration's String.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads a time.ParseDuration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// Timing is the failure detector's timing in force on a node.
type Timing struct {
	Profile   string   `json:"profile,omitempty"`
	Interval  Duration `json:"interval"`
	Misses    int      `json:"misses"`
	Detection Duration `json:"detection"`
	// Overruns counts this agent's wake-ups that the machine made later
	// than the profile tolerates, (misses − 1) × interval, since start:
	// every peer heard the node silent past the bound. Above zero, the
	// machine cannot hold the profile. WorstWake is the latest the
	// machine woke the agent's real-time loop since start (its part of a
	// late wake-up: not the agent's own yields and lock waits). Appended
	// (issue 13); absent from agents that do not report them.
	Overruns  uint64   `json:"overruns,omitempty"`
	WorstWake Duration `json:"worst_wake,omitempty"`
}

// Quorum is the cold-start rule's view: the persisted membership and
// whether enough of it is present.
type Quorum struct {
	Members []wire.NodeID `json:"members"`
	Present int           `json:"present"`
	Needed  int           `json:"needed"`
	Ok      bool          `json:"ok"`
}

// Status is the agent's view of itself and the cluster.
type Status struct {
	Node        wire.NodeID `json:"node"`
	Cluster     uint32      `json:"cluster"`
	Role        Role        `json:"role"`
	Epoch       uint64      `json:"epoch"`
	Master      wire.NodeID `json:"master"` // 0: none
	Vice        wire.NodeID `json:"vice"`   // 0: none
	Stale       bool        `json:"stale"`  // no word from the master for longer than the stale timeout
	TableSeq    uint64      `json:"table_seq"`
	Digest      Digest      `json:"digest"`
	Incarnation uint64      `json:"incarnation"`
	Shm         string      `json:"shm"`     // this agent's shared-memory segment ("" if none)
	Members     []Member    `json:"members"` // never null

	// Appended (issue 11).
	Version string `json:"version,omitempty"`
	Timing  Timing `json:"timing"`
	Quorum  Quorum `json:"quorum"`
	// Refused: this node found its node_id in use and refused to join.
	Refused bool `json:"refused,omitempty"`
	// Partitions: for each network ("a", "b") split into parts, the parts
	// as this node sees them; absent when whole.
	Partitions map[string][][]wire.NodeID `json:"partitions,omitempty"`
	// Watchdog is the watchdog and the agent's loops' health (nil from an
	// agent that does not report it).
	Watchdog *WatchdogStatus `json:"watchdog,omitempty"`
	// ExitWatch is the exit watch's connections (nil from an agent that
	// does not report it).
	ExitWatch *ExitWatchStatus `json:"exit_watch,omitempty"`
}

// ExitWatchStatus is the exit watch (docs/DESIGN.md §4): the TCP
// connections over which a killed agent is seen at once, not at the
// detection time.
type ExitWatchStatus struct {
	// Listening: the agent accepts followers' connections; false when its
	// listener could not open (the watch is off; the agent's log says why).
	Listening bool `json:"listening"`
	// OwnTable: the connections are held by a thread with a file table
	// of its own, so a kill -9 of this agent ends them before its memory
	// is freed (false: after, about 3 ms later; the agent's log says
	// why). nil: not said (an agent from before 3 December 2026).
	OwnTable *bool `json:"own_table,omitempty"`
	// Master is the master this node holds its connection to (0: none:
	// this node is the master, has none, or has not connected yet).
	Master wire.NodeID `json:"master,omitempty"`
	// Followers are the nodes connected to this one (its followers, when
	// it is master). Never null.
	Followers []wire.NodeID `json:"followers"`
	// Taken and Ignored count connections that ended without the goodbye
	// byte, taken by the core as the peer's exit or not (another
	// incarnation, a peer already gone); Refused the connections that did
	// not authenticate; DialFailures the failed attempts to connect to the
	// master.
	Taken        uint64 `json:"taken"`
	Ignored      uint64 `json:"ignored"`
	Refused      uint64 `json:"refused"`
	DialFailures uint64 `json:"dial_failures"`
}

// MarshalJSON writes members as [] rather than null.
func (s Status) MarshalJSON() ([]byte, error) {
	type plain Status
	if s.Members == nil {
		s.Members = []Member{}
	}
	return json.Marshal(plain(s))
}

// EventKind is what happened to an entity.
type EventKind string

// Event kinds.
const (
	EventState      EventKind = "state"
	EventRaise      EventKind = "raise"
	EventClear      EventKind = "clear"
	EventRegister   EventKind = "register"
	EventUnregister EventKind = "unregister"
)

// Event is one table change streamed by Watch.
type Event struct {
	Seq    uint64    `json:"seq"` // table seq of the change
	Kind   EventKind `json:"kind"`
	Cause  string    `json:"cause,omitempty"` // with raise and clear: the alarm's cause
	Entity Entity    `json:"entity"`          // the entity after the change (before it, for unregister)

	// Appended (history.go). Cursor numbers the events of this agent run
	// (Agent), one by one: what a Watch resumes from. Time is when the
	// change was made (master's clock for table changes); By the node
	// whose report made it. PublishedAt, for a change of the table, is
	// when this node published it in its shared memory (this node's
	// clock, just after the transaction's commit): PublishedAt - Time is
	// how long the change took to reach this node's readers (across
	// machines, plus the offset between the two clocks).
	Cursor      uint64      `json:"cursor,omitempty"`
	Agent       uint64      `json:"agent,omitempty"`
	Time        time.Time   `json:"time,omitzero"`
	PublishedAt time.Time   `json:"published_at,omitzero"`
	By          wire.NodeID `json:"by,omitempty"`
	Severity    Severity    `json:"severity,omitempty"` // with raise
	Master      wire.NodeID `json:"master,omitempty"`   // with master, sync
	Epoch       uint64      `json:"epoch,omitempty"`    // with master, sync
	Role        Role        `json:"role,omitempty"`     // with role, sync
	Resumed     bool        `json:"resumed,omitempty"`  // with sync
}

// ReportResult is the outcome of a write that went through the master.
type ReportResult struct {
	// Seq is the table seq of the resulting change, 0 if the plugins
	// ignored the report (or it changed nothing).
	Seq uint64 `json:"seq"`
	// Verdict names what the plugin chain decided, e.g. "raise",
	// "clear", "down", "up", "blame-reporter", "ignore".
	Verdict string `json:"verdict"`
	// Version is the write's place in the cluster's order (DESIGN §9, the
	// consistency model): of two acknowledged writes on the same entity or
	// alarm, the table keeps the one with the higher version, also when
	// they were acknowledged on the two sides of a split brain. Nil when
	// nothing was written.
	Version *WriteVersion `json:"version,omitempty"`
}

// WriteVersion orders acknowledged writes: by Epoch (of the master that
// applied the write), then Seq (in that master's table), then Master.
type WriteVersion struct {
	Epoch  uint64      `json:"epoch"`
	Seq    uint64      `json:"seq"`
	Master wire.NodeID `json:"master"`
}

// VersionOf converts a write version; nil for the zero version.
func VersionOf(v wire.WriteVersion) *WriteVersion {
	if v.IsZero() {
		return nil
	}
	return &WriteVersion{Epoch: v.Epoch, Seq: v.Seq, Master: v.Node}
}

// Less reports whether v is older than w (a nil version is older than any
// other).
func (v *WriteVersion) Less(w *WriteVersion) bool {
	switch {
	case w == nil:
		return false
	case v == nil:
		return true
	}
	return wire.WriteVersion{Epoch: v.Epoch, Seq: v.Seq, Node: v.Master}.Less(wire.WriteVersion{Epoch: w.Epoch, Seq: w.Seq, Node: w.Master})
}

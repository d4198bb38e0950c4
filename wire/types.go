// Package wire defines every message fmagent nodes exchange on the network and
// their binary encoding. It does no I/O: encoders append into caller-owned
// buffers and decoders fill caller-owned structs whose byte-slice fields alias
// the packet buffer, so the heartbeat and update paths allocate nothing.
//
// A datagram is: Header (fixed size, big-endian) | body | MAC (16 bytes).
// The MAC is HMAC-SHA256 over header and body with the cluster key, truncated
// to 16 bytes. No datagram is longer than MaxDatagram.
package wire

// Protocol constants.
const (
	Magic   uint16 = 0x464d // "FM"
	Version uint8  = 6      // 2: Report.StateVer, ChangeImplicit; 3: heartbeats on their own port; 4: Change.Req; 5: ChangeApplied in snapshots; 6: ChangeReqDisplaced

	// MaxDatagram is the largest datagram fmagent ever sends: the MTU seen
	// on real hosts here, so nothing is fragmented.
	MaxDatagram = 1400
	// MACSize is the length of the truncated HMAC-SHA256 trailer.
	MACSize = 16

	// MaxPeers bounds the per-link view a heartbeat carries, and so the
	// cluster size.
	MaxPeers = 64
	// MaxChanges bounds the changes one update, prepare or snapshot chunk
	// carries (the 1400-byte limit usually stops a batch sooner).
	MaxChanges = 64
	// MaxName is the longest entity name; MaxCause the longest probable cause.
	MaxName  = 200
	MaxCause = 64
)

// NodeID identifies a node in the cluster. 0 means "none".
type NodeID uint32

// Net identifies one of the two redundant networks.
type Net uint8

const (
	NetA Net = 0
	NetB Net = 1
	// NumNets is the number of redundant networks.
	NumNets = 2
)

// Type is the message type carried in the header.
type Type uint8

const (
	TypeHeartbeat Type = 1 + iota
	TypeElection
	TypeUpdate
	TypePrepare
	TypeAck
	TypeCommit
	TypeNack
	TypeSnapshot
	TypeReport
	TypeLeave
)

// Header flags.
const (
	// FlagPriority marks a message that must go first (down changes,
	// elections): high TOS, SO_PRIORITY, both networks at once.
	FlagPriority uint8 = 1 << 0
)

// Header is the fixed part in front of every message.
type Header struct {
	Type        Type
	Flags       uint8
	Cluster     uint32 // cluster ID: packets of another cluster are rejected
	Sender      NodeID
	Incarnation uint64 // sender's boot-unique incarnation
	Epoch       uint64 // sender's election term
	Seq         uint64 // sender's packet sequence, for the replay window
	Length      uint16 // body length, set by the encoder
}

// Role is what a node is in the election.
type Role uint8

const (
	RoleJoining Role = iota // listening, has not chosen a master yet
	RoleMember
	RoleVice
	RoleMaster
)

func (r Role) String() string {
	switch r {
	case RoleJoining:
		return "joining"
	case RoleMember:
		return "member"
	case RoleVice:
		return "vice-master"
	case RoleMaster:
		return "master"
	}
	return "unknown"
}

// PeerView is what the sender of a heartbeat hears of one peer.
type PeerView struct {
	Node        NodeID
	Incarnation uint64
	Links       uint8 // bit n set: the sender hears this peer on Net n; see LinkFenced
}

// LinkFenced, set in PeerView.Links by a master, tells that peer it is down
// at the incarnation named: it is heard only to be told so, and must come
// back with a new incarnation.
const LinkFenced uint8 = 0x80

// LinkRecent, set in PeerView.Links, says the sender heard that peer
// recently (within its detection bound less three intervals): a member's
// vouch that the peer is alive (agent/core/detector.go).
const LinkRecent uint8 = 0x40

// Heartbeat is sent on both networks every interval by every node.
type Heartbeat struct {
	Role       Role
	Priority   uint8
	Eligible   bool   // may become master
	Master     NodeID // the master the sender follows (0: none)
	Vice       NodeID // the vice-master as the sender knows it
	AppliedSeq uint64 // latest table seq applied (the master's: latest issued)
	Generation uint64 // persisted membership generation
	NPeers     uint8
	Peers      [MaxPeers]PeerView
	// TableEpoch is the epoch of the master whose table the sender holds
	// (with AppliedSeq, how up to date it is: the election compares them
	// as raft compares logs).
	TableEpoch uint64

	// Appended after the peers (a heartbeat without them decodes with
	// these zero): the sender's timing, so that a mismatch between nodes
	// is seen and logged rather than read as failures, and its version.
	IntervalMicros uint32 // heartbeat interval (0: not said)
	Misses         uint8  // silent intervals before a peer is lost
	VersionLen     uint8
	Version        [MaxVersion]byte
}

// MaxVersion is the longest version string a heartbeat carries.
const MaxVersion = 32

// SetVersion sets the heartbeat's version string, cut to MaxVersion.
func (m *Heartbeat) SetVersion(v string) { m.VersionLen = uint8(copy(m.Version[:], v)) }

// VersionString returns the version string (allocates).
func (m *Heartbeat) VersionString() string { return string(m.Version[:min(m.VersionLen, MaxVersion)]) }

// ElectionKind is the step of the bully election a message carries.
type ElectionKind uint8

const (
	// ElectCall: the sender found no master and calls an election.
	ElectCall ElectionKind = 1
	// 2 is reserved: the bully's "answer" ("I am alive, stand down") is the
	// better candidate's heartbeat, which carries its rank, so no message
	// is needed for it (docs/DESIGN.md §9). A decoder refuses it.

	// ElectCoordinator: the sender is master from the header's epoch on.
	ElectCoordinator ElectionKind = 3
)

// Election is a bully-election message; the header's epoch is the term it is about.
type Election struct {
	Kind       ElectionKind
	Priority   uint8
	Generation uint64
	Vice       NodeID // with ElectCoordinator: the vice-master named
}

// ChangeKind is what one table change does.
type ChangeKind uint8

const (
	// ChangeRegister creates (or re-creates) an entity with Name, EntityKind,
	// Owner, State and Incarnation.
	ChangeRegister ChangeKind = 1 + iota
	// ChangeState sets State (and Incarnation) of an entity.
	ChangeState
	// ChangeRaise adds (or refreshes) the alarm Cause with Severity.
	ChangeRaise
	// ChangeClear removes the alarm Cause.
	ChangeClear
	// ChangeUnregister removes an entity.
	ChangeUnregister
	// ChangeApplied is not a change to the table but a mark, carried only
	// in snapshots after the table's changes: the table holds a client's
	// request applied by a master (By: the reporter, Req: the request's
	// ID, Seq and Ver: the change that master marked, At: when). A node
	// whose table came in a snapshot remembers those requests as if it had
	// applied them (core.appliedReqs), and answers their retransmissions as
	// the master that applied them did if it becomes master.
	ChangeApplied
)

// EntityKind is the kind of an entity.
type EntityKind uint8

const (
	KindNode EntityKind = 1 + iota
	KindLink
	KindProcess
	KindService
	KindCustom
)

// State is up or down.
type State uint8

const (
	StateUp   State = 1
	StateDown State = 2
)

// Severity of an alarm (ITU X.733).
type Severity uint8

const (
	SevIndeterminate Severity = 1 + iota
	SevWarning
	SevMinor
	SevMajor
	SevCritical
)

// Change flags.
const (
	// ChangeGroupEnd marks the last change of an atomic group: a receiver
	// applies a group's changes together and publishes only at a group end.
	ChangeGroupEnd uint8 = 1 << 0
	// ChangeImplicit marks a Register that creates an entity for a report
	// about an absent one (a raise, a mark up or down), not a
	// registration: nobody vouches for the entity's life, and the first
	// real registration claims it, whatever its version (see
	// table.Entity.Implicit).
	ChangeImplicit uint8 = 1 << 1
	// ChangeReqDisplaced, on a change that carries a request (Req) or on
	// a request's mark (ChangeApplied): that request was a raise that
	// displaced the entity's least severe alarm, and was answered so. A
	// master that answers its retransmission from the mark answers it the
	// same way. Invalid without a request.
	ChangeReqDisplaced uint8 = 1 << 2
)

// Change is one table change, ordered by the master's Seq. Name and Cause
// alias the packet buffer after decoding.
type Change struct {
	Seq         uint64
	Kind        ChangeKind
	Flags       uint8
	Entity      uint64 // entity ID: xxhash64 of the name
	EntityKind  EntityKind
	State       State
	Severity    Severity
	Owner       NodeID
	By          NodeID // the node whose report caused the change
	Incarnation uint64
	At          int64 // unix nanoseconds, master's clock
	Name        []byte
	Cause       []byte
	// Ver is the version of the write this change carries: the master's
	// order of acknowledged writes, kept across failovers (a re-asserted
	// write keeps the version it was acknowledged with). Zero: unversioned
	// (a local change, or a test's).
	Ver WriteVersion
	// Req, on one change of a group that applied a client's request (the
	// last whose By is the reporter): that request's ID, by the reporter's
	// numbering. Zero on every other change. A node that becomes master
	// answers a retransmission of that request as the master that applied
	// it did, instead of deciding it again over later writes (an
	// acknowledged clear undone by a raise applied twice).
	Req uint64
}

// WriteVersion orders acknowledged writes across masters: the epoch of the master
// that ordered the write, then its seq, then that master's node ID (two masters
// of one epoch on either side of a partition). The zero WriteVersion is older than
// any other.
type WriteVersion struct {
	Epoch uint64
	Seq   uint64
	Node  NodeID
}

// Less reports whether v is older than w.
func (v WriteVersion) Less(w WriteVersion) bool {
	if v.Epoch != w.Epoch {
		return v.Epoch < w.Epoch
	}
	if v.Seq != w.Seq {
		return v.Seq < w.Seq
	}
	return v.Node < w.Node
}

// IsZero reports whether v is the zero WriteVersion.
func (v WriteVersion) IsZero() bool { return v == WriteVersion{} }

// Update is a batch of consecutive changes from the master.
type Update struct {
	NChanges uint8
	Changes  [MaxChanges]Change
}

// Prepare is the first phase of a transaction: stage these changes.
type Prepare struct {
	Txn      uint64
	NChanges uint8
	Changes  [MaxChanges]Change
}

// AckKind says what an Ack acknowledges.
type AckKind uint8

const (
	AckPrepare AckKind = 1 + iota // a staged transaction (ID = txn)
	AckReport                     // a fault report taken by the master (ID = report ID)
)

// Ack acknowledges a prepare or a report.
type Ack struct {
	Kind AckKind
	ID   uint64
	Seq  uint64 // with AckReport: the seq of the resulting change, 0 if none
	Err  uint8  // 0: ok; otherwise a reason code
	// Ver, with AckReport: the version of the write the report became (the
	// reporter keeps it, to re-assert the write after a master change).
	Ver WriteVersion
}

// Commit is the second phase of a transaction: apply what was staged.
type Commit struct {
	Txn   uint64
	Abort bool
}

// Nack asks the master to resend changes From..To (inclusive). From and To
// both 0 ask for a snapshot instead (a node joining, or following a new master).
type Nack struct {
	From uint64
	To   uint64
}

// Snapshot is one chunk of a full table transfer, as a sequence of changes
// that rebuild the table; the table is at UpToSeq once the last chunk applies.
type Snapshot struct {
	ID       uint64
	UpToSeq  uint64
	Index    uint16
	Last     bool
	NChanges uint8
	Changes  [MaxChanges]Change
}

// ReportKind is what a client asks the master for.
type ReportKind uint8

const (
	ReportFault      ReportKind = 1 + iota // "I believe Entity is broken"
	ReportRaise                            // raise alarm Cause on Entity
	ReportClear                            // clear alarm Cause on Entity
	ReportRegister                         // register entity Name (Owner = reporter)
	ReportUnregister                       // unregister Entity
	ReportDown                             // the owner says Entity is down (e.g. process exit)
	ReportUp                               // the owner says Entity is up
)

// Report is sent to the master; every report goes through the plugin chain.
type Report struct {
	ID          uint64 // reporter-local ID, echoed in the Ack
	Kind        ReportKind
	Txn         bool // the resulting change should be a transaction
	Entity      uint64
	EntityKind  EntityKind
	Severity    Severity
	Incarnation uint64
	Name        []byte
	Cause       []byte
	// Ver, when not zero, marks a re-assertion: the write was acknowledged
	// with this version, and the master applies it only if nothing newer
	// replaced it since.
	Ver WriteVersion
	// State, with a re-asserted ReportRegister: the owner's latest word on
	// the entity's state (0: up). StateVer is the version that word was
	// acknowledged with (newer than Ver when the owner set the state after
	// registering): a master older than its epoch claims above it before
	// applying the registration, as for Ver, or the owner's later writes
	// would be versioned below a word it already had acknowledged (chaos
	// seed 17231).
	State    State
	StateVer WriteVersion
}

// Leave is sent on clean shutdown so peers do not wait for a timeout.
type Leave struct {
	Reason uint8
}

// Leave reasons.
const (
	// LeaveShutdown: a clean stop.
	LeaveShutdown uint8 = 1
	// LeaveDuplicate: the sender found its node ID in use by another
	// node (another incarnation heard speaking) and refuses to join; peers
	// log it and change nothing (the node never spoke as a member).
	LeaveDuplicate uint8 = 2
)

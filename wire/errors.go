package wire

import "errors"

// Sentinel errors. Every error this package returns for a rejected packet or
// message matches exactly one of them under errors.Is, so callers can count
// and act on the class without parsing text.
var (
	// ErrShort: the packet or body ends before its declared content.
	ErrShort = errors.New("wire: short")
	// ErrTooBig: over MaxDatagram (or a body over MaxBody).
	ErrTooBig = errors.New("wire: too big")
	// ErrMagic: not an fmagent packet at all.
	ErrMagic = errors.New("wire: bad magic")
	// ErrVersion: an fmagent packet of a protocol version we do not speak.
	ErrVersion = errors.New("wire: unsupported version")
	// ErrCluster: a packet of another cluster sharing the network.
	ErrCluster = errors.New("wire: other cluster")
	// ErrAuth: the MAC does not verify (wrong key or tampered packet).
	ErrAuth = errors.New("wire: authentication failed")
	// ErrReplay: rejected by a ReplayWindow.
	ErrReplay = errors.New("wire: replay")
	// ErrMalformed: structurally invalid content (bad enum, count over a
	// bound, trailing bytes, ...), on decode or on encode.
	ErrMalformed = errors.New("wire: malformed")
	// ErrWrongSocket: a heartbeat that came to the group or unicast port,
	// or anything else that came to the heartbeat port (each has its own
	// replay window: DESIGN §4).
	ErrWrongSocket = errors.New("wire: wrong port for this packet type (heartbeats come only to the heartbeat port, and nothing else)")
)

// detailError adds a fixed detail to a sentinel. Every instance is a
// package-level variable, so rejecting a packet never allocates: a flood of
// garbage must not become garbage-collector pressure on the agent.
type detailError struct {
	err    error
	detail string
}

func (e *detailError) Error() string { return e.err.Error() + ": " + e.detail }
func (e *detailError) Unwrap() error { return e.err }

func malformed(detail string) error { return &detailError{ErrMalformed, detail} }
func short(detail string) error     { return &detailError{ErrShort, detail} }
func replay(detail string) error    { return &detailError{ErrReplay, detail} }

// Preallocated rejections (see detailError).
var (
	errReserved     = malformed("reserved header byte not zero")
	errType         = malformed("unknown message type")
	errFlags        = malformed("unknown header flags")
	errSender       = malformed("sender 0")
	errSeq          = malformed("packet seq 0")
	errTrailing     = malformed("trailing bytes")
	errBodyTooBig   = &detailError{ErrTooBig, "body over MaxBody"}
	errPacketTooBig = &detailError{ErrTooBig, "datagram over MaxDatagram"}
	errPacketShort  = short("datagram shorter than header and MAC")
	errBodyShort    = short("datagram shorter than its body length")
	errTruncated    = short("body truncated")

	errRole        = malformed("unknown role")
	errBool        = malformed("boolean byte not 0 or 1")
	errNPeers      = malformed("peer count over MaxPeers")
	errPeerNode    = malformed("peer node 0")
	errLinks       = malformed("unknown link bits")
	errElectKind   = malformed("unknown election kind")
	errAckKind     = malformed("unknown ack kind")
	errNackRange   = malformed("nack range empty or from seq 0")
	errReportKind  = malformed("unknown report kind")
	errChangeKind  = malformed("unknown change kind")
	errChangeFlags = malformed("unknown change flags")
	errEntityKind  = malformed("unknown entity kind")
	errState       = malformed("unknown state")
	errSeverity    = malformed("unknown severity")
	errName        = malformed("name over MaxName")
	errCause       = malformed("cause over MaxCause")
	errNChanges    = malformed("change count over MaxChanges")
	errNoChanges   = malformed("no changes")

	errReplaySeq0 = replay("seq 0")
	errReplayInc  = replay("old incarnation")
	errReplayOld  = replay("older than the window")
	errReplayDup  = replay("duplicate")
)

// Reason returns a short stable label for err, for a counter of rejected
// packets: "short", "too_big", "magic", "version", "cluster", "auth",
// "replay", "malformed", "socket", or "other" for an error not from this
// package.
// Reason(nil) is "".
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrShort):
		return "short"
	case errors.Is(err, ErrTooBig):
		return "too_big"
	case errors.Is(err, ErrMagic):
		return "magic"
	case errors.Is(err, ErrVersion):
		return "version"
	case errors.Is(err, ErrCluster):
		return "cluster"
	case errors.Is(err, ErrAuth):
		return "auth"
	case errors.Is(err, ErrReplay):
		return "replay"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrWrongSocket):
		return "socket"
	}
	return "other"
}

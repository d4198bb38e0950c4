package wire

import "encoding/binary"

// Sizes derived from the datagram layout.
const (
	// HeaderSize is the encoded size of a Header:
	// magic u16 | version u8 | type u8 | flags u8 | reserved u8 |
	// cluster u32 | sender u32 | incarnation u64 | epoch u64 | seq u64 |
	// body length u16, all big-endian.
	HeaderSize = 40
	// Overhead is what every datagram carries besides its body.
	Overhead = HeaderSize + MACSize
	// MaxBody is the largest body that keeps a datagram within MaxDatagram.
	MaxBody = MaxDatagram - Overhead
)

// Header field offsets.
const (
	offMagic    = 0
	offVersion  = 2
	offType     = 3
	offFlags    = 4
	offReserved = 5
	offCluster  = 6
	offSender   = 10
	offInc      = 14
	offEpoch    = 22
	offSeq      = 30
	offLength   = 38
)

// knownFlags are the header flags this version defines. Unknown bits are
// rejected rather than ignored: a sender that sets them speaks a protocol we
// do not, and the version byte is the place to announce that.
const knownFlags = FlagPriority

func (t Type) String() string {
	switch t {
	case TypeHeartbeat:
		return "heartbeat"
	case TypeElection:
		return "election"
	case TypeUpdate:
		return "update"
	case TypePrepare:
		return "prepare"
	case TypeAck:
		return "ack"
	case TypeCommit:
		return "commit"
	case TypeNack:
		return "nack"
	case TypeSnapshot:
		return "snapshot"
	case TypeReport:
		return "report"
	case TypeLeave:
		return "leave"
	}
	return "unknown"
}

func (t Type) valid() bool { return t >= TypeHeartbeat && t <= TypeLeave }

// checkHeader holds the rules both the encoder and Open enforce, so nothing
// is produced that a receiver would reject. Seq 0 is excluded because a
// ReplayWindow never admits it; catching it at the sender points at the bug.
func checkHeader(h *Header) error {
	switch {
	case !h.Type.valid():
		return errType
	case h.Flags&^knownFlags != 0:
		return errFlags
	case h.Sender == 0:
		return errSender
	case h.Seq == 0:
		return errSeq
	}
	return nil
}

// putHeader writes h (with the protocol's magic and version) into b[:HeaderSize].
func putHeader(b []byte, h *Header) {
	_ = b[HeaderSize-1]
	binary.BigEndian.PutUint16(b[offMagic:], Magic)
	b[offVersion] = Version
	b[offType] = byte(h.Type)
	b[offFlags] = h.Flags
	b[offReserved] = 0
	binary.BigEndian.PutUint32(b[offCluster:], h.Cluster)
	binary.BigEndian.PutUint32(b[offSender:], uint32(h.Sender))
	binary.BigEndian.PutUint64(b[offInc:], h.Incarnation)
	binary.BigEndian.PutUint64(b[offEpoch:], h.Epoch)
	binary.BigEndian.PutUint64(b[offSeq:], h.Seq)
	binary.BigEndian.PutUint16(b[offLength:], h.Length)
}

// getHeader reads the fields of b[:HeaderSize] that Header holds; magic,
// version and the reserved byte are checked by the caller.
func getHeader(b []byte) Header {
	_ = b[HeaderSize-1]
	return Header{
		Type:        Type(b[offType]),
		Flags:       b[offFlags],
		Cluster:     binary.BigEndian.Uint32(b[offCluster:]),
		Sender:      NodeID(binary.BigEndian.Uint32(b[offSender:])),
		Incarnation: binary.BigEndian.Uint64(b[offInc:]),
		Epoch:       binary.BigEndian.Uint64(b[offEpoch:]),
		Seq:         binary.BigEndian.Uint64(b[offSeq:]),
		Length:      binary.BigEndian.Uint16(b[offLength:]),
	}
}

// PeekType is the type byte of pkt's header, unauthenticated (0 when pkt
// is shorter than a header): for tests and tools that route a datagram by
// its type, as the sender's transport does (heartbeats to the heartbeat
// port). Decisions are made only on what Codec.Open returns.
func PeekType(pkt []byte) Type {
	if len(pkt) < HeaderSize {
		return 0
	}
	return Type(pkt[offType])
}

// PeekEpoch is the epoch in pkt's header, unauthenticated (0 when pkt is
// shorter than a header): for the simulator's checker, which tells a
// master's word from what the same node says once it follows another
// reign. Decisions are made only on what Codec.Open returns.
func PeekEpoch(pkt []byte) uint64 {
	if len(pkt) < HeaderSize {
		return 0
	}
	return binary.BigEndian.Uint64(pkt[offEpoch:])
}

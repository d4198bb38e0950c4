package wire

import "encoding/binary"

// Body layouts, all big-endian, no padding, no optional parts: every message
// has exactly one encoding, so a decoded message re-encodes to the same bytes
// (the fuzz tests rely on it).
//
// On the encode side each Append method validates the message with the same
// rules its decoder applies, so a node never sends what its peers would drop.
// On error an Append method returns dst cut back to its original length.
//
// On the decode side each Decode function checks the whole body: truncation
// (ErrShort), bytes left over (ErrMalformed), counts over the array bounds,
// names and causes over their limits, unknown enum values and boolean bytes
// other than 0 and 1 (ErrMalformed). On error the message is reset to its
// zero value, so a caller that ignores the error still sees nothing stale.
// Zero is a valid EntityKind, State and Severity ("not given"), but not a
// valid kind of message (ChangeKind, ReportKind, ElectionKind, AckKind).

// Heartbeat: role u8 | priority u8 | eligible u8 | master u32 | vice u32 |
// applied seq u64 | generation u64 | npeers u8 | npeers × (node u32 |
// incarnation u64 | links u8) | table epoch u64.
//
// Then, appended: interval µs u32 | misses u8 | version length u8 | version
// (a heartbeat that ends after the table epoch is still read, with these
// zero).
const (
	heartbeatFixed   = 28
	heartbeatTail    = 8
	peerSize         = 13
	heartbeatTrailer = 6
	// knownLinks has one bit per network.
	knownLinks = 1<<NumNets - 1 | LinkFenced | LinkRecent
)

func checkHeartbeat(m *Heartbeat) error {
	if m.Role > RoleMaster {
		return errRole
	}
	if m.NPeers > MaxPeers {
		return errNPeers
	}
	for i := range m.Peers[:m.NPeers] {
		p := &m.Peers[i]
		if p.Node == 0 {
			return errPeerNode
		}
		if p.Links&^knownLinks != 0 {
			return errLinks
		}
	}
	return nil
}

// AppendHeartbeat appends one sealed heartbeat datagram to dst. It sets
// h.Type, h.Cluster (to the Codec's) and h.Length; the caller sets the rest
// of h, including a fresh h.Seq for every datagram.
func (c *Codec) AppendHeartbeat(dst []byte, h *Header, m *Heartbeat) ([]byte, error) {
	if err := checkHeartbeat(m); err != nil {
		return dst, err
	}
	dst, start, err := c.begin(dst, h, TypeHeartbeat)
	if err != nil {
		return dst, err
	}
	dst = append(dst, byte(m.Role), m.Priority, b2u(m.Eligible))
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.Master))
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.Vice))
	dst = binary.BigEndian.AppendUint64(dst, m.AppliedSeq)
	dst = binary.BigEndian.AppendUint64(dst, m.Generation)
	dst = append(dst, m.NPeers)
	for i := range m.Peers[:m.NPeers] {
		p := &m.Peers[i]
		dst = binary.BigEndian.AppendUint32(dst, uint32(p.Node))
		dst = binary.BigEndian.AppendUint64(dst, p.Incarnation)
		dst = append(dst, p.Links)
	}
	dst = binary.BigEndian.AppendUint64(dst, m.TableEpoch)
	if m.IntervalMicros != 0 || m.Misses != 0 || m.VersionLen != 0 {
		dst = binary.BigEndian.AppendUint32(dst, m.IntervalMicros)
		dst = append(dst, m.Misses, min(m.VersionLen, MaxVersion))
		dst = append(dst, m.Version[:min(m.VersionLen, MaxVersion)]...)
	}
	return c.seal(dst, start, h)
}

// DecodeHeartbeat decodes a heartbeat body into m. Peers beyond m.NPeers are
// left zero (only the entries the previous content used are cleared, to keep
// reuse of m cheap).
func DecodeHeartbeat(b []byte, m *Heartbeat) error {
	if err := decodeHeartbeat(b, m); err != nil {
		*m = Heartbeat{}
		return err
	}
	return nil
}

func decodeHeartbeat(b []byte, m *Heartbeat) error {
	if len(b) > MaxBody {
		return errBodyTooBig
	}
	if len(b) < heartbeatFixed {
		return errTruncated
	}
	n := b[27]
	if n > MaxPeers {
		return errNPeers
	}
	want := heartbeatFixed + int(n)*peerSize + heartbeatTail
	var trailer []byte // interval u32 | misses u8 | vlen u8 | version (absent from older senders)
	switch {
	case len(b) < want:
		return errTruncated
	case len(b) == want:
	case len(b) < want+heartbeatTrailer:
		return errTrailing
	default:
		trailer = b[want:]
		vl := int(trailer[5])
		switch {
		case vl > MaxVersion:
			return errTrailing
		case len(trailer) < heartbeatTrailer+vl:
			return errTruncated
		case len(trailer) > heartbeatTrailer+vl:
			return errTrailing
		case vl == 0 && binary.BigEndian.Uint32(trailer) == 0 && trailer[4] == 0:
			return errTrailing // an all-zero trailer is written as none
		}
	}
	eligible, err := u2b(b[2])
	if err != nil {
		return err
	}
	old := min(m.NPeers, MaxPeers)
	m.Role = Role(b[0])
	m.Priority = b[1]
	m.Eligible = eligible
	m.Master = NodeID(binary.BigEndian.Uint32(b[3:]))
	m.Vice = NodeID(binary.BigEndian.Uint32(b[7:]))
	m.AppliedSeq = binary.BigEndian.Uint64(b[11:])
	m.Generation = binary.BigEndian.Uint64(b[19:])
	m.NPeers = n
	p := b[heartbeatFixed:]
	for i := range m.Peers[:n] {
		m.Peers[i] = PeerView{
			Node:        NodeID(binary.BigEndian.Uint32(p)),
			Incarnation: binary.BigEndian.Uint64(p[4:]),
			Links:       p[12],
		}
		p = p[peerSize:]
	}
	m.TableEpoch = binary.BigEndian.Uint64(p)
	if old > n {
		clear(m.Peers[n:old])
	}
	m.IntervalMicros, m.Misses, m.VersionLen = 0, 0, 0
	if trailer != nil {
		m.IntervalMicros = binary.BigEndian.Uint32(trailer)
		m.Misses = trailer[4]
		m.VersionLen = uint8(copy(m.Version[:], trailer[heartbeatTrailer:]))
	}
	return checkHeartbeat(m)
}

// Election: kind u8 | priority u8 | generation u64 | vice u32.
const electionSize = 14

func checkElection(m *Election) error {
	if m.Kind != ElectCall && m.Kind != ElectCoordinator {
		return errElectKind
	}
	return nil
}

// AppendElection appends one sealed election datagram to dst; h as for
// AppendHeartbeat. The header's Epoch is the term the election is about.
func (c *Codec) AppendElection(dst []byte, h *Header, m *Election) ([]byte, error) {
	if err := checkElection(m); err != nil {
		return dst, err
	}
	dst, start, err := c.begin(dst, h, TypeElection)
	if err != nil {
		return dst, err
	}
	dst = append(dst, byte(m.Kind), m.Priority)
	dst = binary.BigEndian.AppendUint64(dst, m.Generation)
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.Vice))
	return c.seal(dst, start, h)
}

// DecodeElection decodes an election body into m.
func DecodeElection(b []byte, m *Election) error {
	if err := fixedSize(b, electionSize); err != nil {
		*m = Election{}
		return err
	}
	*m = Election{
		Kind:       ElectionKind(b[0]),
		Priority:   b[1],
		Generation: binary.BigEndian.Uint64(b[2:]),
		Vice:       NodeID(binary.BigEndian.Uint32(b[10:])),
	}
	if err := checkElection(m); err != nil {
		*m = Election{}
		return err
	}
	return nil
}

// Ack: kind u8 | id u64 | seq u64 | err u8 | version.
const ackSize = 18 + versionSize

func checkAck(m *Ack) error {
	if m.Kind < AckPrepare || m.Kind > AckReport {
		return errAckKind
	}
	return nil
}

// AppendAck appends one sealed ack datagram to dst; h as for AppendHeartbeat.
func (c *Codec) AppendAck(dst []byte, h *Header, m *Ack) ([]byte, error) {
	if err := checkAck(m); err != nil {
		return dst, err
	}
	dst, start, err := c.begin(dst, h, TypeAck)
	if err != nil {
		return dst, err
	}
	dst = append(dst, byte(m.Kind))
	dst = binary.BigEndian.AppendUint64(dst, m.ID)
	dst = binary.BigEndian.AppendUint64(dst, m.Seq)
	dst = append(dst, m.Err)
	dst = appendVersion(dst, m.Ver)
	return c.seal(dst, start, h)
}

// DecodeAck decodes an ack body into m.
func DecodeAck(b []byte, m *Ack) error {
	if err := fixedSize(b, ackSize); err != nil {
		*m = Ack{}
		return err
	}
	*m = Ack{
		Kind: AckKind(b[0]),
		ID:   binary.BigEndian.Uint64(b[1:]),
		Seq:  binary.BigEndian.Uint64(b[9:]),
		Err:  b[17],
		Ver:  decodeVersion(b[18:]),
	}
	if err := checkAck(m); err != nil {
		*m = Ack{}
		return err
	}
	return nil
}

// Commit: txn u64 | abort u8.
const commitSize = 9

// AppendCommit appends one sealed commit datagram to dst; h as for
// AppendHeartbeat.
func (c *Codec) AppendCommit(dst []byte, h *Header, m *Commit) ([]byte, error) {
	dst, start, err := c.begin(dst, h, TypeCommit)
	if err != nil {
		return dst, err
	}
	dst = binary.BigEndian.AppendUint64(dst, m.Txn)
	dst = append(dst, b2u(m.Abort))
	return c.seal(dst, start, h)
}

// DecodeCommit decodes a commit body into m.
func DecodeCommit(b []byte, m *Commit) error {
	*m = Commit{}
	if err := fixedSize(b, commitSize); err != nil {
		return err
	}
	abort, err := u2b(b[8])
	if err != nil {
		return err
	}
	*m = Commit{Txn: binary.BigEndian.Uint64(b), Abort: abort}
	return nil
}

// Nack: from u64 | to u64, with 1 <= from <= to (seq 0 is never issued),
// or both 0 for a snapshot request.
const nackSize = 16

func checkNack(m *Nack) error {
	if m.From == 0 && m.To == 0 {
		return nil // a snapshot request (see Nack)
	}
	if m.From == 0 || m.From > m.To {
		return errNackRange
	}
	return nil
}

// AppendNack appends one sealed nack datagram to dst; h as for
// AppendHeartbeat. The range must be non-empty and start at seq 1 or later,
// or be 0..0 to ask for a snapshot.
func (c *Codec) AppendNack(dst []byte, h *Header, m *Nack) ([]byte, error) {
	if err := checkNack(m); err != nil {
		return dst, err
	}
	dst, start, err := c.begin(dst, h, TypeNack)
	if err != nil {
		return dst, err
	}
	dst = binary.BigEndian.AppendUint64(dst, m.From)
	dst = binary.BigEndian.AppendUint64(dst, m.To)
	return c.seal(dst, start, h)
}

// DecodeNack decodes a nack body into m.
func DecodeNack(b []byte, m *Nack) error {
	*m = Nack{}
	if err := fixedSize(b, nackSize); err != nil {
		return err
	}
	n := Nack{From: binary.BigEndian.Uint64(b), To: binary.BigEndian.Uint64(b[8:])}
	if err := checkNack(&n); err != nil {
		return err
	}
	*m = n
	return nil
}

// Report: id u64 | kind u8 | txn u8 | entity u64 | entity kind u8 |
// severity u8 | incarnation u64 | name len u8 | cause len u8 | name | cause |
// version | state u8 | state version.
const (
	reportFixed = 30
	reportTail  = versionSize + 1 + versionSize // version | state u8 | state version
)

func checkReport(m *Report) error {
	switch {
	case m.Kind < ReportFault || m.Kind > ReportUp:
		return errReportKind
	case m.EntityKind > KindCustom:
		return errEntityKind
	case m.Severity > SevCritical:
		return errSeverity
	case len(m.Name) > MaxName:
		return errName
	case len(m.Cause) > MaxCause:
		return errCause
	case m.State > StateDown:
		return errState
	}
	return nil
}

// AppendReport appends one sealed report datagram to dst; h as for
// AppendHeartbeat.
func (c *Codec) AppendReport(dst []byte, h *Header, m *Report) ([]byte, error) {
	if err := checkReport(m); err != nil {
		return dst, err
	}
	dst, start, err := c.begin(dst, h, TypeReport)
	if err != nil {
		return dst, err
	}
	dst = binary.BigEndian.AppendUint64(dst, m.ID)
	dst = append(dst, byte(m.Kind), b2u(m.Txn))
	dst = binary.BigEndian.AppendUint64(dst, m.Entity)
	dst = append(dst, byte(m.EntityKind), byte(m.Severity))
	dst = binary.BigEndian.AppendUint64(dst, m.Incarnation)
	dst = append(dst, byte(len(m.Name)), byte(len(m.Cause)))
	dst = append(dst, m.Name...)
	dst = append(dst, m.Cause...)
	dst = appendVersion(dst, m.Ver)
	dst = append(dst, byte(m.State))
	dst = appendVersion(dst, m.StateVer)
	return c.seal(dst, start, h)
}

// DecodeReport decodes a report body into m. m.Name and m.Cause alias b and
// are valid until the caller reuses the packet buffer; an empty name or
// cause decodes as nil.
func DecodeReport(b []byte, m *Report) error {
	*m = Report{}
	if len(b) > MaxBody {
		return errBodyTooBig
	}
	if len(b) < reportFixed {
		return errTruncated
	}
	nl, cl := int(b[28]), int(b[29])
	switch want := reportFixed + nl + cl + reportTail; {
	case len(b) < want:
		return errTruncated
	case len(b) > want:
		return errTrailing
	}
	txn, err := u2b(b[9])
	if err != nil {
		return err
	}
	r := Report{
		ID:          binary.BigEndian.Uint64(b),
		Kind:        ReportKind(b[8]),
		Txn:         txn,
		Entity:      binary.BigEndian.Uint64(b[10:]),
		EntityKind:  EntityKind(b[18]),
		Severity:    Severity(b[19]),
		Incarnation: binary.BigEndian.Uint64(b[20:]),
		Name:        sub(b, reportFixed, nl),
		Cause:       sub(b, reportFixed+nl, cl),
		Ver:         decodeVersion(b[reportFixed+nl+cl:]),
		State:       State(b[reportFixed+nl+cl+versionSize]),
		StateVer:    decodeVersion(b[reportFixed+nl+cl+versionSize+1:]),
	}
	if err := checkReport(&r); err != nil {
		return err
	}
	*m = r
	return nil
}

// Leave: reason u8.
const leaveSize = 1

// AppendLeave appends one sealed leave datagram to dst; h as for
// AppendHeartbeat.
func (c *Codec) AppendLeave(dst []byte, h *Header, m *Leave) ([]byte, error) {
	dst, start, err := c.begin(dst, h, TypeLeave)
	if err != nil {
		return dst, err
	}
	dst = append(dst, m.Reason)
	return c.seal(dst, start, h)
}

// DecodeLeave decodes a leave body into m.
func DecodeLeave(b []byte, m *Leave) error {
	*m = Leave{}
	if err := fixedSize(b, leaveSize); err != nil {
		return err
	}
	m.Reason = b[0]
	return nil
}

// fixedSize checks the length of a fixed-size body.
func fixedSize(b []byte, n int) error {
	switch {
	case len(b) < n:
		return errTruncated
	case len(b) > n:
		return errTrailing
	}
	return nil
}

// sub returns b[off:off+n] with its capacity capped, so a caller appending
// to a decoded name cannot overwrite the bytes that follow it in the packet.
// An empty field is nil, so decoding is canonical.
func sub(b []byte, off, n int) []byte {
	if n == 0 {
		return nil
	}
	return b[off : off+n : off+n]
}

func b2u(v bool) byte {
	if v {
		return 1
	}
	return 0
}

func u2b(v byte) (bool, error) {
	switch v {
	case 0:
		return false, nil
	case 1:
		return true, nil
	}
	return false, errBool
}

// WriteVersion: epoch u64 | seq u64 | node u32.
const versionSize = 20

func appendVersion(dst []byte, v WriteVersion) []byte {
	dst = binary.BigEndian.AppendUint64(dst, v.Epoch)
	dst = binary.BigEndian.AppendUint64(dst, v.Seq)
	return binary.BigEndian.AppendUint32(dst, uint32(v.Node))
}

func decodeVersion(b []byte) WriteVersion {
	return WriteVersion{Epoch: binary.BigEndian.Uint64(b), Seq: binary.BigEndian.Uint64(b[8:]), Node: NodeID(binary.BigEndian.Uint32(b[16:]))}
}

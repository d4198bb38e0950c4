package wire

import "fmt"

const testCluster = 0xC1A57E12

var testKey = []byte("fmagent test key: 32 bytes long!")

func newTestCodec() *Codec { return NewCodec(testCluster, testKey) }

// testHeader has every field set to a value with several bits, so that a
// single flipped bit never turns it into a special value (0) by accident.
func testHeader() Header {
	return Header{
		Sender:      0x0707,
		Incarnation: 0x1122334455667788,
		Epoch:       0x0303,
		Seq:         0x0505,
	}
}

// fill returns n bytes of a recognisable pattern, nil for n == 0 (what the
// decoders produce for an empty field).
func fill(n int, seed byte) []byte {
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + (seed+byte(i))%26
	}
	return b
}

func fullHeartbeat() *Heartbeat {
	m := &Heartbeat{
		Role:       RoleMaster,
		Priority:   200,
		Eligible:   true,
		Master:     7,
		Vice:       9,
		AppliedSeq: 1 << 40,
		Generation: 12,
		NPeers:     MaxPeers,
	}
	for i := range m.Peers {
		m.Peers[i] = PeerView{Node: NodeID(i + 1), Incarnation: uint64(i) << 33, Links: uint8(i % 4)}
	}
	return m
}

func smallHeartbeat() *Heartbeat {
	m := &Heartbeat{Role: RoleMember, Priority: 10, Master: 1, AppliedSeq: 5, Generation: 1, NPeers: 2}
	m.Peers[0] = PeerView{Node: 1, Incarnation: 100, Links: 3}
	m.Peers[1] = PeerView{Node: 2, Incarnation: 200, Links: 1}
	return m
}

// testChange returns a valid change whose content depends on i, with a name
// of nameLen bytes and a cause of causeLen bytes.
func testChange(i, nameLen, causeLen int) Change {
	return Change{
		Seq:         uint64(1000 + i),
		Kind:        ChangeKind(1 + i%5),
		Flags:       uint8(i % 2),
		Entity:      uint64(i) * 0x9E3779B97F4A7C15,
		EntityKind:  EntityKind(i % 6),
		State:       State(i % 3),
		Severity:    Severity(i % 6),
		Owner:       NodeID(i % 30),
		By:          NodeID(i % 7),
		Incarnation: uint64(i) << 20,
		At:          -int64(i) * 1e9,
		Name:        fill(nameLen, byte(i)),
		Cause:       fill(causeLen, byte(i+3)),
		Req:         uint64(i%4) * 0x0102030405060708,
	}
}

func testChanges(n, nameLen, causeLen int) []Change {
	cs := make([]Change, n)
	for i := range cs {
		cs[i] = testChange(i, nameLen, causeLen)
	}
	return cs
}

func maxReport() *Report {
	return &Report{
		ID: ^uint64(0), Kind: ReportRaise, Txn: true, Entity: 42, EntityKind: KindCustom,
		Severity: SevCritical, Incarnation: 9, Name: fill(MaxName, 1), Cause: fill(MaxCause, 2),
		Ver: WriteVersion{Epoch: ^uint64(0), Seq: ^uint64(0), Node: ^NodeID(0)}, State: StateDown,
		StateVer: WriteVersion{Epoch: ^uint64(0) - 1, Seq: 7, Node: 3},
	}
}

// reencode decodes body as h.Type says and encodes the result again with
// header h. Since every message has exactly one encoding, a body that
// decodes must give back the same datagram.
func reencode(c *Codec, h Header, body []byte) ([]byte, error) {
	var (
		out []byte
		n   int
		err error
	)
	switch h.Type {
	case TypeHeartbeat:
		var m Heartbeat
		if err = DecodeHeartbeat(body, &m); err == nil {
			out, err = c.AppendHeartbeat(nil, &h, &m)
		}
	case TypeElection:
		var m Election
		if err = DecodeElection(body, &m); err == nil {
			out, err = c.AppendElection(nil, &h, &m)
		}
	case TypeUpdate:
		var m Update
		if err = DecodeUpdate(body, &m); err == nil {
			out, n, err = c.AppendUpdate(nil, &h, m.Changes[:m.NChanges])
			err = checkTook(err, n, int(m.NChanges))
		}
	case TypePrepare:
		var m Prepare
		if err = DecodePrepare(body, &m); err == nil {
			out, n, err = c.AppendPrepare(nil, &h, m.Txn, m.Changes[:m.NChanges])
			err = checkTook(err, n, int(m.NChanges))
		}
	case TypeAck:
		var m Ack
		if err = DecodeAck(body, &m); err == nil {
			out, err = c.AppendAck(nil, &h, &m)
		}
	case TypeCommit:
		var m Commit
		if err = DecodeCommit(body, &m); err == nil {
			out, err = c.AppendCommit(nil, &h, &m)
		}
	case TypeNack:
		var m Nack
		if err = DecodeNack(body, &m); err == nil {
			out, err = c.AppendNack(nil, &h, &m)
		}
	case TypeSnapshot:
		var m Snapshot
		if err = DecodeSnapshot(body, &m); err == nil {
			out, n, err = c.AppendSnapshot(nil, &h, &m, m.Changes[:m.NChanges])
			err = checkTook(err, n, int(m.NChanges))
		}
	case TypeReport:
		var m Report
		if err = DecodeReport(body, &m); err == nil {
			out, err = c.AppendReport(nil, &h, &m)
		}
	case TypeLeave:
		var m Leave
		if err = DecodeLeave(body, &m); err == nil {
			out, err = c.AppendLeave(nil, &h, &m)
		}
	default:
		err = fmt.Errorf("type %d", h.Type)
	}
	return out, err
}

func checkTook(err error, n, want int) error {
	if err == nil && n != want {
		return fmt.Errorf("re-encode took %d of %d changes", n, want)
	}
	return err
}

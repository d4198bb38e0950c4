package wire

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// roundTrip is one message to seal, open and decode back.
type roundTrip struct {
	name   string
	typ    Type
	encode func(c *Codec, dst []byte, h *Header) ([]byte, error)
	// check decodes body and compares it with what encode sent.
	check func(t *testing.T, body []byte)
}

func roundTrips() []roundTrip {
	one := func(cs []Change) func(c *Codec, dst []byte, h *Header) ([]byte, error) {
		return func(c *Codec, dst []byte, h *Header) ([]byte, error) {
			out, n, err := c.AppendUpdate(dst, h, cs)
			if err == nil && n != len(cs) {
				return nil, errors.New("update split unexpectedly")
			}
			return out, err
		}
	}
	updateCheck := func(cs []Change) func(t *testing.T, body []byte) {
		return func(t *testing.T, body []byte) {
			var m Update
			require.NoError(t, DecodeUpdate(body, &m))
			require.Equal(t, cs, m.Changes[:m.NChanges])
		}
	}
	// The largest update: as many maximal changes as one datagram holds.
	maxUpdate := testChanges(MaxBody/MaxChangeSize, MaxName, MaxCause)
	// The most changes: minimal ones (MaxChanges is never the bound that
	// stops an encoder at this datagram size).
	manyUpdate := testChanges((MaxBody-updateFixed)/changeFixed, 0, 0)
	prep := testChanges(3, 17, 5)
	snap := &Snapshot{ID: 77, UpToSeq: 1 << 50, Index: 3, Last: true}
	snapChanges := testChanges(MaxBody/MaxChangeSize, MaxName, MaxCause)

	msg := func(name string, typ Type, enc func(*Codec, []byte, *Header) ([]byte, error), chk func(*testing.T, []byte)) roundTrip {
		return roundTrip{name, typ, enc, chk}
	}
	rts := []roundTrip{
		msg("heartbeat small", TypeHeartbeat,
			func(c *Codec, d []byte, h *Header) ([]byte, error) { return c.AppendHeartbeat(d, h, smallHeartbeat()) },
			func(t *testing.T, b []byte) {
				var m Heartbeat
				require.NoError(t, DecodeHeartbeat(b, &m))
				require.Equal(t, smallHeartbeat(), &m)
			}),
		msg("heartbeat max peers", TypeHeartbeat,
			func(c *Codec, d []byte, h *Header) ([]byte, error) { return c.AppendHeartbeat(d, h, fullHeartbeat()) },
			func(t *testing.T, b []byte) {
				var m Heartbeat
				require.NoError(t, DecodeHeartbeat(b, &m))
				require.Equal(t, fullHeartbeat(), &m)
			}),
		msg("heartbeat empty", TypeHeartbeat,
			func(c *Codec, d []byte, h *Header) ([]byte, error) { return c.AppendHeartbeat(d, h, &Heartbeat{}) },
			func(t *testing.T, b []byte) {
				var m Heartbeat
				require.NoError(t, DecodeHeartbeat(b, &m))
				require.Equal(t, Heartbeat{}, m)
			}),
	}
	for _, e := range []Election{
		{Kind: ElectCall, Priority: 5, Generation: 9},
		{Kind: ElectCall, Priority: 255, Generation: ^uint64(0)},
		{Kind: ElectCoordinator, Priority: 1, Generation: 2, Vice: 0xFFFFFFFF},
	} {
		rts = append(rts, msg("election", TypeElection,
			func(c *Codec, d []byte, h *Header) ([]byte, error) { return c.AppendElection(d, h, &e) },
			func(t *testing.T, b []byte) {
				var m Election
				require.NoError(t, DecodeElection(b, &m))
				require.Equal(t, e, m)
			}))
	}
	for _, a := range []Ack{
		{Kind: AckPrepare, ID: 3},
		{Kind: AckReport, ID: ^uint64(0), Seq: 1 << 60, Err: 255},
	} {
		rts = append(rts, msg("ack", TypeAck,
			func(c *Codec, d []byte, h *Header) ([]byte, error) { return c.AppendAck(d, h, &a) },
			func(t *testing.T, b []byte) {
				var m Ack
				require.NoError(t, DecodeAck(b, &m))
				require.Equal(t, a, m)
			}))
	}
	for _, cm := range []Commit{{Txn: 1}, {Txn: ^uint64(0), Abort: true}} {
		rts = append(rts, msg("commit", TypeCommit,
			func(c *Codec, d []byte, h *Header) ([]byte, error) { return c.AppendCommit(d, h, &cm) },
			func(t *testing.T, b []byte) {
				var m Commit
				require.NoError(t, DecodeCommit(b, &m))
				require.Equal(t, cm, m)
			}))
	}
	for _, nk := range []Nack{{From: 1, To: 1}, {From: 5, To: ^uint64(0)}, {} /* snapshot request */} {
		rts = append(rts, msg("nack", TypeNack,
			func(c *Codec, d []byte, h *Header) ([]byte, error) { return c.AppendNack(d, h, &nk) },
			func(t *testing.T, b []byte) {
				var m Nack
				require.NoError(t, DecodeNack(b, &m))
				require.Equal(t, nk, m)
			}))
	}
	for _, r := range []*Report{
		maxReport(),
		{ID: 1, Kind: ReportFault, Entity: 5},
		{ID: 2, Kind: ReportRegister, EntityKind: KindProcess, Name: []byte("proc/db")},
	} {
		rts = append(rts, msg("report", TypeReport,
			func(c *Codec, d []byte, h *Header) ([]byte, error) { return c.AppendReport(d, h, r) },
			func(t *testing.T, b []byte) {
				var m Report
				require.NoError(t, DecodeReport(b, &m))
				require.Equal(t, r, &m)
			}))
	}
	rts = append(rts,
		msg("leave", TypeLeave,
			func(c *Codec, d []byte, h *Header) ([]byte, error) { return c.AppendLeave(d, h, &Leave{Reason: 3}) },
			func(t *testing.T, b []byte) {
				var m Leave
				require.NoError(t, DecodeLeave(b, &m))
				require.Equal(t, Leave{Reason: 3}, m)
			}),
		msg("update one", TypeUpdate, one(testChanges(1, 5, 0)), updateCheck(testChanges(1, 5, 0))),
		msg("update max size", TypeUpdate, one(maxUpdate), updateCheck(maxUpdate)),
		msg("update max count", TypeUpdate, one(manyUpdate), updateCheck(manyUpdate)),
		msg("prepare", TypePrepare,
			func(c *Codec, d []byte, h *Header) ([]byte, error) {
				out, n, err := c.AppendPrepare(d, h, 99, prep)
				if err == nil && n != len(prep) {
					return nil, errors.New("prepare split unexpectedly")
				}
				return out, err
			},
			func(t *testing.T, b []byte) {
				var m Prepare
				require.NoError(t, DecodePrepare(b, &m))
				require.Equal(t, uint64(99), m.Txn)
				require.Equal(t, prep, m.Changes[:m.NChanges])
			}),
		msg("snapshot max size", TypeSnapshot,
			func(c *Codec, d []byte, h *Header) ([]byte, error) {
				out, n, err := c.AppendSnapshot(d, h, snap, snapChanges)
				if err == nil && n != len(snapChanges) {
					return nil, errors.New("snapshot split unexpectedly")
				}
				return out, err
			},
			func(t *testing.T, b []byte) {
				var m Snapshot
				require.NoError(t, DecodeSnapshot(b, &m))
				want := *snap
				want.NChanges = uint8(copy(want.Changes[:], snapChanges))
				require.Equal(t, want, m)
			}),
		msg("snapshot empty", TypeSnapshot,
			func(c *Codec, d []byte, h *Header) ([]byte, error) {
				out, _, err := c.AppendSnapshot(d, h, &Snapshot{ID: 1, UpToSeq: 0, Last: true}, nil)
				return out, err
			},
			func(t *testing.T, b []byte) {
				var m Snapshot
				require.NoError(t, DecodeSnapshot(b, &m))
				require.Equal(t, Snapshot{ID: 1, Last: true}, m)
			}),
	)
	return rts
}

func TestRoundTrip(t *testing.T) {
	c := newTestCodec()
	for _, rt := range roundTrips() {
		t.Run(rt.name, func(t *testing.T) {
			h := testHeader()
			h.Flags = FlagPriority
			prefix := []byte("prefix")
			pkt, err := rt.encode(c, prefix, &h)
			require.NoError(t, err)
			require.Equal(t, "prefix", string(pkt[:len(prefix)]), "Append must keep dst")
			pkt = pkt[len(prefix):]
			require.LessOrEqual(t, len(pkt), MaxDatagram)
			require.Equal(t, rt.typ, h.Type, "encoder sets the type")
			require.Equal(t, uint32(testCluster), h.Cluster, "encoder sets the cluster")
			require.Equal(t, len(pkt)-Overhead, int(h.Length), "encoder sets the length")

			got, body, err := c.Open(pkt)
			require.NoError(t, err)
			require.Equal(t, h, got)
			require.Len(t, body, int(h.Length))
			require.Equal(t, len(body), cap(body), "body capacity is capped")
			rt.check(t, body)

			again, err := reencode(c, got, body)
			require.NoError(t, err)
			require.Equal(t, pkt, again, "encoding is canonical")
		})
	}
}

// TestBatchSplit splits a large batch and checks every chunk fits and the
// chunks decode back to exactly the input. Each chunk has its own buffer, so
// the decoded names stay valid while the output is compared.
func TestBatchSplit(t *testing.T) {
	c := newTestCodec()
	// 200 changes with long names: several datagrams, not one.
	in := testChanges(200, 180, 40)
	in[7].Name, in[8].Cause = nil, nil
	in[9].Name = fill(MaxName, 9)

	type chunk struct {
		pkt []byte
		n   int
	}
	split := func(t *testing.T, enc func(dst []byte, h *Header, rest []Change) ([]byte, int, error)) []chunk {
		var chunks []chunk
		h := testHeader()
		for rest := in; len(rest) > 0; {
			pkt, n, err := enc(make([]byte, 0, MaxDatagram), &h, rest)
			require.NoError(t, err)
			require.Positive(t, n)
			require.LessOrEqual(t, len(pkt), MaxDatagram)
			require.LessOrEqual(t, n, MaxChanges)
			if n < len(rest) {
				// Greedy: the next change would not have fitted.
				next := rest[n]
				require.Greater(t, len(pkt)+changeFixed+len(next.Name)+len(next.Cause), MaxDatagram)
			}
			chunks = append(chunks, chunk{pkt, n})
			rest = rest[n:]
			h.Seq++
		}
		require.Greater(t, len(chunks), 3)
		return chunks
	}
	open := func(t *testing.T, pkt []byte, typ Type, seq uint64) []byte {
		h, body, err := c.Open(pkt)
		require.NoError(t, err)
		require.Equal(t, typ, h.Type)
		require.Equal(t, seq, h.Seq)
		return body
	}

	t.Run("update", func(t *testing.T) {
		chunks := split(t, c.AppendUpdate)
		var out []Change
		var m Update // reused across chunks on purpose
		for i, ch := range chunks {
			require.NoError(t, DecodeUpdate(open(t, ch.pkt, TypeUpdate, testHeader().Seq+uint64(i)), &m))
			require.Equal(t, ch.n, int(m.NChanges))
			for _, rest := range m.Changes[m.NChanges:] {
				require.Zero(t, rest)
			}
			out = append(out, m.Changes[:m.NChanges]...)
		}
		require.Equal(t, in, out)
	})
	t.Run("prepare", func(t *testing.T) {
		chunks := split(t, func(dst []byte, h *Header, rest []Change) ([]byte, int, error) {
			return c.AppendPrepare(dst, h, 1234, rest)
		})
		var out []Change
		var m Prepare
		for i, ch := range chunks {
			require.NoError(t, DecodePrepare(open(t, ch.pkt, TypePrepare, testHeader().Seq+uint64(i)), &m))
			require.Equal(t, uint64(1234), m.Txn)
			out = append(out, m.Changes[:m.NChanges]...)
		}
		require.Equal(t, in, out)
	})
	t.Run("snapshot", func(t *testing.T) {
		s := Snapshot{ID: 5, UpToSeq: 999, Last: true}
		chunks := split(t, func(dst []byte, h *Header, rest []Change) ([]byte, int, error) {
			out, n, err := c.AppendSnapshot(dst, h, &s, rest)
			s.Index++
			return out, n, err
		})
		var out []Change
		var m Snapshot
		for i, ch := range chunks {
			require.NoError(t, DecodeSnapshot(open(t, ch.pkt, TypeSnapshot, testHeader().Seq+uint64(i)), &m))
			require.Equal(t, uint64(5), m.ID)
			require.Equal(t, uint64(999), m.UpToSeq)
			require.Equal(t, uint16(i), m.Index)
			require.Equal(t, i == len(chunks)-1, m.Last, "only the final chunk is last")
			out = append(out, m.Changes[:m.NChanges]...)
		}
		require.Equal(t, in, out)
	})
}

// A mark (ChangeApplied: a request the table applied) travels in a
// snapshot, after the table's changes, and nowhere else: an update or a
// prepare carrying one is refused when sent and dropped when received.
func TestMarksOnlyInSnapshots(t *testing.T) {
	c := newTestCodec()
	mark := Change{Seq: 41, Kind: ChangeApplied, By: 3, Req: 7<<40 | 12, At: 1_700_000_000_000_000_000,
		Ver: WriteVersion{Epoch: 2, Seq: 41, Node: 1}}
	displacing := mark
	displacing.Seq, displacing.Req, displacing.Flags = 42, 7<<40|13, ChangeReqDisplaced
	in := append(testChanges(2, 3, 2), mark, displacing)
	h := testHeader()
	pkt, n, err := c.AppendSnapshot(nil, &h, &Snapshot{ID: 1, UpToSeq: 50, Last: true}, in)
	require.NoError(t, err)
	require.Equal(t, len(in), n)
	hdr, body, err := c.Open(pkt)
	require.NoError(t, err)
	require.Equal(t, TypeSnapshot, hdr.Type)
	var m Snapshot
	require.NoError(t, DecodeSnapshot(body, &m))
	require.Equal(t, in, m.Changes[:m.NChanges])

	out, _, err := c.AppendUpdate(nil, &h, in)
	require.ErrorIs(t, err, ErrMalformed)
	require.Empty(t, out)
	out, _, err = c.AppendPrepare(nil, &h, 9, in[2:])
	require.ErrorIs(t, err, ErrMalformed)
	require.Empty(t, out)

	// A change that applied a displacing raise carries the flag in an
	// update, with its request.
	applied := testChanges(2, 3, 2)
	applied[1].Flags |= ChangeReqDisplaced
	require.NotZero(t, applied[1].Req)
	pkt, n, err = c.AppendUpdate(nil, &h, applied)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	_, body, err = c.Open(pkt)
	require.NoError(t, err)
	var u Update
	require.NoError(t, DecodeUpdate(body, &u))
	require.Equal(t, applied, u.Changes[:u.NChanges])
}

func TestBatchMinimalChanges(t *testing.T) {
	c := newTestCodec()
	h := testHeader()
	in := testChanges(MaxChanges+10, 0, 0)
	pkt, n, err := c.AppendUpdate(nil, &h, in)
	require.NoError(t, err)
	require.Equal(t, (MaxBody-updateFixed)/changeFixed, n)
	require.LessOrEqual(t, len(pkt), MaxDatagram)
	_, body, err := c.Open(pkt)
	require.NoError(t, err)
	var m Update
	require.NoError(t, DecodeUpdate(body, &m))
	require.Equal(t, in[:n], m.Changes[:m.NChanges])
}

func TestEncodeRejects(t *testing.T) {
	c := newTestCodec()
	bad := func(mut func(*Change)) []Change {
		cs := testChanges(3, 4, 4)
		mut(&cs[0])
		return cs
	}
	hb := func(mut func(*Heartbeat)) *Heartbeat {
		m := smallHeartbeat()
		mut(m)
		return m
	}
	tests := []struct {
		name string
		h    func(*Header)
		enc  func(dst []byte, h *Header) ([]byte, error)
		want error
	}{
		{"sender 0", func(h *Header) { h.Sender = 0 }, func(d []byte, h *Header) ([]byte, error) { return c.AppendLeave(d, h, &Leave{}) }, ErrMalformed},
		{"seq 0", func(h *Header) { h.Seq = 0 }, func(d []byte, h *Header) ([]byte, error) { return c.AppendLeave(d, h, &Leave{}) }, ErrMalformed},
		{"unknown flag", func(h *Header) { h.Flags = 0x80 }, func(d []byte, h *Header) ([]byte, error) { return c.AppendLeave(d, h, &Leave{}) }, ErrMalformed},
		{"role", nil, func(d []byte, h *Header) ([]byte, error) {
			return c.AppendHeartbeat(d, h, hb(func(m *Heartbeat) { m.Role = RoleMaster + 1 }))
		}, ErrMalformed},
		{"npeers", nil, func(d []byte, h *Header) ([]byte, error) {
			return c.AppendHeartbeat(d, h, hb(func(m *Heartbeat) { m.NPeers = MaxPeers + 1 }))
		}, ErrMalformed},
		{"peer node 0", nil, func(d []byte, h *Header) ([]byte, error) {
			return c.AppendHeartbeat(d, h, hb(func(m *Heartbeat) { m.Peers[1].Node = 0 }))
		}, ErrMalformed},
		{"links", nil, func(d []byte, h *Header) ([]byte, error) {
			return c.AppendHeartbeat(d, h, hb(func(m *Heartbeat) { m.Peers[0].Links = 4 }))
		}, ErrMalformed},
		{"election kind", nil, func(d []byte, h *Header) ([]byte, error) { return c.AppendElection(d, h, &Election{}) }, ErrMalformed},
		{"ack kind", nil, func(d []byte, h *Header) ([]byte, error) { return c.AppendAck(d, h, &Ack{Kind: 3}) }, ErrMalformed},
		{"nack from 0", nil, func(d []byte, h *Header) ([]byte, error) { return c.AppendNack(d, h, &Nack{To: 3}) }, ErrMalformed},
		{"nack reversed", nil, func(d []byte, h *Header) ([]byte, error) { return c.AppendNack(d, h, &Nack{From: 4, To: 3}) }, ErrMalformed},
		{"report kind", nil, func(d []byte, h *Header) ([]byte, error) { return c.AppendReport(d, h, &Report{}) }, ErrMalformed},
		{"report name", nil, func(d []byte, h *Header) ([]byte, error) {
			r := maxReport()
			r.Name = fill(MaxName+1, 0)
			return c.AppendReport(d, h, r)
		}, ErrMalformed},
		{"report cause", nil, func(d []byte, h *Header) ([]byte, error) {
			r := maxReport()
			r.Cause = fill(MaxCause+1, 0)
			return c.AppendReport(d, h, r)
		}, ErrMalformed},
		{"update empty", nil, func(d []byte, h *Header) ([]byte, error) {
			out, _, err := c.AppendUpdate(d, h, nil)
			return out, err
		}, ErrMalformed},
		{"prepare empty", nil, func(d []byte, h *Header) ([]byte, error) {
			out, _, err := c.AppendPrepare(d, h, 1, nil)
			return out, err
		}, ErrMalformed},
	}
	for _, mut := range []struct {
		name string
		f    func(*Change)
	}{
		{"change kind 0", func(ch *Change) { ch.Kind = 0 }},
		{"change kind", func(ch *Change) { ch.Kind = ChangeApplied + 1 }},
		{"change flags", func(ch *Change) { ch.Flags = 8 }},
		{"displaced without a request", func(ch *Change) { ch.Flags, ch.Req = ChangeReqDisplaced, 0 }},
		{"entity kind", func(ch *Change) { ch.EntityKind = KindCustom + 1 }},
		{"state", func(ch *Change) { ch.State = StateDown + 1 }},
		{"severity", func(ch *Change) { ch.Severity = SevCritical + 1 }},
		{"name", func(ch *Change) { ch.Name = fill(MaxName+1, 0) }},
		{"cause", func(ch *Change) { ch.Cause = fill(MaxCause+1, 0) }},
	} {
		tests = append(tests,
			struct {
				name string
				h    func(*Header)
				enc  func(dst []byte, h *Header) ([]byte, error)
				want error
			}{"update " + mut.name, nil, func(d []byte, h *Header) ([]byte, error) {
				out, _, err := c.AppendUpdate(d, h, bad(mut.f))
				return out, err
			}, ErrMalformed},
			struct {
				name string
				h    func(*Header)
				enc  func(dst []byte, h *Header) ([]byte, error)
				want error
			}{"snapshot " + mut.name, nil, func(d []byte, h *Header) ([]byte, error) {
				out, _, err := c.AppendSnapshot(d, h, &Snapshot{}, bad(mut.f))
				return out, err
			}, ErrMalformed})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := testHeader()
			if tt.h != nil {
				tt.h(&h)
			}
			dst := make([]byte, 3, MaxDatagram)
			out, err := tt.enc(dst, &h)
			require.ErrorIs(t, err, tt.want)
			require.Len(t, out, 3, "dst comes back unchanged")
		})
	}
}

func TestOpenRejects(t *testing.T) {
	c := newTestCodec()
	h := testHeader()
	valid, err := c.AppendReport(nil, &h, maxReport())
	require.NoError(t, err)
	edit := func(f func(p []byte) []byte) []byte {
		return f(append([]byte(nil), valid...))
	}
	// reseal keeps the MAC right, to reach the check under test.
	reseal := func(f func(p []byte)) []byte {
		p := append([]byte(nil), valid...)
		f(p)
		end := len(p) - MACSize
		copy(p[end:], c.digest(p[:end]))
		return p
	}

	tests := []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"header only", valid[:HeaderSize], ErrShort},
		{"one short of minimum", valid[:Overhead-1], ErrShort},
		{"truncated MAC", valid[:len(valid)-1], ErrShort},
		{"truncated body", append(append([]byte(nil), valid[:len(valid)-MACSize-1]...), valid[len(valid)-MACSize:]...), ErrShort},
		{"trailing byte", edit(func(p []byte) []byte { return append(p, 0) }), ErrMalformed},
		{"oversize", make([]byte, MaxDatagram+1), ErrTooBig},
		{"huge", make([]byte, 65536), ErrTooBig},
		{"magic", edit(func(p []byte) []byte { p[0] = 'X'; return p }), ErrMagic},
		{"version", reseal(func(p []byte) { p[offVersion] = Version + 1 }), ErrVersion},
		{"reserved", reseal(func(p []byte) { p[offReserved] = 1 }), ErrMalformed},
		{"type 0", reseal(func(p []byte) { p[offType] = 0 }), ErrMalformed},
		{"type unknown", reseal(func(p []byte) { p[offType] = byte(TypeLeave) + 1 }), ErrMalformed},
		{"flags", reseal(func(p []byte) { p[offFlags] = 0x40 }), ErrMalformed},
		{"sender 0", reseal(func(p []byte) { clear(p[offSender : offSender+4]) }), ErrMalformed},
		{"seq 0", reseal(func(p []byte) { clear(p[offSeq : offSeq+8]) }), ErrMalformed},
		{"cluster", reseal(func(p []byte) { p[offCluster+3]++ }), ErrCluster},
		{"length larger", reseal(func(p []byte) { p[offLength+1]++ }), ErrShort},
		{"length smaller", reseal(func(p []byte) { p[offLength+1]-- }), ErrMalformed},
		{"zeroed MAC", edit(func(p []byte) []byte { clear(p[len(p)-MACSize:]); return p }), ErrAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, body, err := c.Open(tt.pkt)
			require.ErrorIs(t, err, tt.want)
			require.Zero(t, h, "no half-valid header")
			require.Nil(t, body)
		})
	}

	t.Run("wrong key", func(t *testing.T) {
		other := NewCodec(testCluster, []byte("another key, also 32 bytes long!"))
		_, _, err := other.Open(valid)
		require.ErrorIs(t, err, ErrAuth)
	})
	t.Run("wrong cluster", func(t *testing.T) {
		other := NewCodec(testCluster+1, testKey)
		_, _, err := other.Open(valid)
		require.ErrorIs(t, err, ErrCluster)
		// Even a packet sealed by a node of the other cluster with the
		// same key is refused.
		h := testHeader()
		pkt, err := other.AppendLeave(nil, &h, &Leave{})
		require.NoError(t, err)
		_, _, err = c.Open(pkt)
		require.ErrorIs(t, err, ErrCluster)
	})
	t.Run("every truncation", func(t *testing.T) {
		for n := range len(valid) {
			_, _, err := c.Open(valid[:n])
			require.ErrorIs(t, err, ErrShort, "length %d", n)
		}
	})
}

// TestOpenBitFlips flips every bit of sealed packets of every type. A flip
// in the body or MAC must fail authentication; a flip in the header fails
// authentication or an earlier header check, never passes.
func TestOpenBitFlips(t *testing.T) {
	c := newTestCodec()
	for _, rt := range roundTrips() {
		h := testHeader()
		valid, err := rt.encode(c, nil, &h)
		require.NoError(t, err)
		for i := range len(valid) * 8 {
			p := append([]byte(nil), valid...)
			p[i/8] ^= 1 << (i % 8)
			_, _, err := c.Open(p)
			off := i / 8
			var want []error
			switch {
			case off < offVersion:
				want = []error{ErrMagic}
			case off == offVersion:
				want = []error{ErrVersion}
			case off == offType, off == offFlags:
				want = []error{ErrMalformed, ErrAuth}
			case off == offReserved:
				want = []error{ErrMalformed}
			case off < offSender:
				want = []error{ErrCluster}
			case off >= offLength && off < HeaderSize:
				want = []error{ErrShort, ErrMalformed, ErrTooBig}
			default:
				want = []error{ErrAuth}
			}
			ok := false
			for _, w := range want {
				ok = ok || errors.Is(err, w)
			}
			require.True(t, ok, "%s: bit %d (byte %d): got %v, want one of %v", rt.name, i, off, err, want)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	hb, err := bodyOf(func(c *Codec, d []byte, h *Header) ([]byte, error) { return c.AppendHeartbeat(d, h, smallHeartbeat()) })
	require.NoError(t, err)
	rep, err := bodyOf(func(c *Codec, d []byte, h *Header) ([]byte, error) {
		return c.AppendReport(d, h, &Report{ID: 1, Kind: ReportRaise, Name: []byte("n"), Cause: []byte("c")})
	})
	require.NoError(t, err)
	upd, err := bodyOf(func(c *Codec, d []byte, h *Header) ([]byte, error) {
		out, _, err := c.AppendUpdate(d, h, testChanges(2, 3, 2))
		return out, err
	})
	require.NoError(t, err)
	prep, err := bodyOf(func(c *Codec, d []byte, h *Header) ([]byte, error) {
		out, _, err := c.AppendPrepare(d, h, 7, testChanges(2, 3, 2))
		return out, err
	})
	require.NoError(t, err)
	snap, err := bodyOf(func(c *Codec, d []byte, h *Header) ([]byte, error) {
		out, _, err := c.AppendSnapshot(d, h, &Snapshot{ID: 1, Last: true}, testChanges(2, 3, 2))
		return out, err
	})
	require.NoError(t, err)

	set := func(b []byte, off int, v ...byte) []byte {
		b = append([]byte(nil), b...)
		copy(b[off:], v)
		return b
	}
	// Offsets of the first change in each batch body.
	const u, p, s = updateFixed, prepareFixed, snapshotFixed

	type dec func([]byte) error
	heartbeat := func(b []byte) error { var m Heartbeat; return DecodeHeartbeat(b, &m) }
	election := func(b []byte) error { var m Election; return DecodeElection(b, &m) }
	ack := func(b []byte) error { var m Ack; return DecodeAck(b, &m) }
	commit := func(b []byte) error { var m Commit; return DecodeCommit(b, &m) }
	nack := func(b []byte) error { var m Nack; return DecodeNack(b, &m) }
	report := func(b []byte) error { var m Report; return DecodeReport(b, &m) }
	leave := func(b []byte) error { var m Leave; return DecodeLeave(b, &m) }
	update := func(b []byte) error { var m Update; return DecodeUpdate(b, &m) }
	prepare := func(b []byte) error { var m Prepare; return DecodePrepare(b, &m) }
	snapshot := func(b []byte) error { var m Snapshot; return DecodeSnapshot(b, &m) }

	tests := []struct {
		name string
		dec  dec
		body []byte
		want error
	}{
		{"heartbeat role", heartbeat, set(hb, 0, 4), ErrMalformed},
		{"heartbeat eligible", heartbeat, set(hb, 2, 2), ErrMalformed},
		{"heartbeat npeers", heartbeat, set(hb, 27, MaxPeers+1), ErrMalformed},
		{"heartbeat npeers vs length", heartbeat, set(hb, 27, 3), ErrShort},
		{"heartbeat peer node 0", heartbeat, set(hb, heartbeatFixed, 0, 0, 0, 0), ErrMalformed},
		{"heartbeat links", heartbeat, set(hb, heartbeatFixed+12, 4), ErrMalformed},
		{"heartbeat too big", heartbeat, make([]byte, MaxBody+1), ErrTooBig},
		{"election kind 0", election, make([]byte, electionSize), ErrMalformed},
		{"election kind 4", election, set(make([]byte, electionSize), 0, 4), ErrMalformed},
		{"election kind 2 (reserved, was answer)", election, set(make([]byte, electionSize), 0, 2), ErrMalformed},
		{"ack kind 0", ack, make([]byte, ackSize), ErrMalformed},
		{"ack kind 3", ack, set(make([]byte, ackSize), 0, 3), ErrMalformed},
		{"commit abort 2", commit, set(make([]byte, commitSize), 8, 2), ErrMalformed},
		{"nack from 0", nack, set(make([]byte, nackSize), 15, 1), ErrMalformed},
		{"nack to 0", nack, set(make([]byte, nackSize), 7, 1), ErrMalformed},
		{"nack reversed", nack, set(make([]byte, nackSize), 7, 2, 0, 0, 0, 0, 0, 0, 0, 1), ErrMalformed},
		{"report kind 0", report, set(rep, 8, 0), ErrMalformed},
		{"report kind 8", report, set(rep, 8, 8), ErrMalformed},
		{"report txn 2", report, set(rep, 9, 2), ErrMalformed},
		{"report entity kind", report, set(rep, 18, 6), ErrMalformed},
		{"report severity", report, set(rep, 19, 6), ErrMalformed},
		{"report name len vs body", report, set(rep, 28, 2), ErrShort},
		{"report name over max", report, append(set(rep, 28, MaxName+1), make([]byte, MaxName)...), ErrMalformed},
		{"report cause over max", report, append(set(rep, 29, MaxCause+1), make([]byte, MaxCause)...), ErrMalformed},
		{"report too big", report, make([]byte, MaxBody+1), ErrTooBig},
		{"update count 0", update, set(upd, 0, 0), ErrMalformed},
		{"update count over max", update, set(upd, 0, MaxChanges+1), ErrMalformed},
		{"update count over content", update, set(upd, 0, 3), ErrShort},
		{"update count under content", update, set(upd, 0, 1), ErrMalformed},
		{"update kind 0", update, set(upd, u+8, 0), ErrMalformed},
		{"update kind 6 (a mark: snapshots only)", update, set(upd, u+8, 6), ErrMalformed},
		{"update kind 7", update, set(upd, u+8, 7), ErrMalformed},
		{"update flags", update, set(upd, u+9, 8), ErrMalformed},
		{"update displaced without a request", update, set(upd, u+9, ChangeReqDisplaced), ErrMalformed},
		{"update entity kind", update, set(upd, u+18, 6), ErrMalformed},
		{"update state", update, set(upd, u+19, 3), ErrMalformed},
		{"update severity", update, set(upd, u+20, 6), ErrMalformed},
		{"update name over max", update, append(set(set(upd[:u+changeFixed], 0, 1), u+45, MaxName+1, 0), make([]byte, MaxName+1)...), ErrMalformed},
		{"update cause over max", update, append(set(set(upd[:u+changeFixed], 0, 1), u+45, 0, MaxCause+1), make([]byte, MaxCause+1)...), ErrMalformed},
		{"update name past end", update, set(upd, u+45, 255), ErrShort},
		{"update too big", update, make([]byte, MaxBody+1), ErrTooBig},
		{"prepare count 0", prepare, set(prep, 8, 0), ErrMalformed},
		{"prepare count over max", prepare, set(prep, 8, MaxChanges+1), ErrMalformed},
		{"prepare kind 0", prepare, set(prep, p+8, 0), ErrMalformed},
		{"prepare kind 6 (a mark: snapshots only)", prepare, set(prep, p+8, 6), ErrMalformed},
		{"snapshot last 2", snapshot, set(snap, 18, 2), ErrMalformed},
		{"snapshot count over max", snapshot, set(snap, 19, MaxChanges+1), ErrMalformed},
		{"snapshot count 0 with content", snapshot, set(snap, 19, 0), ErrMalformed},
		{"snapshot state", snapshot, set(snap, s+19, 9), ErrMalformed},
		{"snapshot kind 7", snapshot, set(snap, s+8, 7), ErrMalformed},
		{"leave empty", leave, nil, ErrShort},
		{"leave trailing", leave, []byte{1, 2}, ErrMalformed},
	}
	// Every proper prefix of a valid body is short, and one byte more is
	// trailing garbage.
	for _, v := range []struct {
		name string
		dec  dec
		body []byte
	}{
		{"heartbeat", heartbeat, hb},
		{"election", election, make([]byte, electionSize)},
		{"ack", ack, make([]byte, ackSize)},
		{"commit", commit, make([]byte, commitSize)},
		{"nack", nack, make([]byte, nackSize)},
		{"report", report, rep},
		{"leave", leave, []byte{0}},
		{"update", update, upd},
		{"prepare", prepare, prep},
		{"snapshot", snapshot, snap},
	} {
		for n := range len(v.body) {
			tests = append(tests, struct {
				name string
				dec  dec
				body []byte
				want error
			}{v.name + " truncated", v.dec, v.body[:n], ErrShort})
		}
		tests = append(tests, struct {
			name string
			dec  dec
			body []byte
			want error
		}{v.name + " trailing", v.dec, append(append([]byte(nil), v.body...), 0), ErrMalformed})
	}
	for _, tt := range tests {
		err := tt.dec(tt.body)
		require.ErrorIs(t, err, tt.want, "%s: % x", tt.name, tt.body)
	}
}

// bodyOf encodes with a test codec and returns the body of the datagram.
func bodyOf(enc func(c *Codec, dst []byte, h *Header) ([]byte, error)) ([]byte, error) {
	c := newTestCodec()
	h := testHeader()
	pkt, err := enc(c, nil, &h)
	if err != nil {
		return nil, err
	}
	_, body, err := c.Open(pkt)
	return body, err
}

func TestDecodeErrorLeavesZero(t *testing.T) {
	body, err := bodyOf(func(c *Codec, d []byte, h *Header) ([]byte, error) {
		out, _, err := c.AppendUpdate(d, h, testChanges(5, 10, 10))
		return out, err
	})
	require.NoError(t, err)
	var m Update
	require.NoError(t, DecodeUpdate(body, &m))
	require.Error(t, DecodeUpdate(body[:len(body)-1], &m))
	require.Zero(t, m)

	var hb Heartbeat
	hb.NPeers = 3
	require.Error(t, DecodeHeartbeat([]byte{1}, &hb))
	require.Zero(t, hb)
}

func TestDecodeReuseClearsStale(t *testing.T) {
	big, err := bodyOf(func(c *Codec, d []byte, h *Header) ([]byte, error) { return c.AppendHeartbeat(d, h, fullHeartbeat()) })
	require.NoError(t, err)
	small, err := bodyOf(func(c *Codec, d []byte, h *Header) ([]byte, error) { return c.AppendHeartbeat(d, h, smallHeartbeat()) })
	require.NoError(t, err)
	var m Heartbeat
	require.NoError(t, DecodeHeartbeat(big, &m))
	require.NoError(t, DecodeHeartbeat(small, &m))
	require.Equal(t, smallHeartbeat(), &m)
}

func TestReason(t *testing.T) {
	c := newTestCodec()
	_, _, errShort := c.Open(nil)
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{ErrShort, "short"},
		{errShort, "short"},
		{ErrTooBig, "too_big"},
		{ErrMagic, "magic"},
		{ErrVersion, "version"},
		{ErrCluster, "cluster"},
		{ErrAuth, "auth"},
		{ErrReplay, "replay"},
		{errReplayDup, "replay"},
		{ErrMalformed, "malformed"},
		{ErrWrongSocket, "socket"},
		{errChangeKind, "malformed"},
		{errors.New("x"), "other"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, Reason(tt.err), "%v", tt.err)
	}
	assert.Contains(t, errChangeKind.Error(), "change kind")
}

func TestTypeString(t *testing.T) {
	for ty := TypeHeartbeat; ty <= TypeLeave; ty++ {
		assert.NotEqual(t, "unknown", ty.String())
	}
	assert.Equal(t, "unknown", Type(0).String())
}

// An invalid change fails the datagram that would carry it, not the ones
// before it: what was sent stays valid and the caller learns which change.
func TestBatchInvalidChangeDeferred(t *testing.T) {
	c := newTestCodec()
	h := testHeader()
	cs := testChanges(20, MaxName, MaxCause)
	cs[len(cs)-1].Kind = 0
	_, n, err := c.AppendUpdate(nil, &h, cs)
	require.NoError(t, err)
	require.Less(t, n, len(cs)-1)
	_, _, err = c.AppendUpdate(nil, &h, cs[len(cs)-1:])
	require.ErrorIs(t, err, ErrMalformed)
}

// The fields appended for versioned writes survive a round trip.
func TestVersionsRoundTrip(t *testing.T) {
	c := NewCodec(7, []byte("k"))
	v := WriteVersion{Epoch: 3, Seq: 1 << 40, Node: 9}
	h := Header{Sender: 1, Incarnation: 1, Epoch: 3, Seq: 1}
	open := func(pkt []byte) []byte {
		_, body, err := c.Open(pkt)
		require.NoError(t, err)
		return body
	}
	pkt, err := c.AppendAck(nil, &h, &Ack{Kind: AckReport, ID: 5, Seq: 6, Err: 3, Ver: v})
	require.NoError(t, err)
	var a Ack
	require.NoError(t, DecodeAck(open(pkt), &a))
	require.Equal(t, v, a.Ver)
	pkt, err = c.AppendReport(nil, &h, &Report{ID: 1, Kind: ReportRegister, Entity: 2, Name: []byte("svc/a"), Ver: v, State: StateDown,
		StateVer: WriteVersion{Epoch: v.Epoch + 1, Seq: 3, Node: 4}})
	require.NoError(t, err)
	var r Report
	require.NoError(t, DecodeReport(open(pkt), &r))
	require.Equal(t, v, r.Ver)
	require.Equal(t, StateDown, r.State)
	require.Equal(t, WriteVersion{Epoch: v.Epoch + 1, Seq: 3, Node: 4}, r.StateVer)
	pkt, _, err = c.AppendUpdate(nil, &h, []Change{{Seq: 1, Kind: ChangeClear, Entity: 2, Cause: []byte("c"), Ver: v}, {Seq: 2, Kind: ChangeRaise, Entity: 2, Cause: []byte("d"), Severity: SevMajor}})
	require.NoError(t, err)
	var u Update
	require.NoError(t, DecodeUpdate(open(pkt), &u))
	require.Equal(t, v, u.Changes[0].Ver)
	require.True(t, u.Changes[1].Ver.IsZero())
	require.Equal(t, "d", string(u.Changes[1].Cause))
	hb := &Heartbeat{Role: RoleMember, TableEpoch: 11, NPeers: 1, Peers: [MaxPeers]PeerView{{Node: 2, Incarnation: 1, Links: 1}}}
	pkt, err = c.AppendHeartbeat(nil, &h, hb)
	require.NoError(t, err)
	var m Heartbeat
	require.NoError(t, DecodeHeartbeat(open(pkt), &m))
	require.Equal(t, uint64(11), m.TableEpoch)
	require.True(t, WriteVersion{Epoch: 2, Seq: 9}.Less(v) && !v.Less(v) && v.Less(WriteVersion{Epoch: 3, Seq: 1 << 40, Node: 10}))
}

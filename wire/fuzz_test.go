package wire

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// The seed corpus lives in testdata/fuzz/<FuzzName>/ so a plain `go test`
// replays it. It is generated from the round-trip cases:
//
//	go test ./wire/ -run TestWriteFuzzCorpus -wire.writecorpus
var writeCorpus = flag.Bool("wire.writecorpus", false, "rewrite the generated seed corpus under testdata/fuzz")

// FuzzOpen: no input panics Open; a rejected packet yields nothing; an
// accepted one decodes and re-encodes to the very same bytes.
func FuzzOpen(f *testing.F) {
	f.Fuzz(func(t *testing.T, pkt []byte) {
		c := newTestCodec()
		h, body, err := c.Open(pkt)
		if err != nil {
			require.Zero(t, h)
			require.Nil(t, body)
			require.NotEqual(t, "other", Reason(err), "%v", err)
			return
		}
		again, err := reencode(c, h, body)
		if err != nil {
			// Authentic but undecodable: only a key holder can make that.
			require.NotEqual(t, "other", Reason(err), "%v", err)
			return
		}
		require.Equal(t, pkt, again)
	})
}

// fuzzDecoder: no input panics decode; an accepted body re-encodes to the
// same bytes (and so to an equivalent message), in a datagram Open accepts.
func fuzzDecoder(f *testing.F, typ Type, decode func([]byte) error) {
	f.Fuzz(func(t *testing.T, body []byte) {
		if err := decode(body); err != nil {
			require.NotEqual(t, "other", Reason(err), "%v", err)
			return
		}
		c := newTestCodec()
		h := testHeader()
		h.Type = typ
		pkt, err := reencode(c, h, body)
		require.NoError(t, err)
		require.LessOrEqual(t, len(pkt), MaxDatagram)
		got, body2, err := c.Open(pkt)
		require.NoError(t, err)
		require.Equal(t, typ, got.Type)
		require.Equal(t, body, body2)
	})
}

func FuzzDecodeHeartbeat(f *testing.F) {
	// Decoding into a reused message must give what a fresh one gives.
	var reused Heartbeat
	fuzzDecoder(f, TypeHeartbeat, func(b []byte) error {
		var m Heartbeat
		err := DecodeHeartbeat(b, &m)
		if err2 := DecodeHeartbeat(b, &reused); (err == nil) != (err2 == nil) || m != reused {
			panic("reused heartbeat decodes differently")
		}
		return err
	})
}

func FuzzDecodeElection(f *testing.F) {
	fuzzDecoder(f, TypeElection, func(b []byte) error { var m Election; return DecodeElection(b, &m) })
}

func FuzzDecodeUpdate(f *testing.F) {
	fuzzDecoder(f, TypeUpdate, func(b []byte) error { var m Update; return DecodeUpdate(b, &m) })
}

func FuzzDecodePrepare(f *testing.F) {
	fuzzDecoder(f, TypePrepare, func(b []byte) error { var m Prepare; return DecodePrepare(b, &m) })
}

func FuzzDecodeAck(f *testing.F) {
	fuzzDecoder(f, TypeAck, func(b []byte) error { var m Ack; return DecodeAck(b, &m) })
}

func FuzzDecodeCommit(f *testing.F) {
	fuzzDecoder(f, TypeCommit, func(b []byte) error { var m Commit; return DecodeCommit(b, &m) })
}

func FuzzDecodeNack(f *testing.F) {
	fuzzDecoder(f, TypeNack, func(b []byte) error { var m Nack; return DecodeNack(b, &m) })
}

func FuzzDecodeSnapshot(f *testing.F) {
	fuzzDecoder(f, TypeSnapshot, func(b []byte) error { var m Snapshot; return DecodeSnapshot(b, &m) })
}

func FuzzDecodeReport(f *testing.F) {
	fuzzDecoder(f, TypeReport, func(b []byte) error { var m Report; return DecodeReport(b, &m) })
}

func FuzzDecodeLeave(f *testing.F) {
	fuzzDecoder(f, TypeLeave, func(b []byte) error { var m Leave; return DecodeLeave(b, &m) })
}

// FuzzReplayWindow drives a window with arbitrary traffic and checks it
// against the obvious model: admit a pair iff it is of a newer incarnation,
// or of the current one, unseen, and not ReplayWidth or more behind the top.
func FuzzReplayWindow(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 0, 1, 1, 200, 0, 77, 2, 5})
	f.Add([]byte{0, 255, 0, 128, 0, 127, 0, 1, 3, 1, 0, 64})
	f.Fuzz(func(t *testing.T, ops []byte) {
		var w ReplayWindow
		var inc, top uint64
		seen := map[[2]uint64]bool{}
		for len(ops) >= 2 {
			// op: incarnation step (-1, 0, +1, +2) in the low 2 bits and a
			// seq step in the rest of the first byte; second byte the size.
			op, v := ops[0], uint64(ops[1])
			ops = ops[2:]
			i := inc
			switch op & 3 {
			case 0:
				if i > 0 {
					i--
				}
			case 2:
				i++
			case 3:
				i += 2
			}
			s := top
			if op&4 != 0 {
				s += v
			} else if v < s {
				s -= v
			} else {
				s = 0
			}
			want := s != 0 && (i > inc || (i == inc && (s > top || (top-s < ReplayWidth && !seen[[2]uint64{i, s}]))))
			err := w.Admit(i, s)
			require.Equal(t, want, err == nil, "admit (%d,%d) at inc %d top %d", i, s, inc, top)
			if err != nil {
				require.ErrorIs(t, err, ErrReplay)
				continue
			}
			seen[[2]uint64{i, s}] = true
			if i > inc {
				inc, top = i, s
			} else if s > top {
				top = s
			}
		}
	})
}

// TestWriteFuzzCorpus regenerates the seed corpus from the round-trip cases
// (valid messages of every type, including the maximal ones) and a few
// deliberately broken inputs.
func TestWriteFuzzCorpus(t *testing.T) {
	if !*writeCorpus {
		t.Skip("run with -wire.writecorpus to regenerate testdata/fuzz")
	}
	c := newTestCodec()
	target := map[Type]string{
		TypeHeartbeat: "FuzzDecodeHeartbeat",
		TypeElection:  "FuzzDecodeElection",
		TypeUpdate:    "FuzzDecodeUpdate",
		TypePrepare:   "FuzzDecodePrepare",
		TypeAck:       "FuzzDecodeAck",
		TypeCommit:    "FuzzDecodeCommit",
		TypeNack:      "FuzzDecodeNack",
		TypeSnapshot:  "FuzzDecodeSnapshot",
		TypeReport:    "FuzzDecodeReport",
		TypeLeave:     "FuzzDecodeLeave",
	}
	write := func(fuzzName, seedName string, data []byte) {
		dir := filepath.Join("testdata", "fuzz", fuzzName)
		require.NoError(t, os.MkdirAll(dir, 0o755))
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		require.NoError(t, os.WriteFile(filepath.Join(dir, seedName), []byte(content), 0o644))
	}
	count := map[string]int{}
	for _, rt := range roundTrips() {
		h := testHeader()
		pkt, err := rt.encode(c, nil, &h)
		require.NoError(t, err)
		_, body, err := c.Open(pkt)
		require.NoError(t, err)
		name := "seed-" + strings.ReplaceAll(rt.name, " ", "-")
		count[name]++
		name = fmt.Sprintf("%s-%d", name, count[name])
		write("FuzzOpen", name, pkt)
		write(target[h.Type], name, body)
		// A truncated body and one with a byte too many: the rejection
		// paths, as starting points for the mutator.
		write(target[h.Type], name+"-cut", body[:len(body)/2])
		write(target[h.Type], name+"-long", append(append([]byte(nil), body...), 0xff))
	}
	write("FuzzOpen", "seed-other-cluster", func() []byte {
		h := testHeader()
		pkt, err := NewCodec(testCluster+1, testKey).AppendLeave(nil, &h, &Leave{})
		require.NoError(t, err)
		return pkt
	}())
	write("FuzzOpen", "seed-oversize", make([]byte, MaxDatagram+1))
}

// FuzzCheckName: CheckName never panics, and what it accepts is valid
// UTF-8 with no empty segment.
func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"node/1", "svc/café", "n\u043ede/1", "svc/a\u200bb", "//", "svc/e\u0301"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckName(s) != nil {
			return
		}
		if !utf8.ValidString(s) || strings.Contains(s, "//") || strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") {
			t.Fatalf("accepted %q", s)
		}
	})
}

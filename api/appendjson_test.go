package api

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/wire"
)

// randString draws strings with what JSON must escape: control bytes,
// quotes, backslashes, HTML's <>&, U+2028/2029, other runes, invalid UTF-8.
func randString(r *rand.Rand) string {
	pieces := []string{"a", "svc/x", "\"", "\\", "<", ">", "&", "\u2028", "\u2029", "é", "日本", "\U0001F600",
		"\x00", "\x1f", "\n", "\r", "\t", "\b", "\f", "\x7f", "\xff", "\xc3", "\xe2\x80", " ", "/", "\ufffd"}
	var b strings.Builder
	for range r.IntN(8) {
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	return b.String()
}

func randTime(r *rand.Rand) time.Time {
	locs := []*time.Location{time.UTC, time.FixedZone("x", 3600), time.FixedZone("y", -5*3600-1800), time.Local}
	t := time.Unix(r.Int64N(4102444800), r.Int64N(1e9)) // 1970..2100
	if r.IntN(4) == 0 {
		t = t.Truncate(time.Second) // no fraction: RFC 3339 without one
	}
	if r.IntN(5) == 0 {
		t = t.Truncate(time.Millisecond) // trailing zeros trimmed
	}
	return t.In(locs[r.IntN(len(locs))])
}

func randEntity(r *rand.Rand) Entity {
	e := Entity{
		ID: ID(r.Uint64()), Name: randString(r), Kind: Kind(randString(r)), Owner: wire.NodeID(r.Uint32()),
		State: State(randString(r)), Incarnation: r.Uint64(), ChangedAt: randTime(r), ChangedSeq: r.Uint64(),
		ChangedBy: wire.NodeID(r.Uint32()),
	}
	if r.IntN(3) == 0 {
		e.Version = &WriteVersion{Epoch: r.Uint64(), Seq: r.Uint64(), Master: wire.NodeID(r.Uint32())}
	}
	switch r.IntN(3) {
	case 0: // nil alarms: written [] all the same
	case 1:
		e.Alarms = []Alarm{}
	default:
		for range 1 + r.IntN(3) {
			e.Alarms = append(e.Alarms, Alarm{Cause: randString(r), Severity: Severity(randString(r)), RaisedAt: randTime(r), RaisedBy: wire.NodeID(r.Uint32())})
		}
	}
	return e
}

// AppendEntityJSON writes the very bytes Entity.MarshalJSON does (the list
// reply's encoding and every other reply's must not differ).
func TestAppendEntityJSONIsMarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 3))
	for i := range 5000 {
		e := randEntity(r)
		want, err := json.Marshal(&e)
		require.NoError(t, err)
		got := AppendEntityJSON([]byte("prefix"), &e)
		require.Equal(t, "prefix"+string(want), string(got), "entity %d: %#v", i, e)
	}
	var zero Entity
	want, err := json.Marshal(zero)
	require.NoError(t, err)
	assert.Equal(t, string(want), string(AppendEntityJSON(nil, &zero)))
}

func FuzzAppendEntityJSON(f *testing.F) {
	f.Add("svc/x", "cause", int64(0))
	f.Add("<\u2028\xff>", "\x00\"\\", int64(1e18))
	f.Fuzz(func(t *testing.T, name, cause string, ns int64) {
		e := Entity{Name: name, Kind: Kind(cause), ChangedAt: time.Unix(0, ns%4102444800e9), Alarms: []Alarm{{Cause: cause, RaisedAt: time.Unix(0, ns%4102444800e9)}}}
		want, err := json.Marshal(&e) // years 1840..2100: never refused
		require.NoError(t, err)
		if got := AppendEntityJSON(nil, &e); string(got) != string(want) {
			t.Fatalf("got %s\nwant %s", got, want)
		}
	})
}

// Appending an entity (with alarms and a version) to a buffer with room
// allocates nothing.
func TestAppendEntityJSONAllocs(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	e := randEntity(r)
	e.Alarms = []Alarm{{Cause: "c", Severity: "major", RaisedAt: time.Now(), RaisedBy: 2}}
	e.Version = &WriteVersion{Epoch: 1, Seq: 2, Master: 3}
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { buf = AppendEntityJSON(buf[:0], &e) }); n != 0 {
		t.Errorf("%v allocations per entity", n)
	}
}

// The list reply's encoding of 4,000 entities (as the listers soak's
// table): encoding/json per entity, as writeList did until 3 December 2026,
// against AppendEntityJSON, in one run (go test -bench ListEncoding
// -benchmem ./api).
func BenchmarkListEncoding(b *testing.B) {
	es := make([]Entity, 4000)
	for i := range es {
		es[i] = Entity{ID: ID(i * 7919), Name: "svc/soak-list-3-0/" + strconv.Itoa(i), Kind: KindService, Owner: 3, State: StateUp,
			Incarnation: 1796265650666247854, ChangedAt: time.Now(), ChangedSeq: uint64(i), ChangedBy: 3}
	}
	b.Run("marshal", func(b *testing.B) {
		b.ReportAllocs()
		chunk := make([]byte, 0, MaxBody)
		for b.Loop() {
			chunk = chunk[:0]
			for i := range es {
				enc, err := json.Marshal(&es[i])
				if err != nil {
					b.Fatal(err)
				}
				if len(chunk)+len(enc) > MaxBody {
					chunk = chunk[:0]
				}
				chunk = append(chunk, enc...)
			}
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		chunk := make([]byte, 0, MaxBody+4096)
		for b.Loop() {
			chunk = chunk[:0]
			for i := range es {
				if len(chunk) > MaxBody {
					chunk = chunk[:0]
				}
				chunk = AppendEntityJSON(chunk, &es[i])
			}
		}
	})
}

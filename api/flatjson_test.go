package api

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newFlatRequests returns one zero value of every flat request type.
func newFlatRequests() []any {
	return []any{&RegisterRequest{}, &UnregisterRequest{}, &ReportRequest{}, &RaiseRequest{},
		&ClearRequest{}, &SetStateRequest{}, &GetRequest{}}
}

// randFlat fills a flat request's members with str's strings and random
// bools (an empty string or false one time in four: omitempty's case).
func randFlat(r *rand.Rand, v any, str func(*rand.Rand) string) {
	var buf [maxFlatFields]flatField
	for _, f := range flatFieldsOf(v, &buf) {
		if f.s != nil && r.IntN(4) != 0 {
			*f.s = str(r)
		}
		if f.b != nil {
			*f.b = r.IntN(2) == 0
		}
	}
}

// plainString draws strings a client writes without escapes (what
// encoding/json escapes: control bytes, quotes, backslashes, <, > and &,
// U+2028 and U+2029, invalid UTF-8, which then go to encoding/json).
func plainString(r *rand.Rand) string {
	pieces := []string{"a", "svc/x", "node/3", "-", "_", ".", ":", " ", "é", "日本", "\U0001F600", "\x7f", "major"}
	var b strings.Builder
	for range 1 + r.IntN(6) {
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	return b.String()
}

// Every flat request lists each of its members once, in the order of its
// JSON tags, with their names: what AppendRequestJSON and decodeFlat rely on.
func TestFlatFieldsAreTheStructs(t *testing.T) {
	for _, v := range newFlatRequests() {
		var buf [maxFlatFields]flatField
		fields := flatFieldsOf(v, &buf)
		rt := reflect.TypeOf(v).Elem()
		require.Equal(t, rt.NumField(), len(fields), "%s", rt)
		rv := reflect.ValueOf(v).Elem()
		for i, f := range fields {
			name, opts, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			assert.Equal(t, name, f.name, "%s.%s", rt, rt.Field(i).Name)
			assert.Equal(t, opts == "omitempty", f.omitempty, "%s.%s", rt, rt.Field(i).Name)
			addr := rv.Field(i).Addr().UnsafePointer()
			if f.s != nil {
				assert.Equal(t, addr, reflect.ValueOf(f.s).UnsafePointer(), "%s.%s", rt, rt.Field(i).Name)
			} else {
				assert.Equal(t, addr, reflect.ValueOf(f.b).UnsafePointer(), "%s.%s", rt, rt.Field(i).Name)
			}
		}
	}
}

// AppendRequestJSON writes the very bytes json.Marshal does, escapes and
// omitted members included.
func TestAppendRequestJSONIsMarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 4))
	for i := range 3000 {
		for _, v := range newFlatRequests() {
			randFlat(r, v, randString)
			want, err := json.Marshal(v)
			require.NoError(t, err)
			got, ok := AppendRequestJSON([]byte("prefix"), v)
			require.True(t, ok)
			require.Equal(t, "prefix"+string(want), string(got), "%d: %#v", i, v)
		}
	}
	got, ok := AppendRequestJSON(nil, &ListRequest{})
	assert.False(t, ok)
	assert.Empty(t, got)
}

// What a client sends (AppendRequestJSON's bytes, or encoding/json's,
// indented or not) takes the fast path and decodes to what it encoded.
func TestDecodeFlatTakesClientBodies(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 8))
	for i := range 3000 {
		for _, v := range newFlatRequests() {
			randFlat(r, v, plainString)
			body, _ := AppendRequestJSON(nil, v)
			indented, err := json.MarshalIndent(v, " ", "\t")
			require.NoError(t, err)
			for _, b := range [][]byte{body, indented, []byte(" \r\n" + string(body) + "\n")} {
				got := reflect.New(reflect.TypeOf(v).Elem()).Interface()
				require.True(t, decodeFlat(b, got), "%d: %s", i, b)
				require.Equal(t, v, got, "%d: %s", i, b)
			}
		}
	}
}

// Bodies outside the plain subset are left to encoding/json, which decides
// what they mean or why they are refused.
func TestDecodeFlatLeavesTheRestToEncodingJSON(t *testing.T) {
	for _, body := range []string{
		`{"name":"a\"b"}`,              // an escape
		`{"name":"\u0061"}`,            // another
		`{"n\u0061me":"a"}`,            // an escaped member name
		`{"Name":"a"}`,                 // a member in other case: encoding/json matches it
		`{"name":"a","name":"b"}`,      // twice: encoding/json keeps the last
		`{"name":null}`,                // null leaves the member as it was
		`{"name":1}`,                   // a number: encoding/json's error
		`{"name":"a","other":"b"}`,     // an unknown member: its error
		`{"name":"a"} {}`,              // data after the object
		`{"name":"a"`,                  // cut
		`{"name":"a",}`,                // a trailing comma
		"{\"name\":\"a\x01\"}",         // a control byte
		"{\"name\":\"\xff\"}",          // invalid UTF-8: encoding/json writes U+FFFD
		"\v{\"name\":\"a\"}",           // not JSON space
		`["name"]`,                     // not an object
		`{"name" "a"}`,                 // no colon
		`{"name":"a" "cause":"b"}`,     // no comma
		`{"cause":"c","txn":tru}`,      // not a bool
		`{"cause":"c","txn":truex}`,    // not a bool either
		`{"cause":"c","txn":"true"}`,   // a string for a bool
		`{"name":"a","severity":true}`, // a bool for a string
	} {
		var req ReportRequest
		assert.False(t, decodeFlat([]byte(body), &req), "%s", body)
		assert.Equal(t, ReportRequest{}, req, "untouched: %s", body)
	}
	assert.False(t, decodeFlat([]byte(`{"prefix":"a"}`), &ListRequest{}), "not a flat request")
	for _, body := range []string{`{}`, ` { } `, `{"txn":true}`, `{"txn":false,"name":""}`} {
		var req ReportRequest
		assert.True(t, decodeFlat([]byte(body), &req), "%s", body)
	}
}

// Wherever decodeFlat answers, encoding/json (as the server used it alone
// until 3 December 2026) accepts the body and decodes the same request.
func FuzzDecodeFlat(f *testing.F) {
	for _, s := range []string{`{"name":"svc/x","cause":"c","severity":"major","txn":true}`,
		`{"name":"a","kind":"service","process":false}`, ` {"state" : "down" , "name":"n"} `,
		`{"name":"a\"b"}`, `{"Name":"x"}`, "{\"name\":\"\xff\"}", `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range newFlatRequests() {
			if !decodeFlat(body, v) {
				continue
			}
			want := reflect.New(reflect.TypeOf(v).Elem()).Interface()
			if err := decodeJSON(body, want); err != nil {
				t.Fatalf("%T: decodeFlat took %q, which encoding/json refuses: %v", v, body, err)
			}
			if !reflect.DeepEqual(v, want) {
				t.Fatalf("%T: %q: decodeFlat %+v, encoding/json %+v", v, body, v, want)
			}
		}
	})
}

// The same check over random bodies built from JSON's pieces, so that it
// runs in every `go test` and not only under -fuzz.
func TestDecodeFlatAgreesWithEncodingJSON(t *testing.T) {
	pieces := []string{"{", "}", `"name"`, `"cause"`, `"severity"`, `"txn"`, `"kind"`, `"process"`, `"state"`, `"Name"`,
		":", ",", " ", "\t", "\n", `"a"`, `"svc/x"`, `"a\"b"`, `"é"`, "\"\xff\"", "true", "false", "null", "1", `""`, "[", "]"}
	r := rand.New(rand.NewPCG(23, 42))
	took := 0
	for range 200000 {
		var b strings.Builder
		if r.IntN(2) == 0 {
			b.WriteString("{")
		}
		for range r.IntN(12) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		if r.IntN(2) == 0 {
			b.WriteString("}")
		}
		body := []byte(b.String())
		for _, v := range newFlatRequests() {
			if !decodeFlat(body, v) {
				continue
			}
			took++
			want := reflect.New(reflect.TypeOf(v).Elem()).Interface()
			require.NoError(t, decodeJSON(body, want), "%T: %q", v, body)
			require.Equal(t, want, v, "%T: %q", v, body)
		}
	}
	assert.Greater(t, took, 1000, "the fast path answered too rarely to check it")
}

// A report's body decodes with one allocation per string member (the
// strings themselves) and nothing else.
func TestDecodeFlatAllocs(t *testing.T) {
	body := []byte(`{"name":"svc/bench-alarm","cause":"bench-1-2","severity":"major","txn":true}`)
	var req ReportRequest
	n := testing.AllocsPerRun(100, func() {
		req = ReportRequest{}
		if !decodeFlat(body, &req) {
			t.Fatal("not decoded")
		}
	})
	assert.LessOrEqual(t, n, 3.0)
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf, _ = AppendRequestJSON(buf[:0], &req) }); n != 0 {
		t.Errorf("AppendRequestJSON: %v allocations", n)
	}
}

// A report's body decoded by encoding/json (as until 3 December 2026) and
// by decodeFlat, and encoded by json.Marshal and AppendRequestJSON, in one
// run (go test -bench RequestCodec -benchmem ./api).
func BenchmarkRequestCodec(b *testing.B) {
	req := ReportRequest{Name: "svc/bench-alarm", Cause: "bench-12345678-42", Severity: SevMajor}
	body, _ := AppendRequestJSON(nil, &req)
	b.Run("decode/encoding-json", func(b *testing.B) {
		for b.Loop() {
			var r ReportRequest
			if err := decodeJSON(body, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode/flat", func(b *testing.B) {
		for b.Loop() {
			var r ReportRequest
			if !decodeFlat(body, &r) {
				b.Fatal("not decoded")
			}
		}
	})
	b.Run("encode/json-marshal", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(&req); err != nil {
				b.Fatal(err)
			}
		}
	})
	buf := make([]byte, 0, 256)
	b.Run("encode/append", func(b *testing.B) {
		for b.Loop() {
			buf, _ = AppendRequestJSON(buf[:0], &req)
		}
	})
}

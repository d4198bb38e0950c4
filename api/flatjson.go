package api

import "unicode/utf8"

// The write requests (and Get) are flat JSON objects of strings and bools.
// A fault report's way to the master starts with its body being encoded in
// the client and decoded in the agent, and encoding/json, whose reflection
// walks a lot of code and type data, ran cold there: traced on five agents
// on loopback (3 December 2026), the agent's json.Decoder.Decode of a
// ReportRequest took 55 µs at the median and 440 µs at p99 between two
// reports, against 1.7 µs in a warm benchmark, and the client's
// json.Marshal 12 / 220 µs. flatFields lists such a request's members, so
// that one small loop encodes them (AppendRequestJSON) and decodes them
// (decodeFlat) instead. The decoder takes only the plain subset of JSON
// that a client writes (exact member names, no escapes, each member once)
// and leaves anything else to encoding/json, which so keeps the last word
// on what a body means and on every error (FuzzDecodeFlat checks that both
// agree wherever the fast path answers).

// flatField is one member of a flat request: a string (s) or a bool (b).
type flatField struct {
	name      string
	s         *string
	b         *bool
	omitempty bool
}

// maxFlatFields bounds the members of a flat request.
const maxFlatFields = 4

// flatFieldsOf fills buf with the members of v, a flat request, in
// declaration order (their JSON order) and returns the part it used; nil
// if v is not a flat request. (A type switch rather than an interface
// method: through an interface, buf would escape to the heap.)
func flatFieldsOf(v any, buf *[maxFlatFields]flatField) []flatField {
	switch r := v.(type) {
	case *RegisterRequest:
		*buf = [maxFlatFields]flatField{{name: "name", s: &r.Name}, {name: "kind", s: (*string)(&r.Kind)},
			{name: "process", b: &r.Process, omitempty: true}, {name: "txn", b: &r.Txn, omitempty: true}}
		return buf[:4]
	case *ReportRequest:
		*buf = [maxFlatFields]flatField{{name: "name", s: &r.Name}, {name: "cause", s: &r.Cause, omitempty: true},
			{name: "severity", s: (*string)(&r.Severity), omitempty: true}, {name: "txn", b: &r.Txn, omitempty: true}}
		return buf[:4]
	case *RaiseRequest:
		*buf = [maxFlatFields]flatField{{name: "name", s: &r.Name}, {name: "cause", s: &r.Cause},
			{name: "severity", s: (*string)(&r.Severity)}}
		return buf[:3]
	case *ClearRequest:
		*buf = [maxFlatFields]flatField{{name: "name", s: &r.Name}, {name: "cause", s: &r.Cause}}
		return buf[:2]
	case *SetStateRequest:
		*buf = [maxFlatFields]flatField{{name: "name", s: &r.Name}, {name: "state", s: (*string)(&r.State)}}
		return buf[:2]
	case *UnregisterRequest:
		*buf = [maxFlatFields]flatField{{name: "name", s: &r.Name}}
		return buf[:1]
	case *GetRequest:
		*buf = [maxFlatFields]flatField{{name: "name", s: &r.Name}}
		return buf[:1]
	}
	return nil
}

// AppendRequestJSON appends req's body as json.Marshal writes it (the same
// bytes: TestAppendRequestJSONIsMarshal) for the flat requests: the four
// writes, Register, Unregister and Get, given as pointers. For any other
// request it returns dst and false.
func AppendRequestJSON(dst []byte, req any) ([]byte, bool) {
	var buf [maxFlatFields]flatField
	fields := flatFieldsOf(req, &buf)
	if fields == nil {
		return dst, false
	}
	dst = append(dst, '{')
	first := true
	for _, f := range fields {
		if f.omitempty && (f.s != nil && *f.s == "" || f.b != nil && !*f.b) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = append(dst, f.name...)
		dst = append(dst, '"', ':')
		switch {
		case f.s != nil:
			dst = appendJSONString(dst, *f.s)
		case *f.b:
			dst = append(dst, "true"...)
		default:
			dst = append(dst, "false"...)
		}
	}
	return append(dst, '}'), true
}

// decodeFlat decodes body into v if v is a flat request and body is in the
// plain subset of JSON: one object; members named exactly as v's, each at
// most once; strings without escapes or control bytes, in valid UTF-8;
// true and false; the four JSON spaces anywhere between tokens. It reports
// whether it did; when it did not, v is untouched and encoding/json decodes
// body (and says what is wrong with it, if anything). Where both decode a
// body they give the same request (FuzzDecodeFlat).
func decodeFlat(body []byte, v any) bool {
	var buf [maxFlatFields]flatField
	fields := flatFieldsOf(v, &buf)
	if fields == nil {
		return false
	}
	// What was read, kept until the whole body has been: v is written
	// only if it all is in the subset.
	var raw [maxFlatFields][]byte
	var bools [maxFlatFields]bool
	var seen [maxFlatFields]bool
	i := skipJSONSpace(body, 0)
	if i == len(body) || body[i] != '{' {
		return false
	}
	i = skipJSONSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		i++
	} else {
		for {
			key, next, ok := plainJSONString(body, i)
			if !ok {
				return false
			}
			k := -1
			for j := range fields {
				if fields[j].name == string(key) { // no allocation: a comparison
					k = j
					break
				}
			}
			if k < 0 || seen[k] {
				return false // another member (or one in other case), or twice
			}
			seen[k] = true
			i = skipJSONSpace(body, next)
			if i == len(body) || body[i] != ':' {
				return false
			}
			i = skipJSONSpace(body, i+1)
			if fields[k].s != nil {
				if raw[k], i, ok = plainJSONString(body, i); !ok || !utf8.Valid(raw[k]) {
					return false
				}
			} else if hasPrefixAt(body, i, "true") {
				bools[k], i = true, i+4
			} else if hasPrefixAt(body, i, "false") {
				i += 5
			} else {
				return false
			}
			i = skipJSONSpace(body, i)
			if i == len(body) {
				return false
			}
			if body[i] == '}' {
				i++
				break
			}
			if body[i] != ',' {
				return false
			}
			i = skipJSONSpace(body, i+1)
		}
	}
	if skipJSONSpace(body, i) != len(body) {
		return false
	}
	for k := range fields {
		switch {
		case !seen[k]:
		case fields[k].s != nil:
			*fields[k].s = string(raw[k])
		default:
			*fields[k].b = bools[k]
		}
	}
	return true
}

// skipJSONSpace returns the index of the first byte at or after i that is
// not JSON white space.
func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainJSONString reads a string at b[i] that needs no unescaping: its
// bytes (without the quotes) and the index after its closing quote. ok is
// false if there is no string at i, or it has an escape or a control byte.
func plainJSONString(b []byte, i int) (s []byte, next int, ok bool) {
	if i == len(b) || b[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20:
			return nil, i, false
		}
	}
	return nil, i, false
}

func hasPrefixAt(b []byte, i int, p string) bool {
	return len(b)-i >= len(p) && string(b[i:i+len(p)]) == p
}

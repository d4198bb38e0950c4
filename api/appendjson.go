package api

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendEntityJSON appends e as Entity.MarshalJSON writes it (the same
// bytes, TestAppendEntityJSONIsMarshal) and allocates nothing: the list
// reply writes thousands of entities, and encoding/json's three
// allocations and copies of each (the method's copy of the entity, its
// result, the encoder's copy of that) were most of what a whole-table list
// left for the garbage collector, whose stop-the-world pauses the
// real-time loop shares (soak -listers).
func AppendEntityJSON(dst []byte, e *Entity) []byte {
	dst = append(dst, `{"id":"0x`...)
	dst = appendHex16(dst, uint64(e.ID))
	dst = append(dst, `","name":`...)
	dst = appendJSONString(dst, e.Name)
	dst = append(dst, `,"kind":`...)
	dst = appendJSONString(dst, string(e.Kind))
	dst = append(dst, `,"owner":`...)
	dst = strconv.AppendUint(dst, uint64(e.Owner), 10)
	dst = append(dst, `,"state":`...)
	dst = appendJSONString(dst, string(e.State))
	dst = append(dst, `,"incarnation":`...)
	dst = strconv.AppendUint(dst, e.Incarnation, 10)
	dst = append(dst, `,"changed_at":`...)
	dst = appendJSONTime(dst, e.ChangedAt)
	dst = append(dst, `,"changed_seq":`...)
	dst = strconv.AppendUint(dst, e.ChangedSeq, 10)
	dst = append(dst, `,"changed_by":`...)
	dst = strconv.AppendUint(dst, uint64(e.ChangedBy), 10)
	dst = append(dst, `,"alarms":[`...)
	for i := range e.Alarms {
		a := &e.Alarms[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"cause":`...)
		dst = appendJSONString(dst, a.Cause)
		dst = append(dst, `,"severity":`...)
		dst = appendJSONString(dst, string(a.Severity))
		dst = append(dst, `,"raised_at":`...)
		dst = appendJSONTime(dst, a.RaisedAt)
		dst = append(dst, `,"raised_by":`...)
		dst = strconv.AppendUint(dst, uint64(a.RaisedBy), 10)
		dst = append(dst, '}')
	}
	dst = append(dst, ']')
	if v := e.Version; v != nil {
		dst = append(dst, `,"version":{"epoch":`...)
		dst = strconv.AppendUint(dst, v.Epoch, 10)
		dst = append(dst, `,"seq":`...)
		dst = strconv.AppendUint(dst, v.Seq, 10)
		dst = append(dst, `,"master":`...)
		dst = strconv.AppendUint(dst, uint64(v.Master), 10)
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// appendHex16 appends v as 16 lower-case hex digits (hex64JSON's).
func appendHex16(dst []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		dst = append(dst, digits[v>>uint(shift)&0xf])
	}
	return dst
}

// appendJSONTime appends t in UTC as time.Time.MarshalJSON writes it
// (RFC 3339 with nanoseconds, quoted); a year outside 0..9999, which
// MarshalJSON refuses, is not written by the agent (its clock's times).
func appendJSONTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// appendJSONString appends s quoted and escaped as encoding/json writes a
// string (with its HTML escaping: <, > and & as \u003c, \u003e, \u0026;
// invalid UTF-8 as \ufffd; U+2028 and U+2029 escaped).
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

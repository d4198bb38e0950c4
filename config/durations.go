package config

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
)

// Durations must be strings with a unit. BurntSushi/toml decodes a bare
// integer into a time.Duration as nanoseconds, so "[[hooks]] timeout = 10"
// would kill every hook after 10 ns, and "backoff = 5" restart a daemon
// after 5 ns: a trap, refused here for every duration-typed key. The keys
// are found by walking Config's type, not listed by hand, so a duration key
// added later is covered too (TestEveryDurationKeyRefusesABareNumber).

// bareDurations returns one *Error per duration-typed key that the decoded
// document doc (the file as generic TOML values) sets to anything but a
// string, in the order of Config's fields; keys of [[tables]] carry their
// index ("hooks[1].timeout").
func bareDurations(doc map[string]any) []*Error {
	var errs []*Error
	walkDurations(reflect.TypeOf(fileConfig{}), doc, "", &errs)
	return errs
}

func walkDurations(t reflect.Type, doc map[string]any, prefix string, errs *[]*Error) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			walkDurations(f.Type, doc, prefix, errs)
			continue
		}
		tag := f.Tag.Get("toml")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		v, ok := doc[tag]
		if !ok {
			continue
		}
		key := prefix + tag
		ft := f.Type
		switch {
		case ft == durationType:
			if _, ok := v.(string); !ok {
				*errs = append(*errs, &Error{Key: key, Value: fmt.Sprint(v),
					Reason: "must be a duration string with a unit, like \"10ms\" or \"10s\" (a bare number would be taken as nanoseconds)"})
			}
		case ft.Kind() == reflect.Struct:
			if m, ok := v.(map[string]any); ok {
				walkDurations(ft, m, key+".", errs)
			}
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			for j, m := range tables(v) {
				walkDurations(ft.Elem(), m, fmt.Sprintf("%s[%d].", key, j), errs)
			}
		}
	}
}

// tables returns the tables of an array of tables as the decoder gives
// them: []map[string]any for [[name]], []any of maps for an inline array.
func tables(v any) []map[string]any {
	switch v := v.(type) {
	case []map[string]any:
		return v
	case []any:
		out := make([]map[string]any, len(v))
		for i, e := range v {
			out[i], _ = e.(map[string]any)
		}
		return out
	}
	return nil
}

// arrayKeyRE splits "hooks[1].timeout" into the array, the index and the
// key inside the table.
var arrayKeyRE = regexp.MustCompile(`^([A-Za-z0-9_-]+)\[(\d+)\]\.([A-Za-z0-9_-]+)$`)

// keyInArrayTable returns the line and the value's column of a key written
// in the n-th [[name]] table ("hooks[1].timeout": the line of timeout = ...
// under the second [[hooks]]), or 0, 0 when it cannot tell (keyPosition then gives the
// table's header line). A plain scan of the table's lines, which is enough
// for a key written as key = value in the table itself.
func keyInArrayTable(data, key string) (line, col int) {
	m := arrayKeyRE.FindStringSubmatch(key)
	if m == nil {
		return 0, 0
	}
	var n int
	fmt.Sscan(m[2], &n)
	header := arrayTableHeader(data, m[1], n)
	if header == 0 {
		return 0, 0
	}
	lines := strings.Split(data, "\n")
	for i := header; i < len(lines); i++ { // lines[header] is the line after the header
		l := lines[i]
		t := strings.TrimLeft(l, " \t")
		if strings.HasPrefix(t, "[") {
			return 0, 0 // the next table: not written in this one
		}
		for _, k := range []string{m[3], `"` + m[3] + `"`} {
			rest, ok := strings.CutPrefix(t, k)
			if !ok {
				continue
			}
			if v, ok := strings.CutPrefix(strings.TrimLeft(rest, " \t"), "="); ok {
				// The value's column, as keyPosition gives it.
				return i + 1, len(l) - len(strings.TrimLeft(v, " \t")) + 1
			}
		}
	}
	return 0, 0
}

package config

import (
	"errors"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// BurntSushi/toml records every key's position but exports it only in the
// ParseError of a value that failed to decode. keyPosition makes exactly the
// wanted key fail: it decodes the document into a type with a single path of
// struct fields down to that key, whose leaf is a toml.Unmarshaler that
// always errors, and reads the position from the resulting ParseError.

const probeMessage = "fmagent config: position probe"

type probeLeaf struct{}

func (*probeLeaf) UnmarshalTOML(any) error { return errors.New(probeMessage) }

var indexRE = regexp.MustCompile(`^(.*)\[(\d+)\]$`)

// keyPosition returns the line and column of a dotted key ("timing.misses",
// "plugins[1].name", "api.allow_users[0]") in data, or 0, 0 if the key is
// not in the file (a default, or a flag's value).
func keyPosition(data string, md *toml.MetaData, key string) (line, col int) {
	if key == "" {
		return 0, 0
	}
	var parts []string
	index := map[int]int{} // part → element index
	for _, p := range strings.Split(key, ".") {
		if m := indexRE.FindStringSubmatch(p); m != nil {
			i, _ := strconv.Atoi(m[2])
			index[len(parts)] = i
			p = m[1]
		}
		parts = append(parts, p)
	}
	// The n-th table of an array of tables ([[plugins]]) has no key of its
	// own: report its header line.
	if i, ok := index[0]; ok && len(parts) >= 1 && md.Type(parts[0]) == "ArrayHash" {
		if l := arrayTableHeader(data, parts[0], i); l > 0 {
			return l, 0
		}
	}
	// An index into a plain array (api.allow_users[0]) points at the key.
	typ := reflect.TypeOf(probeLeaf{})
	for i := len(parts) - 1; i >= 0; i-- {
		if t := md.Type(parts[:i+1]...); i < len(parts)-1 && (t == "ArrayHash" || t == "Array") {
			typ = reflect.SliceOf(typ)
		}
		typ = reflect.StructOf([]reflect.StructField{{
			Name: "F",
			Type: typ,
			Tag:  reflect.StructTag(`toml:"` + strings.ReplaceAll(parts[i], `"`, `\"`) + `"`),
		}})
	}
	v := reflect.New(typ)
	_, err := toml.Decode(data, v.Interface())
	var pe toml.ParseError
	if errors.As(err, &pe) && pe.Message == probeMessage {
		return pe.Position.Line, pe.Position.Col
	}
	return 0, 0
}

// arrayTableHeader returns the line of the n-th (0-based) [[name]] header.
func arrayTableHeader(data, name string, n int) int {
	inML := false // inside a multi-line string
	for i, l := range strings.Split(data, "\n") {
		t := strings.TrimSpace(l)
		if c := strings.Count(t, `"""`) + strings.Count(t, `'''`); c%2 == 1 {
			inML = !inML
			continue
		}
		if inML {
			continue
		}
		if strings.HasPrefix(t, "[[") {
			h := strings.TrimSpace(strings.SplitN(strings.TrimPrefix(t, "[["), "]]", 2)[0])
			if h == name {
				if n == 0 {
					return i + 1
				}
				n--
			}
		}
	}
	return 0
}

package config

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// fileConfig is what the TOML file decodes into: Config, with the networks
// as the tables [networks.a] and [networks.b].
type fileConfig struct {
	Config
	Networks struct {
		A Network `toml:"a"`
		B Network `toml:"b"`
	} `toml:"networks"`
}

// Load reads the TOML file at path on top of the defaults, resolves the
// derived fields and validates the result. Every error is an *Error (several
// are joined with errors.Join) naming the file, the line and the reason.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parse(path, string(data))
}

func parse(file, data string) (*Config, error) {
	// Syntax first, so that syntax errors are reported as such (with the
	// column) and not as a problem of the last key decoded.
	var syntax map[string]any
	smd, err := toml.Decode(data, &syntax)
	if err != nil {
		return nil, decodeError(file, err, false)
	}
	// Every problem the file has is reported, not only the first (fmagent
	// -check-config prints them all): bare durations, unknown keys, keys a
	// named profile fixes and Validate's findings are collected; Validate
	// says nothing more about a key refused before it (a bare "10" for a
	// duration is not also "shorter than 10ms"). Only a syntax error or a
	// value of the wrong type, which stop the decoder, end the search early.
	var errs []error
	reported := map[string]bool{}
	report := func(e *Error) {
		reported[e.Key] = true
		errs = append(errs, e)
	}

	// Durations must be strings with a unit: toml would take a bare integer
	// as nanoseconds, and "interval = 10" meaning 10 ns is a trap
	// (durations.go). Checked before the typed decode, which would stop at
	// the first float.
	for _, e := range bareDurations(syntax) {
		e.File = file
		e.Line, e.Col = keyInArrayTable(data, e.Key)
		if e.Line == 0 {
			e.Line, e.Col = keyPosition(data, &smd, e.Key)
		}
		report(e)
	}

	var fc fileConfig
	fc.Config = *base()
	fc.Networks.A, fc.Networks.B = fc.Config.Networks[0], fc.Config.Networks[1]
	md, err := toml.Decode(data, &fc)
	if err != nil {
		if len(errs) > 0 {
			return nil, errors.Join(errs...) // a float where a duration goes
		}
		return nil, decodeError(file, err, true)
	}
	at := func(e *Error) *Error {
		e.File = file
		e.Line, e.Col = keyPosition(data, &md, e.Key)
		return e
	}
	var unknown []string
	for _, k := range md.Undecoded() {
		ks := k.String()
		inside := false // in an unknown table already reported
		for _, u := range unknown {
			inside = inside || strings.HasPrefix(ks, u+".")
		}
		if !inside {
			unknown = append(unknown, ks)
			report(at(&Error{Key: ks, Reason: "unknown key" + knownKeys(k)}))
		}
	}
	c := &fc.Config
	c.Networks[0], c.Networks[1] = fc.Networks.A, fc.Networks.B
	c.Networks[0].Name, c.Networks[1].Name = "a", "b"

	// A named profile fixes interval and misses.
	if c.Timing.Profile != ProfileCustom {
		for _, k := range []string{"interval", "misses"} {
			if md.IsDefined("timing", k) {
				report(at(&Error{Key: "timing." + k, Reason: fmt.Sprintf("is set, but profile %q fixes interval and misses: set profile = %q to choose them", c.Timing.Profile, ProfileCustom)}))
			}
		}
		c.Timing.applyProfile()
	}
	if len(c.API.AllowUsers) == 0 {
		c.API.AllowUsers = nil
	}
	if len(c.API.Grants) == 0 {
		c.API.Grants = nil
	}
	if len(c.AcceptKeyFiles) == 0 {
		c.AcceptKeyFiles = nil
	}
	if len(c.API.AllowGroups) == 0 {
		c.API.AllowGroups = nil
	}
	for i := range c.Daemons {
		c.Daemons[i].ApplyDefaults()
	}
	c.auto = derived{
		stateDir: c.Paths.StateDir == "",
		socket:   c.Paths.Socket == "",
		shm:      c.Paths.Shm == "",
	}
	c.resolve()
	if err := c.Validate(); err != nil {
		for _, e := range Errors(locate(err, at)) {
			var ce *Error
			if errors.As(e, &ce) && ce.Key != "" && reported[ce.Key] {
				continue
			}
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		// In the file's order; what has no line (a default) last.
		slices.SortStableFunc(errs, func(a, b error) int {
			la, lb := errLine(a), errLine(b)
			return cmp.Compare(la-1, lb-1) // 0 - 1 wraps: last
		})
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// errLine is the line an *Error names, 0 if none.
func errLine(err error) uint {
	var ce *Error
	if errors.As(err, &ce) && ce.Line > 0 {
		return uint(ce.Line)
	}
	return 0
}

// Errors lists the errors joined in err (Load and Validate join one per
// refused setting), or err alone.
func Errors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// locate sets file and position on every *Error joined in err.
func locate(err error, at func(*Error) *Error) error {
	for _, e := range Errors(err) {
		var ce *Error
		if errors.As(e, &ce) {
			at(ce)
		}
	}
	return err
}

// badtypeRE matches BurntSushi/toml's type mismatch errors, which are plain
// errors with the line in the text rather than a ParseError.
var badtypeRE = regexp.MustCompile(`^toml: line (\d+) \(last key "((?:[^"\\]|\\.)*)"\): (.*)$`)

func decodeError(file string, err error, typed bool) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		e := &Error{File: file, Line: pe.Position.Line, Col: pe.Position.Col, Reason: pe.Message}
		if typed {
			e.Key = pe.LastKey
		}
		return e
	}
	if m := badtypeRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		key, uerr := strconv.Unquote(`"` + m[2] + `"`)
		if uerr != nil {
			key = m[2]
		}
		return &Error{File: file, Line: line, Key: key, Reason: m[3]}
	}
	return &Error{File: file, Reason: strings.TrimPrefix(err.Error(), "toml: ")}
}

// knownKeys lists the keys valid next to an unknown one.
func knownKeys(k toml.Key) string {
	t := reflect.TypeOf(fileConfig{})
	for _, part := range k[:len(k)-1] {
		f, ok := fieldByTag(t, part)
		if !ok {
			return ""
		}
		t = f.Type
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return ""
		}
	}
	var names []string
	collectTags(t, &names)
	sort.Strings(names)
	where := "at the top level"
	if len(k) > 1 {
		where = "in [" + toml.Key(k[:len(k)-1]).String() + "]"
	}
	return fmt.Sprintf(" (known keys %s: %s)", where, strings.Join(names, ", "))
}

func collectTags(t reflect.Type, names *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			collectTags(f.Type, names)
			continue
		}
		tag := f.Tag.Get("toml")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		*names = append(*names, tag)
	}
}

func fieldByTag(t reflect.Type, tag string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			if g, ok := fieldByTag(f.Type, tag); ok {
				return g, true
			}
			continue
		}
		if f.Tag.Get("toml") == tag {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

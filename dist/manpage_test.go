package dist

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/config"
)

// The man pages are the operator's reference (issue 11: install and run
// fmagent unaided). These tests tie them to the code, so that a key or a
// command added later cannot go undocumented and a default changed in the
// code cannot stay wrong on paper.

// schemaKey is one key of the configuration file.
type schemaKey struct {
	table string        // as written in the file: "" (top level), "[timing]", "[networks.a]", "[[daemons]]", "[[api.grants]]"
	name  string        // "interval"
	def   reflect.Value // the default; invalid when the code has none
}

func (k schemaKey) String() string {
	if k.table == "" {
		return k.name
	}
	return k.table + " " + k.name
}

// configPkg is the package whose structs are tables of the file.
var configPkg = reflect.TypeFor[config.Config]().PkgPath()

// elemDefaults are the defaults of one table of an array of tables: what a
// [[daemons]] or [[hooks]] table left out takes.
var elemDefaults = map[reflect.Type]func() any{
	reflect.TypeFor[config.Daemon](): func() any { var d config.Daemon; d.ApplyDefaults(); return d },
	reflect.TypeFor[config.Hook]():   func() any { return config.Hook{Timeout: config.DefaultHookTimeout} },
}

// schemaKeys enumerates every key of config.Config by its toml tags, with
// config.Default()'s values: structs of the config package are tables,
// slices of them arrays of tables, and the networks (tag "-") are the
// tables [networks.a] and [networks.b] with config.Network's fields.
func schemaKeys() []schemaKey {
	var keys []schemaKey
	var walk func(v reflect.Value, path string, array bool)
	walk = func(v reflect.Value, path string, array bool) {
		table := ""
		if path != "" {
			table = "[" + path + "]"
			if array {
				table = "[" + table + "]"
			}
		}
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if !f.IsExported() || tag == "" || tag == "-" {
				continue
			}
			sub := tag
			if path != "" {
				sub = path + "." + tag
			}
			ft := f.Type
			switch {
			case ft.Kind() == reflect.Struct && ft.PkgPath() == configPkg:
				walk(v.Field(i), sub, false)
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && ft.Elem().PkgPath() == configPkg:
				elem := reflect.New(ft.Elem()).Elem()
				if d, ok := elemDefaults[ft.Elem()]; ok {
					elem = reflect.ValueOf(d())
				}
				walk(elem, sub, true)
			default:
				keys = append(keys, schemaKey{table: table, name: tag, def: v.Field(i)})
			}
		}
	}
	def := config.Default()
	walk(reflect.ValueOf(def).Elem(), "", false)
	for _, n := range def.Networks {
		walk(reflect.ValueOf(n), "networks."+n.Name, false)
	}
	return keys
}

// manEntry is a key documented in a man page: a .TP paragraph's tag.
type manEntry struct {
	line       int
	def        string // the "(default)" after the key, unescaped; "" if none
	hasDef     bool
	reloadable bool
}

// manConfig is what fmagent.toml(5) documents: table → key → entry, and the
// tables whose heading says they are reloadable.
type manConfig struct {
	keys       map[string]map[string]manEntry
	reloadable []string // tables, as written: "[[plugins]]"
}

var (
	tableRE = regexp.MustCompile(`\[\[?[a-z_.]+\]\]?`)
	keyRE   = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// groffArgs splits a request's arguments as groff does: by spaces, with
// double-quoted arguments ("" inside one is a quote).
func groffArgs(s string) []string {
	var args []string
	for s = strings.TrimLeft(s, " \t"); s != ""; s = strings.TrimLeft(s, " \t") {
		if s[0] != '"' {
			end := strings.IndexAny(s, " \t")
			if end < 0 {
				end = len(s)
			}
			args = append(args, s[:end])
			s = s[end:]
			continue
		}
		var b strings.Builder
		i := 1
		for ; i < len(s); i++ {
			if s[i] == '"' {
				if i+1 < len(s) && s[i+1] == '"' {
					b.WriteByte('"')
					i++
					continue
				}
				i++
				break
			}
			b.WriteByte(s[i])
		}
		args = append(args, b.String())
		s = s[i:]
	}
	return args
}

var groffEscapes = strings.NewReplacer(`\(dq`, `"`, `\-`, `-`, `\(mu`, `×`, `\e`, `\`, `\(em`, `—`, `\(en`, `–`, `\&`, ``, `\ `, ` `)
var fontRE = regexp.MustCompile(`\\f(\[[^]]*\]|\(..|.)`)

// unescape turns groff text into what it prints (for the escapes these
// pages use).
func unescape(s string) string {
	return groffEscapes.Replace(fontRE.ReplaceAllString(s, ""))
}

// tagWords splits a .TP tag line into the words set in bold (keys,
// commands) and the others, in order.
func tagWords(line string) (bold, other []string, ok bool) {
	req, rest, _ := strings.Cut(line, " ")
	args := groffArgs(rest)
	switch req {
	case ".B":
		return args, nil, true
	case ".BR", ".BI":
		for i, a := range args {
			if i%2 == 0 {
				bold = append(bold, a)
			} else {
				other = append(other, a)
			}
		}
		return bold, other, true
	}
	return nil, nil, false
}

// parseManConfig reads fmagent.toml(5): the keys of each .SH (or .SS)
// section whose heading names tables ("[timing]", "[[daemons]]",
// "[networks.a] AND [networks.b]"), or TOP-LEVEL KEYS.
func parseManConfig(t *testing.T, path string) manConfig {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	m := manConfig{keys: map[string]map[string]manEntry{}}
	var tables []string // the current section's tables; nil: not a key section
	inKeys := false
	sc := bufio.NewScanner(f)
	for n, tagNext := 1, false; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ".SH ") || strings.HasPrefix(line, ".SS "):
			heading := unescape(strings.Join(groffArgs(line[4:]), " "))
			found := tableRE.FindAllString(heading, -1)
			switch {
			case len(found) > 0:
				tables, inKeys = found, true
				if strings.Contains(heading, "reloadable") {
					m.reloadable = append(m.reloadable, found...)
				}
			case heading == "TOP-LEVEL KEYS":
				tables, inKeys = []string{""}, true
			case strings.HasPrefix(line, ".SH "):
				tables, inKeys = nil, false
			}
			tagNext = false
		case strings.HasPrefix(line, ".TP"):
			tagNext = inKeys
		case tagNext:
			tagNext = false
			bold, other, ok := tagWords(line)
			if !ok {
				continue
			}
			e := manEntry{line: n, reloadable: strings.Contains(line, "reloadable")}
			for _, o := range other {
				o = strings.TrimSpace(unescape(o))
				if len(o) >= 2 && o[0] == '(' && o[len(o)-1] == ')' {
					e.def, e.hasDef = o[1:len(o)-1], true
					break
				}
			}
			for _, b := range bold {
				if !keyRE.MatchString(b) {
					continue
				}
				for _, tb := range tables {
					if m.keys[tb] == nil {
						m.keys[tb] = map[string]manEntry{}
					}
					m.keys[tb][b] = e
				}
			}
		}
	}
	require.NoError(t, sc.Err())
	return m
}

// exampleKeys returns the keys config/example.toml shows, by table, set or
// commented out ("# source = ..." counts: a commented line that is valid
// TOML on its own is read as if it were not commented).
func exampleKeys(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	keys := map[string][]string{}
	table := ""
	for _, line := range strings.Split(string(data), "\n") {
		s := strings.TrimSpace(line)
		if c, ok := strings.CutPrefix(s, "#"); ok {
			c = strings.TrimSpace(c)
			if _, err := toml.Decode(c, new(map[string]any)); err != nil || c == "" || strings.HasPrefix(c, "#") {
				continue
			}
			s = c
		}
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if strings.HasPrefix(s, "[") {
			table = strings.TrimSpace(strings.SplitN(s, "#", 2)[0])
			continue
		}
		k, _, ok := strings.Cut(s, "=")
		if !ok {
			continue
		}
		keys[table] = append(keys[table], strings.TrimSpace(k))
	}
	return keys
}

// checkedTables are the tables whose every key must print its default in
// the man page (the paths are derived from the host and other keys, and the
// networks differ from each other: their defaults are checked where they
// are printed as plain values).
var checkedTables = []string{"", "[timing]", "[realtime]", "[shm]", "[watchdog]", "[api]", "[metrics]"}

// TestManPageDocumentsEveryConfigKey: every key of config.Config is
// documented in fmagent.toml(5) under its table and shown in
// config/example.toml; the default the man page prints equals
// config.Default()'s.
func TestManPageDocumentsEveryConfigKey(t *testing.T) {
	keys := schemaKeys()
	require.Greater(t, len(keys), 60, "the walk found too few keys")
	man := parseManConfig(t, "man/fmagent.toml.5")
	example := exampleKeys(t, "../config/example.toml")
	for _, k := range keys {
		e, inMan := man.keys[k.table][k.name]
		if !inMan {
			t.Errorf("fmagent.toml.5: key %s is not documented (a .TP tagged %q under the section %q)", k, k.name, k.table)
		}
		if !slices.Contains(example[k.table], k.name) {
			t.Errorf("config/example.toml: key %s is not shown (set or commented out) under %q", k, k.table)
		}
		if !inMan {
			continue
		}
		required := slices.Contains(checkedTables, k.table)
		if !e.hasDef {
			if required {
				t.Errorf("fmagent.toml.5:%d: key %s prints no default; want (%s)", e.line, k, render(k.def))
			}
			continue
		}
		v, plain := parseTOMLValue(e.def)
		if !plain {
			if required {
				t.Errorf("fmagent.toml.5:%d: key %s: default (%s) is not a plain TOML value; want (%s)", e.line, k, e.def, render(k.def))
			}
			continue
		}
		if !k.def.IsValid() {
			t.Errorf("fmagent.toml.5:%d: key %s prints a default (%s) the code does not have", e.line, k, e.def)
			continue
		}
		if !sameValue(k.def, v) {
			t.Errorf("fmagent.toml.5:%d: key %s: default (%s), but the code's is (%s)", e.line, k, e.def, render(k.def))
		}
	}
	// Every documented key exists: a key renamed or removed in the code
	// must leave the page too.
	known := map[string]bool{}
	for _, k := range keys {
		known[k.String()] = true
	}
	for table, entries := range man.keys {
		for name, e := range entries {
			if k := (schemaKey{table: table, name: name}); !known[k.String()] {
				t.Errorf("fmagent.toml.5:%d: documents %s, which is not a configuration key", e.line, k)
			}
		}
	}
}

// TestManPageMarksReloadableKeys: what fmagent.toml(5) marks reloadable is
// exactly what the agent applies on SIGHUP (agent/reload.go's reloadable).
func TestManPageMarksReloadableKeys(t *testing.T) {
	want := agentReloadable(t)
	man := parseManConfig(t, "man/fmagent.toml.5")
	var got []string
	for table, entries := range man.keys {
		for name, e := range entries {
			if !e.reloadable {
				continue
			}
			got = append(got, strings.TrimLeft(strings.TrimRight(table, "]"), "[")+"."+name)
		}
	}
	for _, table := range man.reloadable {
		got = append(got, strings.TrimLeft(strings.TrimRight(table, "]"), "["))
	}
	for i := range got {
		got[i] = strings.TrimPrefix(got[i], ".")
	}
	sort.Strings(got)
	sort.Strings(want)
	assert.Equal(t, want, got, "keys marked reloadable in fmagent.toml.5 vs agent/reload.go's reloadable")
}

// agentReloadable reads the agent's list of keys SIGHUP applies from its
// source (the variable is unexported).
func agentReloadable(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../agent/reload.go", nil, 0)
	require.NoError(t, err)
	var keys []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || vs.Names[0].Name != "reloadable" || len(vs.Values) != 1 {
			return true
		}
		lit, ok := vs.Values[0].(*ast.CompositeLit)
		require.True(t, ok, "reloadable is not a literal")
		for _, e := range lit.Elts {
			b, ok := e.(*ast.BasicLit)
			require.True(t, ok && b.Kind == token.STRING, "reloadable holds a non-string")
			s, err := strconv.Unquote(b.Value)
			require.NoError(t, err)
			keys = append(keys, s)
		}
		return false
	})
	require.NotEmpty(t, keys, "agent/reload.go has no reloadable list")
	return keys
}

// parseTOMLValue reads a man page's default as a TOML value.
func parseTOMLValue(s string) (any, bool) {
	var m map[string]any
	if _, err := toml.Decode("v = "+s, &m); err != nil {
		return nil, false
	}
	return m["v"], true
}

var durationType = reflect.TypeFor[time.Duration]()

// sameValue reports whether the TOML value v (from the man page) is the
// Go value d. Durations compare as durations ("10m" is 10m0s).
func sameValue(d reflect.Value, v any) bool {
	switch {
	case d.Type() == durationType:
		s, ok := v.(string)
		if !ok {
			return false
		}
		p, err := time.ParseDuration(s)
		return err == nil && p == time.Duration(d.Int())
	case d.Type() == reflect.TypeFor[netip.Addr]():
		a := d.Interface().(netip.Addr)
		want := ""
		if a.IsValid() {
			want = a.String()
		}
		return v == want
	}
	switch d.Kind() {
	case reflect.String:
		return v == d.String()
	case reflect.Bool:
		return v == d.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v == d.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(int64)
		return ok && n >= 0 && uint64(n) == d.Uint()
	case reflect.Float32, reflect.Float64:
		switch n := v.(type) {
		case float64:
			return n == d.Float()
		case int64:
			return float64(n) == d.Float()
		}
	case reflect.Slice:
		l, ok := v.([]any)
		if !ok || len(l) != d.Len() {
			return false
		}
		for i := range l {
			if !sameValue(d.Index(i), l[i]) {
				return false
			}
		}
		return true
	case reflect.Map:
		m, ok := v.(map[string]any)
		return ok && len(m) == 0 && d.Len() == 0
	}
	return false
}

// render writes a Go default as the man page should print it.
func render(d reflect.Value) string {
	if !d.IsValid() {
		return "none"
	}
	if d.Type() == durationType {
		return strconv.Quote(shortDuration(time.Duration(d.Int())))
	}
	switch d.Kind() {
	case reflect.String:
		return strconv.Quote(d.String())
	case reflect.Slice:
		var parts []string
		for i := range d.Len() {
			parts = append(parts, render(d.Index(i)))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	if a, ok := d.Interface().(netip.Addr); ok {
		return strconv.Quote(a.String())
	}
	return fmt.Sprint(d.Interface())
}

// shortDuration is "10m" for 10m0s, "1h" for 1h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// fmctlCommands lists fmctl's commands and aliases as "fmctl help" prints
// them (a freshly built fmctl: the command table is in package main).
func fmctlCommands(t *testing.T) []string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fmctl")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/fmctl").CombinedOutput()
	require.NoError(t, err, "%s", out)
	out, err = exec.Command(bin, "help").Output()
	require.NoError(t, err)
	_, list, ok := strings.Cut(string(out), "\nCommands:\n")
	require.True(t, ok, "fmctl help prints no Commands: section:\n%s", out)
	list, _, _ = strings.Cut(list, "\n\n")
	var names []string
	for _, line := range strings.Split(list, "\n") {
		// "  entities, ls    list entities, sorted by name"
		line = strings.TrimSpace(line)
		head, _, _ := strings.Cut(line, "  ")
		head, _, _ = strings.Cut(head, " [") // "help [COMMAND]"
		for _, n := range strings.Split(head, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
	}
	require.Greater(t, len(names), 15, "too few commands read from fmctl help:\n%s", out)
	return names
}

// manCommands lists the commands fmctl(8)'s COMMANDS section documents:
// the bold words of its .TP tags.
func manCommands(t *testing.T, path string) map[string]int {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	cmds := map[string]int{}
	in, tagNext := false, false
	for i, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, ".SH "):
			in = strings.TrimSpace(line[4:]) == "COMMANDS"
		case strings.HasPrefix(line, ".TP"):
			tagNext = in
		case tagNext:
			tagNext = false
			bold, _, ok := tagWords(line)
			if !ok {
				continue
			}
			for _, b := range bold {
				if keyRE.MatchString(b) {
					cmds[b] = i + 1
				}
			}
		}
	}
	return cmds
}

// TestManPageDocumentsEveryFmctlCommand: every fmctl command and alias has
// a paragraph in fmctl(8)'s COMMANDS, and every command documented there
// exists.
func TestManPageDocumentsEveryFmctlCommand(t *testing.T) {
	want := fmctlCommands(t)
	got := manCommands(t, "man/fmctl.8")
	for _, c := range want {
		if _, ok := got[c]; !ok {
			t.Errorf("fmctl.8: command %q (in fmctl help) is not documented under COMMANDS", c)
		}
	}
	for c, line := range got {
		if !slices.Contains(want, c) {
			t.Errorf("fmctl.8:%d: documents command %q, which fmctl help does not list", line, c)
		}
	}
}

// TestManPagesRenderCleanly: groff finds nothing to warn about in any page.
func TestManPagesRenderCleanly(t *testing.T) {
	if _, err := exec.LookPath("groff"); err != nil {
		t.Fatal("groff is needed to check the man pages (apt-get install groff-base)")
	}
	pages, err := filepath.Glob("man/*.[0-9]")
	require.NoError(t, err)
	require.NotEmpty(t, pages)
	for _, p := range pages {
		out, err := exec.Command("groff", "-man", "-ww", "-z", p).CombinedOutput()
		assert.NoError(t, err, "%s", p)
		assert.Empty(t, string(out), "groff -man -ww -z %s", p)
	}
}

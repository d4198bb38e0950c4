package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// durationKeys lists every duration-typed key of the file, found from
// Config's type: "timing.interval", "hooks[].timeout".
func durationKeys(t reflect.Type, prefix string, out *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			durationKeys(f.Type, prefix, out)
			continue
		}
		tag := f.Tag.Get("toml")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		switch ft := f.Type; {
		case ft == durationType:
			*out = append(*out, prefix+tag)
		case ft.Kind() == reflect.Struct:
			durationKeys(ft, prefix+tag+".", out)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			durationKeys(ft.Elem(), prefix+tag+"[].", out)
		}
	}
}

// A bare number for a duration would be taken as nanoseconds ("[[hooks]]
// timeout = 10" killed every hook after 10 ns). Every duration-typed key
// refuses one with the file, the key's own line and column, and the reason;
// the keys are found from Config's type, so a new one is covered too.
func TestEveryDurationKeyRefusesABareNumber(t *testing.T) {
	var keys []string
	durationKeys(reflect.TypeOf(fileConfig{}), "", &keys)
	for _, k := range []string{"timing.interval", "timing.stale_timeout", "api.idle_timeout", "api.frame_timeout",
		"watchdog.timeout", "watchdog.fence_timeout", "hooks[].timeout",
		"daemons[].backoff", "daemons[].backoff_max", "daemons[].window"} {
		require.Contains(t, keys, k)
	}
	for _, k := range keys {
		for _, value := range []string{"10", "2.5", "-3"} {
			t.Run(k+"="+value, func(t *testing.T) {
				var body, want string
				var line int
				if table, leaf, ok := strings.Cut(k, "[]."); ok {
					// The second table of the array, after one that is right.
					body = fmt.Sprintf("[[%s]]\n%s = \"1s\"\n\n[[%s]]\n%s = %s\n", table, leaf, table, leaf, value)
					line, want = 5, fmt.Sprintf("%s[1].%s", table, leaf)
				} else if i := strings.LastIndex(k, "."); i >= 0 {
					body = fmt.Sprintf("node_id = 1\n[%s]\n%s = %s\n", k[:i], k[i+1:], value)
					line, want = 3, k
				} else {
					body = fmt.Sprintf("%s = %s\n", k, value)
					line, want = 1, k
				}
				p := writeConfig(t, body)
				_, err := Load(p)
				require.Error(t, err, "%s = %s must be refused", k, value)
				// The tables of the array may have other problems (a
				// daemon without a name): find the bare duration's.
				var ce *Error
				for _, e := range Errors(err) {
					var c *Error
					if errors.As(e, &c) && c.Key == want && strings.Contains(c.Reason, "duration string") {
						ce = c
					}
				}
				require.NotNil(t, ce, "no error for %s in %v", want, err)
				assert.Equal(t, p, ce.File)
				assert.Equal(t, line, ce.Line)
				col := len(k[strings.LastIndexAny(k, ".")+1:]) + 4 // the value's column
				assert.Equal(t, col, ce.Col)
				assert.Equal(t, fmt.Sprintf("%s:%d:%d: %s = %s: must be a duration string with a unit, like \"10ms\" or \"10s\" (a bare number would be taken as nanoseconds)", p, line, col, want, value), ce.Error())
			})
		}
	}
}

// Every bare duration in a file is reported, each at its own line, not only
// the first.
func TestBareDurationsAllReported(t *testing.T) {
	p := writeConfig(t, `[timing]
stale_timeout = 10
[watchdog]
timeout = 30
[[hooks]]
command = "/bin/true"
  timeout = 10
[[daemons]]
name = "a"
command = "/bin/true"
backoff = 5
window = "1m"
`)
	_, err := Load(p)
	require.Error(t, err)
	var got []string
	for _, e := range Errors(err) {
		var ce *Error
		require.True(t, errors.As(e, &ce))
		got = append(got, fmt.Sprintf("%d:%d %s", ce.Line, ce.Col, ce.Key))
	}
	assert.Equal(t, []string{"2:17 timing.stale_timeout", "4:11 watchdog.timeout", "7:13 hooks[0].timeout", "11:11 daemons[0].backoff"}, got)
}

// A duration string is still taken, in a table of an array too.
func TestDurationStringsAccepted(t *testing.T) {
	c, err := Load(writeConfig(t, "[[hooks]]\ncommand = \"/bin/true\"\ntimeout = \"10s\"\n[[daemons]]\nname = \"a\"\ncommand = \"/bin/true\"\nbackoff = \"50ms\"\n"))
	require.NoError(t, err)
	assert.Equal(t, "10s", c.Hooks[0].Timeout.String())
	assert.Equal(t, "50ms", c.Daemons[0].Backoff.String())
}

package config

import (
	"encoding"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Override sets one field from its dotted TOML key and a string value, as a
// command-line flag gives it: "node_id" "3", "networks.a.interface" "eth1",
// "timing.profile" "fast", "api.allow_users" "alice,bob" (comma-separated),
// "paths.socket" "" (back to the derived default). Derived fields follow:
// changing paths.state_dir moves a socket that was not set explicitly, and
// timing.profile applies its interval and misses. The result is not
// validated; call Validate (Flags.Apply does).
func (c *Config) Override(key, value string) error {
	if key == "plugins" || strings.HasPrefix(key, "plugins.") {
		return &Error{Key: key, Reason: "the plugin chain can only be set in the file"}
	}
	f, err := c.field(key)
	if err != nil {
		return err
	}
	if err := setString(f, value); err != nil {
		return &Error{Key: key, Value: strconv.Quote(value), Reason: err.Error()}
	}
	switch key {
	case "paths.state_dir":
		c.auto.stateDir = value == ""
	case "paths.socket":
		c.auto.socket = value == ""
	case "paths.shm":
		c.auto.shm = value == ""
	case "timing.profile":
		c.Timing.applyProfile()
	case "timing.interval", "timing.misses":
		c.Timing.Profile = ProfileCustom
	}
	c.resolve()
	return nil
}

// field finds the field of a dotted key.
func (c *Config) field(key string) (reflect.Value, error) {
	parts := strings.Split(key, ".")
	v := reflect.ValueOf(c).Elem()
	if parts[0] == "networks" {
		if len(parts) != 3 || (parts[1] != "a" && parts[1] != "b") {
			return reflect.Value{}, &Error{Key: key, Reason: "unknown key (networks are networks.a.* and networks.b.*)"}
		}
		v = v.FieldByName("Networks").Index(int(parts[1][0] - 'a'))
		parts = parts[2:]
	}
	for _, p := range parts {
		if v.Kind() != reflect.Struct {
			return reflect.Value{}, &Error{Key: key, Reason: "unknown key"}
		}
		sf, ok := fieldByTag(v.Type(), p)
		if !ok {
			return reflect.Value{}, &Error{Key: key, Reason: "unknown key"}
		}
		v = v.FieldByIndex(sf.Index)
	}
	if v.Kind() == reflect.Struct && v.Type() != reflect.TypeOf(netip.Addr{}) {
		return reflect.Value{}, &Error{Key: key, Reason: "is a table, not a value"}
	}
	return v, nil
}

var durationType = reflect.TypeOf(time.Duration(0))

func setString(v reflect.Value, s string) error {
	if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(s))
	}
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("not a duration with a unit, like \"10ms\"")
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("not a boolean (true or false)")
		}
		v.SetBool(b)
	case v.CanUint():
		n, err := strconv.ParseUint(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("not an integer in 0..%d", uint64(1)<<v.Type().Bits()-1)
		}
		v.SetUint(n)
	case v.CanInt():
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("not an integer")
		}
		v.SetInt(n)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		var list []string
		for _, e := range strings.Split(s, ",") {
			if e = strings.TrimSpace(e); e != "" {
				list = append(list, e)
			}
		}
		v.Set(reflect.ValueOf(list))
	default:
		return fmt.Errorf("cannot be set from the command line")
	}
	return nil
}

// flagKeys maps fmagent's command-line flags to config keys.
var flagKeys = []struct{ flag, key, usage string }{
	{"node", "node_id", "node ID (1..2^32-1)"},
	{"priority", "priority", "election priority (0..255, higher wins)"},
	{"iface-a", "networks.a.interface", "network a's interface"},
	{"iface-b", "networks.b.interface", "network b's interface"},
	{"profile", "timing.profile", `timing profile, named for its detection bound: "10ms" (2ms × 5), "20ms" (4ms × 5, the default), "50ms" (10ms × 5) or "custom"`},
	{"socket", "paths.socket", "API unix socket path"},
	{"shm", "paths.shm", "shared-memory file name under /dev/shm"},
	{"state-dir", "paths.state_dir", "state directory"},
	{"allow-alone", "allow_alone", "allow forming a cluster alone without a quorum of the persisted membership"},
}

// Flags are the command-line flags that override the config file.
type Flags struct {
	// ConfigPath is -config: the file to load ("" for the built-in defaults).
	ConfigPath string
	values     []*overrideFlag
}

type overrideFlag struct {
	name, key string
	value     string
	set       bool
	isBool    bool
}

func (f *overrideFlag) String() string   { return f.value }
func (f *overrideFlag) IsBoolFlag() bool { return f.isBool }
func (f *overrideFlag) Set(s string) error {
	f.value, f.set = s, true
	return nil
}

// RegisterFlags defines -config and the override flags (-node, -priority,
// -iface-a, -iface-b, -profile, -socket, -shm, -state-dir, -allow-alone) on
// fs. After fs.Parse, Flags.Load loads the file and applies the flags that
// were given; a flag that was not given leaves the file's value alone.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	fl := &Flags{}
	fs.StringVar(&fl.ConfigPath, "config", "", "config file (TOML); none: built-in defaults")
	for _, k := range flagKeys {
		v := &overrideFlag{name: k.flag, key: k.key, isBool: k.key == "allow_alone"}
		fl.values = append(fl.values, v)
		fs.Var(v, k.flag, k.usage+" (overrides "+k.key+")")
	}
	return fl
}

// Load loads ConfigPath (or the defaults) and applies the flags.
func (fl *Flags) Load() (*Config, error) {
	var c *Config
	if fl.ConfigPath == "" {
		c = Default()
	} else {
		var err error
		if c, err = Load(fl.ConfigPath); err != nil {
			return nil, err
		}
	}
	if err := fl.Apply(c); err != nil {
		return nil, err
	}
	return c, nil
}

// CheckHost runs c.CheckHost (interfaces, key files) and names, in its
// errors, the file and line of the keys they are about.
func (fl *Flags) CheckHost(c *Config) error {
	err := c.CheckHost()
	if err != nil && fl.ConfigPath != "" {
		positionIn(fl.ConfigPath, err)
	}
	return err
}

// Apply applies the flags that were given to c and validates the result;
// errors name the flag.
func (fl *Flags) Apply(c *Config) error {
	for _, v := range fl.values {
		if !v.set {
			continue
		}
		if err := c.Override(v.key, v.value); err != nil {
			var ce *Error
			if errors.As(err, &ce) {
				ce.Flag = v.name + "=" + v.value
			}
			return err
		}
	}
	if err := c.Validate(); err != nil {
		// Name the flag where one set the refused key.
		var list []error
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			list = j.Unwrap()
		}
		for _, e := range list {
			var ce *Error
			if !errors.As(e, &ce) {
				continue
			}
			for _, v := range fl.values {
				if v.set && v.key == ce.Key {
					ce.Flag = v.name + "=" + v.value
				}
			}
		}
		return err
	}
	return nil
}

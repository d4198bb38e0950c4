package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fmagent.toml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	return p
}

func TestDefault(t *testing.T) {
	c := Default()
	require.NoError(t, c.Validate())
	assert.Equal(t, uint32(1), c.NodeID)
	assert.Equal(t, uint32(1), c.ClusterID)
	assert.Equal(t, uint8(100), c.Priority)
	assert.True(t, c.Eligible)
	assert.Equal(t, "a", c.Networks[0].Name)
	assert.Equal(t, "b", c.Networks[1].Name)
	assert.Equal(t, "lo", c.Networks[0].Interface)
	assert.Equal(t, "239.192.77.1", c.Networks[0].Group.String())
	assert.Equal(t, "239.192.77.2", c.Networks[1].Group.String())
	assert.Equal(t, 7410, c.Networks[0].Port)
	assert.Equal(t, "20ms", c.Timing.Profile)
	assert.Equal(t, 4*time.Millisecond, c.Timing.Interval)
	assert.Equal(t, 5, c.Timing.Misses)
	assert.Equal(t, 20*time.Millisecond, c.Timing.Detection())
	assert.Equal(t, 10*time.Second, c.Timing.StaleTimeout)
	var names []string
	for _, p := range c.Plugins {
		names = append(names, p.Name)
	}
	assert.Equal(t, []string{"heartbeat", "process", "threshold", "blame", "passthrough"}, names)
	assert.Empty(t, c.KeyFile)
	assert.Equal(t, DefaultStateDir(), c.Paths.StateDir)
	if os.Geteuid() == 0 {
		// Where fmctl and the client library look first (issue 11: they
		// disagreed), outside the 0700 state directory.
		assert.Equal(t, "/var/lib/fmagent", c.Paths.StateDir)
		assert.Equal(t, "/run/fmagent/fmagent.sock", c.Paths.Socket)
	} else {
		assert.Equal(t, filepath.Join(c.Paths.StateDir, "fmagent.sock"), c.Paths.Socket)
	}
	assert.Equal(t, "fmagent-1-1", c.Paths.Shm)
	assert.Equal(t, "/dev/shm/fmagent-1-1", c.ShmPath())
	assert.Equal(t, "127.0.0.1:9464", c.Metrics.Listen)
	assert.Empty(t, c.Watchdog.Device)
	assert.Equal(t, FenceAuto, c.Watchdog.SelfFence)
	assert.False(t, c.AllowAlone)
	assert.Equal(t, 8, c.MaxAlarms)
}

func TestDefaultStateDir(t *testing.T) {
	if os.Geteuid() == 0 {
		assert.Equal(t, "/var/lib/fmagent", DefaultStateDir())
		return
	}
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	assert.Equal(t, "/run/user/1000/fmagent", DefaultStateDir())
	t.Setenv("XDG_RUNTIME_DIR", "")
	assert.Equal(t, fmt.Sprintf("/tmp/fmagent-%d", os.Geteuid()), DefaultStateDir())
}

// The example documents every key with its default.
func TestExampleIsTheDefault(t *testing.T) {
	c, err := Load("example.toml")
	require.NoError(t, err)
	assert.Equal(t, Default(), c)
}

// Every key of the schema appears in example.toml (set or commented out).
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("example.toml")
	require.NoError(t, err)
	var keys []string
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Anonymous {
				walk(f.Type)
				continue
			}
			tag := f.Tag.Get("toml")
			if tag == "" || tag == "-" {
				continue
			}
			ft := f.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && (ft.Name() == "" || ft.PkgPath() == "github.com/fmagent/fmagent/config") {
				walk(ft)
				continue
			}
			keys = append(keys, tag)
		}
	}
	walk(reflect.TypeOf(fileConfig{}))
	require.GreaterOrEqual(t, len(keys), 20)
	for _, k := range keys {
		re := regexp.MustCompile(`(?m)^#?\s*` + regexp.QuoteMeta(k) + `\s*=`)
		assert.Regexp(t, re, string(data), "key %q is not documented in example.toml", k)
	}
	for _, table := range []string{"[networks.a]", "[networks.b]", "[timing]", "[paths]", "[api]", "[metrics]", "[watchdog]", "[[plugins]]"} {
		assert.Contains(t, string(data), table)
	}
}

func TestLoadOverridesDefaults(t *testing.T) {
	p := writeConfig(t, `
node_id = 7
cluster_id = 42
priority = 200
eligible = false
key_file = "/etc/fmagent/key"
allow_alone = true

[networks.a]
interface = "eth1"
group = "239.1.1.1"
source = "10.1.0.7"

[networks.b]
interface = "eth2"
group = "239.1.1.2"
port = 7500
loopback = false

[timing]
profile = "custom"
interval = "2ms"
misses = 4
stale_timeout = "5s"

[paths]
state_dir = "/srv/fm"

[api]
allow_users = ["alice", "1001"]
allow_groups = ["fmops"]

[metrics]
listen = "[::1]:9999"

[watchdog]
device = "/dev/watchdog1"
self_fence = false

[[plugins]]
name = "threshold"
args = { window = "10s", count = "3" }

[[plugins]]
name = "passthrough"
`)
	c, err := Load(p)
	require.NoError(t, err)
	assert.Equal(t, uint32(7), c.NodeID)
	assert.Equal(t, uint32(42), c.ClusterID)
	assert.Equal(t, uint8(200), c.Priority)
	assert.False(t, c.Eligible)
	assert.True(t, c.AllowAlone)
	assert.Equal(t, "eth1", c.Networks[0].Interface)
	assert.Equal(t, "10.1.0.7", c.Networks[0].Source.String())
	assert.Equal(t, 7410, c.Networks[0].Port, "unset keys keep their default")
	assert.True(t, c.Networks[0].Loopback)
	assert.Equal(t, "eth2", c.Networks[1].Interface)
	assert.Equal(t, 7500, c.Networks[1].Port)
	assert.False(t, c.Networks[1].Loopback)
	assert.False(t, c.Networks[1].Source.IsValid())
	assert.Equal(t, 2*time.Millisecond, c.Timing.Interval)
	assert.Equal(t, 4, c.Timing.Misses)
	assert.Equal(t, 5*time.Second, c.Timing.StaleTimeout)
	assert.Equal(t, "/srv/fm", c.Paths.StateDir)
	assert.Equal(t, "/srv/fm/fmagent.sock", c.Paths.Socket, "socket follows state_dir")
	assert.Equal(t, "fmagent-42-7", c.Paths.Shm, "shm follows cluster and node")
	assert.Equal(t, []string{"alice", "1001"}, c.API.AllowUsers)
	assert.Equal(t, []string{"fmops"}, c.API.AllowGroups)
	assert.Equal(t, "[::1]:9999", c.Metrics.Listen)
	assert.Equal(t, "/dev/watchdog1", c.Watchdog.Device)
	assert.Equal(t, FenceOff, c.Watchdog.SelfFence)
	require.Len(t, c.Plugins, 2, "a [[plugins]] list replaces the default chain")
	assert.Equal(t, Plugin{Name: "threshold", Args: map[string]string{"window": "10s", "count": "3"}}, c.Plugins[0])
	assert.Equal(t, "passthrough", c.Plugins[1].Name)
}

func TestFastProfile(t *testing.T) {
	c, err := Load(writeConfig(t, "[timing]\nprofile = \"fast\"\n"))
	require.NoError(t, err)
	assert.Equal(t, 2*time.Millisecond, c.Timing.Interval)
	assert.Equal(t, 5, c.Timing.Misses)
	for _, p := range Profiles {
		c, err := Load(writeConfig(t, "[timing]\nprofile = \""+p.Name+"\"\n"))
		require.NoError(t, err, p.Name)
		assert.Equal(t, p.Name, c.Timing.Detection().String(), "a profile is named for its bound")
	}
	_, err = Load(writeConfig(t, "[realtime]\npriority = 99\n"))
	require.ErrorContains(t, err, "realtime.priority = 99: must be in 1..98")
	p := writeConfig(t, "[realtime]\npriority = 0\n")
	_, err = Load(p)
	require.ErrorContains(t, err, p+":2:12: realtime.priority = 0: must be in 1..98")
	// The other threads are not at SCHED_FIFO (transport.SetProcessNice),
	// so the lowest real-time priority is the loop's to take.
	_, err = Load(writeConfig(t, "[realtime]\npriority = 1\n"))
	require.NoError(t, err)
}

func TestRealtimeCPUs(t *testing.T) {
	c, err := Load(writeConfig(t, "[realtime]\ncpus = [1, 0]\n"))
	require.NoError(t, err)
	assert.Equal(t, []int{1, 0}, c.Realtime.CPUs)
	c, err = Load(writeConfig(t, "node_id = 1\n"))
	require.NoError(t, err)
	assert.Empty(t, c.Realtime.CPUs, "not pinned unless asked")
	p := writeConfig(t, "[realtime]\ncpus = [2, -1]\n")
	_, err = Load(p)
	require.ErrorContains(t, err, p+":2:")
	require.ErrorContains(t, err, "CPU -1: must be in 0..1023")
	_, err = Load(writeConfig(t, "[realtime]\ncpus = [3, 3]\n"))
	require.ErrorContains(t, err, "CPU 3 is listed twice")
}

// Each refusal names the file, the right line and the reason.
func TestRefusals(t *testing.T) {
	cases := []struct {
		name   string
		body   string
		line   int
		reason string // substring of the message after "file:line"
	}{
		{"node id 0", "priority = 5\nnode_id = 0\n", 2, `node_id = 0: must be at least 1`},
		{"cluster id 0", "\n\ncluster_id = 0\n", 3, `cluster_id = 0: must be at least 1`},
		{"priority too big", "node_id = 2\npriority = 300\n", 2, `priority`},
		{"priority negative", "priority = -1\n", 1, `priority`},
		{"misses < 3", "[timing]\nprofile = \"custom\"\ninterval = \"10ms\"\nmisses = 1\n", 4,
			`timing.misses = 1: must be at least 3 (a VM stall of ~20 ms must not read as a failure; DESIGN §8)`},
		{"interval 0", "[timing]\nprofile = \"custom\"\ninterval = \"0s\"\n", 3, `timing.interval = "0s": must be positive`},
		{"interval negative", "[timing]\nprofile = \"custom\"\n\ninterval = \"-5ms\"\n", 4, `timing.interval = "-5ms": must be positive`},
		{"interval too short", "[timing]\nprofile = \"custom\"\ninterval = \"100us\"\n", 3, `must be at least 1ms`},
		{"bad duration", "[timing]\nstale_timeout = \"ten seconds\"\n", 2, `ten seconds`},
		{"duration without unit", "[timing]\nstale_timeout = 10\n", 2, `timing.stale_timeout = 10: must be a duration string with a unit`},
		{"interval with a named profile", "[timing]\nprofile = \"fast\"\nmisses = 4\n", 3, `timing.misses: is set, but profile "fast" fixes interval and misses`},
		{"unknown profile", "\n[timing]\nprofile = \"turbo\"\n", 3, `timing.profile = "turbo": must be "10ms"`},
		{"stale too short", "[timing]\nstale_timeout = \"20ms\"\n", 2, `timing.stale_timeout = "20ms": must be longer than the detection time, interval × misses = 20ms`},
		{"group not multicast", "[networks.a]\ninterface = \"eth1\"\ngroup = \"10.0.0.1\"\n", 3, `networks.a.group = "10.0.0.1": must be an IPv4 multicast address`},
		{"group link-local block", "[networks.b]\ngroup = \"224.0.0.5\"\n", 2, `networks.b.group = "224.0.0.5": is in 224.0.0.0/24`},
		{"group not an address", "[networks.a]\ngroup = \"not-an-ip\"\n", 2, `not-an-ip`},
		{"duplicate groups", "[networks.a]\ngroup = \"239.5.5.5\"\n[networks.b]\ngroup = \"239.5.5.5\"\n", 4, `networks.b.group = "239.5.5.5": is also networks.a's group`},
		{"port range", "[networks.a]\nport = 70000\n", 2, `networks.a.port = 70000: must be in 1..65535`},
		{"empty interface", "[networks.b]\n\ninterface = \"\"\n", 3, `networks.b.interface = "": must name`},
		{"unknown top key", "node_id = 3\nnodeid = 4\n", 2, `nodeid: unknown key (known keys at the top level: `},
		{"unknown key in table", "[timing]\nprofile = \"default\"\nmissess = 4\n", 3, `timing.missess: unknown key (known keys in [timing]: interval, misses, profile, stale_timeout)`},
		{"unknown table", "node_id = 1\n[timnig]\nmisses = 4\n", 2, `timnig: unknown key`},
		{"unknown network", "[networks.c]\ninterface = \"eth3\"\n", 1, `networks.c: unknown key`},
		{"wrong type int", "node_id = \"three\"\n", 1, `node_id`},
		{"wrong type bool", "\neligible = \"yes\"\n", 2, `eligible`},
		{"wrong type list", "[api]\nallow_users = \"alice\"\n", 2, `api.allow_users`},
		{"bad user", "[api]\nallow_users = [\"al ice\"]\n", 2, `api.allow_users[0] = "al ice": must be a user name`},
		{"metrics not loopback", "[metrics]\nlisten = \"0.0.0.0:9464\"\n", 2, `metrics.listen = "0.0.0.0:9464": must be a loopback address`},
		{"metrics bad", "[metrics]\nlisten = \"9464\"\n", 2, `metrics.listen = "9464": must be host:port`},
		{"metrics remote needs the opt-in", "[metrics]\nlisten = \":9464\"\n", 2, `metrics.listen = ":9464": must be a loopback address (127.0.0.1, [::1] or localhost): the metrics endpoint has no authentication; to serve another host, set metrics.allow_remote = true`},
		{"log level", "\nlog_level = \"loud\"\n", 2, `log_level = "loud": must be "debug", "info", "warn" or "error"`},
		{"relative state dir", "[paths]\nstate_dir = \"var/fm\"\n", 2, `paths.state_dir = "var/fm": must be an absolute path`},
		{"relative trace dir", "[realtime]\ntrace_dir = \"traces\"\n", 2, `realtime.trace_dir = "traces": must be an absolute path`},
		{"shm with slash", "[paths]\nshm = \"a/b\"\n", 2, `paths.shm = "a/b": must be a file name`},
		{"relative key file", "key_file = \"key\"\n", 1, `key_file = "key": must be an absolute path`},
		{"watchdog relative", "[watchdog]\ndevice = \"watchdog\"\n", 2, `watchdog.device = "watchdog": must be an absolute path, "auto"`},
		{"max alarms", "max_alarms = 0\n", 1, `max_alarms = 0: must be in 1..8 (what a shared-memory entity slot holds)`},
		{"max alarms over the slot", "max_alarms = 16\n", 1, `max_alarms = 16: must be in 1..8 (what a shared-memory entity slot holds)`},
		{"shm entities", "[shm]\nentities = 0\n", 2, `shm.entities = 0: must be in 1..16777216`},
		{"shm events", "[shm]\nevents = 1000\n", 2, `shm.events = 1000: must be a power of two in 1..16777216`},
		{"empty plugin name", "[[plugins]]\nname = \"heartbeat\"\n\n[[plugins]]\nname = \"\"\n", 4, `plugins[1].name = "": must name a plugin`},
		{"unknown plugin key", "[[plugins]]\nname = \"heartbeat\"\nnmae = \"x\"\n", 3, `plugins.nmae: unknown key (known keys in [plugins]: args, name)`},
		{"plugin args type", "[[plugins]]\nname = \"t\"\nargs = { window = 10 }\n", 3, `plugins.args`},
		{"syntax", "node_id = 1\npriority = = 3\n", 2, `expected value but found '='`},
		{"syntax string", "node_id = 1\n\n[timing]\nprofile = \"fast\n", 4, `strings cannot contain newlines`},
		{"duplicate key", "node_id = 1\nnode_id = 2\n", 2, `node_id`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := writeConfig(t, tc.body)
			_, err := Load(p)
			require.Error(t, err)
			msg := err.Error()
			prefix := fmt.Sprintf("%s:%d:", p, tc.line)
			assert.True(t, strings.HasPrefix(msg, prefix), "message %q must start with %q", msg, prefix)
			assert.Contains(t, msg, tc.reason)
			var ce *Error
			require.True(t, errors.As(err, &ce), "an *Error")
			assert.Equal(t, p, ce.File)
			assert.Equal(t, tc.line, ce.Line)
		})
	}
}

// A syntax error also has the column.
func TestSyntaxErrorColumn(t *testing.T) {
	p := writeConfig(t, "node_id = 1\npriority = = 3\n")
	_, err := Load(p)
	var ce *Error
	require.True(t, errors.As(err, &ce))
	assert.Equal(t, 2, ce.Line)
	assert.Equal(t, 12, ce.Col)
	assert.Equal(t, p+":2:12: expected value but found '=' instead", err.Error())
}

// Several semantic errors are all reported, each with its own line.
func TestSeveralErrors(t *testing.T) {
	p := writeConfig(t, "node_id = 0\n[timing]\nprofile = \"custom\"\nmisses = 2\n")
	_, err := Load(p)
	require.Error(t, err)
	assert.Contains(t, err.Error(), p+":1:11: node_id = 0")
	assert.Contains(t, err.Error(), p+":4:10: timing.misses = 2")
}

func TestMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nope.toml")
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestOverride(t *testing.T) {
	c := Default()
	require.NoError(t, c.Override("node_id", "9"))
	assert.Equal(t, uint32(9), c.NodeID)
	assert.Equal(t, "fmagent-1-9", c.Paths.Shm, "shm follows the node ID")
	require.NoError(t, c.Override("paths.state_dir", "/srv/x"))
	assert.Equal(t, "/srv/x/fmagent.sock", c.Paths.Socket, "socket follows state_dir")
	require.NoError(t, c.Override("paths.socket", "/run/fm.sock"))
	require.NoError(t, c.Override("paths.state_dir", "/srv/y"))
	assert.Equal(t, "/run/fm.sock", c.Paths.Socket, "an explicit socket stays")
	require.NoError(t, c.Override("paths.socket", ""))
	assert.Equal(t, "/srv/y/fmagent.sock", c.Paths.Socket, "empty: back to the default")
	require.NoError(t, c.Override("networks.b.interface", "eth2"))
	assert.Equal(t, "eth2", c.Networks[1].Interface)
	require.NoError(t, c.Override("networks.a.group", "239.9.9.9"))
	assert.Equal(t, "239.9.9.9", c.Networks[0].Group.String())
	require.NoError(t, c.Override("timing.profile", "fast"))
	assert.Equal(t, 2*time.Millisecond, c.Timing.Interval)
	require.NoError(t, c.Override("timing.interval", "4ms"))
	assert.Equal(t, ProfileCustom, c.Timing.Profile)
	assert.Equal(t, 4*time.Millisecond, c.Timing.Interval)
	require.NoError(t, c.Override("api.allow_users", "alice, bob"))
	assert.Equal(t, []string{"alice", "bob"}, c.API.AllowUsers)
	require.NoError(t, c.Override("allow_alone", "true"))
	assert.True(t, c.AllowAlone)
	require.NoError(t, c.Validate())

	for _, tc := range []struct{ key, value, want string }{
		{"priority", "300", `priority = "300": not an integer in 0..255`},
		{"node_id", "x", `node_id = "x": not an integer`},
		{"nosuch", "1", `nosuch: unknown key`},
		{"networks.c.interface", "x", `networks.c.interface: unknown key`},
		{"timing", "x", `timing: is a table`},
		{"timing.interval", "10", `not a duration with a unit`},
		{"networks.a.group", "nope", `networks.a.group = "nope"`},
		{"plugins", "x", `only be set in the file`},
		{"eligible", "maybe", `not a boolean`},
	} {
		err := c.Override(tc.key, tc.value)
		require.Error(t, err, tc.key)
		assert.Contains(t, err.Error(), tc.want)
	}
}

func TestFlags(t *testing.T) {
	p := writeConfig(t, "node_id = 3\npriority = 50\n[networks.a]\ninterface = \"eth1\"\n")
	fs := flag.NewFlagSet("fmagent", flag.ContinueOnError)
	fl := RegisterFlags(fs)
	require.NoError(t, fs.Parse([]string{"-config", p, "-priority", "60", "-iface-b", "eth9", "-profile", "fast",
		"-state-dir", "/srv/fm", "-shm", "myshm", "-allow-alone"}))
	c, err := fl.Load()
	require.NoError(t, err)
	assert.Equal(t, uint32(3), c.NodeID, "from the file")
	assert.Equal(t, uint8(60), c.Priority, "flag over file")
	assert.Equal(t, "eth1", c.Networks[0].Interface, "file, no flag")
	assert.Equal(t, "eth9", c.Networks[1].Interface)
	assert.Equal(t, 2*time.Millisecond, c.Timing.Interval)
	assert.Equal(t, "/srv/fm/fmagent.sock", c.Paths.Socket)
	assert.Equal(t, "myshm", c.Paths.Shm)
	assert.True(t, c.AllowAlone)

	// A bad flag value names the flag.
	fs = flag.NewFlagSet("fmagent", flag.ContinueOnError)
	fl = RegisterFlags(fs)
	require.NoError(t, fs.Parse([]string{"-node", "0"}))
	_, err = fl.Load()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "flag -node=0: node_id = 0: must be at least 1")

	fs = flag.NewFlagSet("fmagent", flag.ContinueOnError)
	fl = RegisterFlags(fs)
	require.NoError(t, fs.Parse([]string{"-priority", "999"}))
	_, err = fl.Load()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "flag -priority=999: priority")

	// No -config: the defaults.
	fs = flag.NewFlagSet("fmagent", flag.ContinueOnError)
	fl = RegisterFlags(fs)
	require.NoError(t, fs.Parse(nil))
	c, err = fl.Load()
	require.NoError(t, err)
	assert.Equal(t, Default(), c)
}

func TestMetricsAllowRemote(t *testing.T) {
	p := writeConfig(t, "[metrics]\nlisten = \":9464\"\nallow_remote = true\n")
	c, err := Load(p)
	require.NoError(t, err)
	assert.Equal(t, ":9464", c.Metrics.Listen)
	for _, ok := range []string{":9464", "0.0.0.0:9464", "10.0.0.1:9464", "[::]:9464", "127.0.0.1:9464"} {
		assert.NoError(t, CheckListen(ok, true), ok)
	}
	for _, bad := range []string{"9464", "10.0.0.1:x", "10.0.0.1:70000"} {
		assert.Error(t, CheckListen(bad, true), bad)
	}
}

func TestCheckLoopbackListen(t *testing.T) {
	for _, ok := range []string{"", "127.0.0.1:9464", "127.0.0.2:1", "[::1]:9464", "localhost:9464", "127.0.0.1:0"} {
		assert.NoError(t, CheckLoopbackListen(ok), ok)
	}
	for _, bad := range []string{"0.0.0.0:9464", ":9464", "10.0.0.1:9464", "[::]:9464", "example.com:80", "127.0.0.1", "127.0.0.1:x"} {
		assert.Error(t, CheckLoopbackListen(bad), bad)
	}
}

// A profile that needs SCHED_FIFO with real-time scheduling switched off is
// refused (it used to start with a warning and false downs under load),
// with the file, the line of realtime.enabled, the reason and the fix; so
// fmagent -check-config sees it too. Slower profiles only warn at start.
func TestRealtimeOffRefusesTheFastProfile(t *testing.T) {
	for _, name := range []string{"10ms", "fast"} {
		p := writeConfig(t, "[timing]\nprofile = \""+name+"\"\n\n[realtime]\nenabled = false\n")
		_, err := Load(p)
		require.Error(t, err, name)
		assert.Equal(t, p+`:5:11: realtime.enabled = false: timing profile "10ms" (2ms × 5) needs SCHED_FIFO on the heartbeat thread: at the normal policy, under CPU load, it waits behind other threads for a time slice (milliseconds), so heartbeats are late and peers are falsely declared down within the 10ms bound: set realtime.enabled = true (the agent needs CAP_SYS_NICE or RLIMIT_RTPRIO; the unit file grants it), or choose timing.profile = "20ms"`, err.Error())
	}
	for _, p := range Profiles {
		if p.NeedsRealtime {
			continue
		}
		_, err := Load(writeConfig(t, "[timing]\nprofile = \""+p.Name+"\"\n[realtime]\nenabled = false\n"))
		require.NoError(t, err, p.Name)
	}
	_, err := Load(writeConfig(t, "[timing]\nprofile = \"custom\"\ninterval = \"2ms\"\nmisses = 5\n[realtime]\nenabled = false\n"))
	require.NoError(t, err, "custom timing is the operator's own choice")
}

// fmagent -check-config prints every problem of a file, not only the first:
// unknown keys, keys a named profile fixes and bare durations no longer
// stop the check before the others (each key once, each at its line).
func TestEveryProblemReported(t *testing.T) {
	p := writeConfig(t, `node_id = 0
nodeid = 4
[timing]
profile = "20ms"
misses = 4
stale_timeout = 10
[timnig]
misses = 4
[shm]
events = 1000
`)
	_, err := Load(p)
	require.Error(t, err)
	var got []string
	for _, e := range Errors(err) {
		var ce *Error
		require.True(t, errors.As(e, &ce), "%T %v", e, e)
		assert.Equal(t, p, ce.File)
		got = append(got, fmt.Sprintf("%d %s", ce.Line, ce.Key))
	}
	assert.Equal(t, []string{ // in the file's order
		"1 node_id",              // Validate's
		"2 nodeid",               // unknown key
		"5 timing.misses",        // fixed by the profile
		"6 timing.stale_timeout", // bare duration
		"7 timnig",               // unknown table, reported once (not timnig.misses)
		"10 shm.events",          // Validate's
	}, got, err.Error())
}

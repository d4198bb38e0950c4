// Package config loads fmagent's TOML configuration file, fills every field
// the file leaves out with its default, lets command-line flags override the
// file, and refuses anything wrong with an error that names the file, the
// line (and column where the parser reports one) and the reason.
//
// TOML library: github.com/BurntSushi/toml, chosen for precise error
// positions — its ParseError carries the line and column of syntax errors and
// of the key a value failed to decode into, MetaData.Undecoded finds unknown
// keys, and MetaData.Type tells a duration string from a bare integer.
// Semantic errors (misses = 1) name the key's real line too: keyPosition
// asks the library for it by decoding into a probe type that fails on exactly
// that key (see position.go).
package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/plugin"
	"github.com/fmagent/fmagent/api"
)

// Limits.
const (
	MinMisses     = core.MinMisses // DESIGN §8
	MinInterval   = time.Millisecond
	MaxInterval   = 10 * time.Second
	DefaultPort   = 7410
	DefaultListen = "127.0.0.1:9464"
)

// Config is fmagent's configuration. Default returns one with every field set.
type Config struct {
	// NodeID identifies this node in the cluster (1..2^32-1; 0 means none).
	NodeID uint32 `toml:"node_id"`
	// ClusterID: packets of another cluster are rejected.
	ClusterID uint32 `toml:"cluster_id"`
	// Priority in the master election: higher wins.
	Priority uint8 `toml:"priority"`
	// Eligible: this node may become master or vice-master.
	Eligible bool `toml:"eligible"`
	// Networks are the two redundant networks, "a" and "b" (TOML tables
	// [networks.a] and [networks.b]).
	Networks [2]Network `toml:"-"`
	Timing   Timing     `toml:"timing"`
	// Realtime is how the real-time thread is scheduled.
	Realtime Realtime `toml:"realtime"`
	// Plugins is the master's plugin chain, in order ([[plugins]] tables).
	Plugins []Plugin `toml:"plugins"`
	// KeyFile holds the cluster key (fmagent -genkey writes one), readable
	// by its owner only. "" is allowed only when every network is loopback
	// or Insecure is set: packets are then authenticated with a key anyone
	// can compute (config.InsecureKey).
	KeyFile string `toml:"key_file"`
	// AcceptKeyFiles are further keys accepted, never sent with: the other
	// key of a key change-over (docs/security.md).
	AcceptKeyFiles []string `toml:"accept_key_files"`
	// Insecure lets the agent run without key_file on non-loopback
	// networks (it warns at every start).
	Insecure bool `toml:"insecure"`

	Paths   Paths   `toml:"paths"`
	API     API     `toml:"api"`
	Metrics Metrics `toml:"metrics"`
	// Watchdog is the hardware or systemd watchdog.
	Watchdog Watchdog `toml:"watchdog"`
	// AllowAlone is the operator's override that lets this node form a
	// cluster alone without a quorum of the persisted membership (amnesia
	// guard, DESIGN §2).
	AllowAlone bool `toml:"allow_alone"`
	// MaxAlarms is the most active alarms one entity carries, in the
	// core's table, the shared memory and the API alike (1..MaxMaxAlarms).
	MaxAlarms int `toml:"max_alarms"`
	// Shm sizes the shared-memory table ([shm]).
	Shm Shm `toml:"shm"`
	// LogFormat is "text" (default) or "json" (events.go).
	LogFormat string `toml:"log_format"`
	// Hooks are notify scripts run on events ([[hooks]], events.go).
	Hooks []Hook `toml:"hooks"`
	// Daemons are the processes the agent supervises ([[daemons]] tables).
	Daemons []Daemon `toml:"daemons"`
	// LogLevel is the log level: debug, info, warn or error (fmagent's
	// -log-level flag overrides it). SIGHUP reloads it.
	LogLevel string `toml:"log_level"`

	auto derived // which derived fields still follow their defaults
}

// Network is one of the two networks.
type Network struct {
	Name      string     `toml:"-"`         // "a" or "b"
	Interface string     `toml:"interface"` // NIC, e.g. "eth1"
	Group     netip.Addr `toml:"group"`     // IPv4 multicast group
	Port      int        `toml:"port"`      // group port
	// HeartbeatPort is the group port heartbeats go to (the real-time loop
	// reads them when it wakes, not when each arrives); 0: Port + 1.
	HeartbeatPort int        `toml:"heartbeat_port"`
	TTL           int        `toml:"ttl"`      // multicast TTL
	Loopback      bool       `toml:"loopback"` // IP_MULTICAST_LOOP (several agents on one host)
	Source        netip.Addr `toml:"source"`   // local address; unset: the interface's first IPv4
}

// Timing is the failure detector's timing.
type Timing struct {
	Profile string `toml:"profile"`
	// Interval between heartbeats (a duration string, e.g. "10ms").
	Interval time.Duration `toml:"interval"`
	// Misses is how many intervals of silence on both networks make a peer
	// down.
	Misses int `toml:"misses"`
	// StaleTimeout: with no word from the master for this long, the table is
	// flagged stale.
	StaleTimeout time.Duration `toml:"stale_timeout"`
}

// Detection is the failure detection bound, Interval × Misses.
func (t Timing) Detection() time.Duration { return t.Interval * time.Duration(t.Misses) }

// Plugin is one plugin of the chain.
type Plugin struct {
	Name string            `toml:"name"`
	Args map[string]string `toml:"args"`
}

// Paths are where the agent keeps its files.
type Paths struct {
	// StateDir holds the persisted state. Default: /var/lib/fmagent as root,
	// else $XDG_RUNTIME_DIR/fmagent, else /tmp/fmagent-<uid>.
	StateDir string `toml:"state_dir"`
	// Socket is the API's unix socket. Default: /run/fmagent/fmagent.sock
	// as root (where fmctl and the client library look first, and the
	// directory the unit's RuntimeDirectory= creates); otherwise, or when
	// state_dir is set, <state_dir>/fmagent.sock.
	Socket string `toml:"socket"`
	// Shm is the shared-memory file's name under /dev/shm. Default:
	// fmagent-<cluster_id>-<node_id>.
	Shm string `toml:"shm"`
}

// API says who may change the table through the unix socket (root always
// may; everyone may read).
type API struct {
	AllowUsers  []string `toml:"allow_users"`
	AllowGroups []string `toml:"allow_groups"`

	// SocketMode is the socket file's mode, an octal string ("0660"):
	// who may connect (and so read). It is never changed behind the
	// operator's back.
	SocketMode string `toml:"socket_mode"`
	// SocketOwner and SocketGroup own the socket file ("": the agent's
	// user and group). A group that may connect and is not in
	// allow_groups is a read-only group (monitoring).
	SocketOwner string `toml:"socket_owner"`
	SocketGroup string `toml:"socket_group"`
	// Grants are per-op permissions ([[api.grants]]).
	Grants []Grant `toml:"grants"`

	// Client limits (docs/api.md).
	MaxConns       int           `toml:"max_conns"`
	MaxConnsPerUID int           `toml:"max_conns_per_uid"`
	MaxInFlight    int           `toml:"max_in_flight"`
	IdleTimeout    time.Duration `toml:"idle_timeout"`
	FrameTimeout   time.Duration `toml:"frame_timeout"`
	WriteRate      float64       `toml:"write_rate"`
	WriteBurst     int           `toml:"write_burst"`
}

// Grant lets users and groups perform some write ops (none: all), and with
// Foreign on entities this node does not own as a client (another node's,
// and this node's node/N and link entities).
type Grant struct {
	Users   []string `toml:"users"`
	Groups  []string `toml:"groups"`
	Ops     []string `toml:"ops"`
	Foreign bool     `toml:"foreign"`
}

// Metrics is the Prometheus endpoint.
type Metrics struct {
	// Listen is address:port, or "" for no endpoint. A loopback address
	// unless AllowRemote.
	Listen string `toml:"listen"`
	// AllowRemote lets Listen be a non-loopback address (":9464",
	// "10.0.0.5:9464") for a Prometheus on another host. The endpoint has no
	// authentication: firewall it.
	AllowRemote bool `toml:"allow_remote"`
}

// Watchdog is the watchdog configuration.
type Watchdog struct {
	// Device is the watchdog device: "" for none, "auto" for
	// /dev/watchdog0 then /dev/watchdog, or a path.
	Device string `toml:"device"`
	// Timeout is asked of the device (WDIOC_SETTIMEOUT; the driver may
	// round it).
	Timeout time.Duration `toml:"timeout"`
	// Systemd: kick systemd's watchdog too when it enabled one for us.
	Systemd bool `toml:"systemd"`
	// SelfFence: a node that was a member of a formed cluster, lost both
	// networks and has seen no master for FenceTimeout stops kicking the
	// watchdog ("auto": only with a device).
	SelfFence    FenceMode     `toml:"self_fence"`
	FenceTimeout time.Duration `toml:"fence_timeout"`
}

// derived records which fields still follow another field's value.
type derived struct {
	stateDir, socket, shm bool
}

// Default returns the configuration with every default.
func Default() *Config {
	c := base()
	c.resolve()
	return c
}

// base is the defaults with derived fields unresolved.
func base() *Config {
	c := &Config{
		NodeID:    1,
		ClusterID: 1,
		Priority:  100,
		Eligible:  true,
		Networks: [2]Network{
			{Name: "a", Interface: "lo", Group: netip.MustParseAddr("239.192.77.1"), Port: DefaultPort, TTL: 1, Loopback: true},
			{Name: "b", Interface: "lo", Group: netip.MustParseAddr("239.192.77.2"), Port: DefaultPort, TTL: 1, Loopback: true},
		},
		Timing:   Timing{Profile: core.DefaultProfile, StaleTimeout: core.DefaultStale},
		Realtime: DefaultRealtime(),
		Metrics:  Metrics{Listen: DefaultListen},
		API: API{SocketMode: "0660", MaxConns: 512, MaxConnsPerUID: 128, MaxInFlight: 64,
			IdleTimeout: 10 * time.Minute, FrameTimeout: 10 * time.Second, WriteRate: 200, WriteBurst: 1000},
		Watchdog:  Watchdog{Timeout: DefaultWDTimeout, Systemd: true, SelfFence: FenceAuto, FenceTimeout: DefaultFenceAfter},
		MaxAlarms: core.DefaultMaxAlarms,
		LogLevel:  "info",
		Shm:       Shm{Entities: DefaultShmEntities, Events: DefaultShmEvents, EntitiesPerOwner: DefaultShmEntitiesPerOwner},
		LogFormat: LogText,
		auto:      derived{stateDir: true, socket: true, shm: true},
	}
	for _, p := range plugin.DefaultSpecs() {
		c.Plugins = append(c.Plugins, Plugin{Name: p.Name})
	}
	c.Timing.applyProfile()
	return c
}

// applyProfile sets Interval and Misses from a named profile; "custom"
// keeps them as they are (from the file, else the default profile's).
func (t *Timing) applyProfile() {
	if p, ok := LookupProfile(t.Profile); ok {
		t.Interval, t.Misses = p.Interval, p.Misses
	}
}

// resolve fills the derived fields that still follow their defaults.
func (c *Config) resolve() {
	if c.auto.stateDir {
		c.Paths.StateDir = DefaultStateDir()
	}
	if c.auto.socket {
		c.Paths.Socket = DefaultSocket(c.Paths.StateDir, c.auto.stateDir)
	}
	if c.auto.shm {
		c.Paths.Shm = fmt.Sprintf("fmagent-%d-%d", c.ClusterID, c.NodeID)
	}
}

// DefaultStateDir is /var/lib/fmagent for root; otherwise
// $XDG_RUNTIME_DIR/fmagent, or /tmp/fmagent-<uid> without XDG_RUNTIME_DIR.
func DefaultStateDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/fmagent"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "fmagent")
	}
	return fmt.Sprintf("/tmp/fmagent-%d", os.Geteuid())
}

// DefaultSocket is the API socket's default path. Root's agent with the
// default state directory listens on api.DefaultSocketPath
// (/run/fmagent/fmagent.sock), where fmctl and the client library look
// first: the socket must be reachable by the users the allow-list names,
// which the 0700 state directory would forbid. Otherwise (an unprivileged
// agent, or an explicit state_dir, as tests and demos use) the socket lives
// in the state directory, where client.DefaultSocket also looks.
func DefaultSocket(stateDir string, defaultStateDir bool) string {
	if defaultStateDir && os.Geteuid() == 0 {
		return api.DefaultSocketPath
	}
	return filepath.Join(stateDir, "fmagent.sock")
}

// ShmPath is the shared-memory file's full path.
func (c *Config) ShmPath() string { return filepath.Join("/dev/shm", c.Paths.Shm) }

package config

// Capacity limits of the shared-memory table (docs/shm-layout.md). The
// segment is sized from these at start; a registration that would not fit
// is refused with an error (api "limit"), never left out silently.
const (
	// MaxMaxAlarms is the most alarms an entity slot of the shared-memory
	// layout (version 1) holds: max_alarms may not exceed it. It equals
	// shmem.MaxAlarms (agent's tests check), and is the one limit the core's
	// table, the shared memory and the API all apply.
	MaxMaxAlarms = 8
	// DefaultShmEntities and DefaultShmEvents are the default sizes of the
	// shared-memory table and its event ring.
	DefaultShmEntities = 4096
	DefaultShmEvents   = 4096
	// DefaultShmEntitiesPerOwner is how many entities one node's clients
	// may create by default (core.DefaultMaxEntitiesPerOwner).
	DefaultShmEntitiesPerOwner = 1024
	// MaxShmEntities and MaxShmEvents bound them (the layout's 2^24).
	MaxShmEntities = 1 << 24
	MaxShmEvents   = 1 << 24
)

// Shm sizes the shared-memory table ([shm] in the file).
type Shm struct {
	// Entities is how many entities the table holds (the cluster's
	// entities, nodes and links included). Every node of a cluster should
	// have the same value: a node whose table is full refuses local
	// registrations and logs every entity it cannot publish.
	Entities int `toml:"entities"`
	// Events is the event ring's capacity, a power of two.
	Events int `toml:"events"`
	// EntitiesPerOwner is how many entities the clients of one node may
	// create (its node and link entities not counted); the master refuses
	// more with the error "limit", as it refuses any past Entities.
	EntitiesPerOwner int `toml:"entities_per_owner"`
}

// validShm appends the errors of c.Shm and MaxAlarms.
func (c *Config) validShm(add func(*Error)) {
	if c.MaxAlarms < 1 || c.MaxAlarms > MaxMaxAlarms {
		add(bad("max_alarms", c.MaxAlarms, "must be in 1..%d (what a shared-memory entity slot holds)", MaxMaxAlarms))
	}
	if c.Shm.Entities < 1 || c.Shm.Entities > MaxShmEntities {
		add(bad("shm.entities", c.Shm.Entities, "must be in 1..%d", MaxShmEntities))
	}
	if c.Shm.EntitiesPerOwner < 1 || c.Shm.EntitiesPerOwner > MaxShmEntities {
		add(bad("shm.entities_per_owner", c.Shm.EntitiesPerOwner, "must be in 1..%d", MaxShmEntities))
	}
	if e := c.Shm.Events; e < 1 || e > MaxShmEvents || e&(e-1) != 0 {
		add(bad("shm.events", c.Shm.Events, "must be a power of two in 1..%d", MaxShmEvents))
	}
}

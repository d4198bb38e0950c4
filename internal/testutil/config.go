package testutil

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/fmagent/fmagent/config"
)

// Net is one test's cluster on lo: two multicast groups, a port and a
// cluster ID of its own, so that agents of tests running at the same time
// never hear each other (and would refuse each other's packets if they
// did).
type Net struct {
	A, B    netip.Addr
	Port    int
	Cluster uint32
}

// NewNet picks a Net for one test.
func NewNet(t testing.TB) Net {
	t.Helper()
	a, b, port := MulticastNet(t)
	return Net{A: a, B: b, Port: port, Cluster: uint32(rand.IntN(1<<30) + 1000)}
}

// Config is node id's configuration in n: both networks on lo at n's
// groups and port, its state directory dir/n<id> with the API socket in it,
// a shared-memory name no other process uses, metrics off. Everything else
// is config.Default(); the caller tunes it and validates it.
func (n Net) Config(id int, dir string) *config.Config {
	cfg := config.Default()
	cfg.NodeID = uint32(id)
	cfg.ClusterID = n.Cluster
	cfg.Networks[0].Group, cfg.Networks[0].Port = n.A, n.Port
	cfg.Networks[1].Group, cfg.Networks[1].Port = n.B, n.Port
	cfg.Paths.StateDir = filepath.Join(dir, fmt.Sprintf("n%d", id))
	cfg.Paths.Socket = filepath.Join(cfg.Paths.StateDir, "fmagent.sock")
	cfg.Paths.Shm = fmt.Sprintf("fmagent-test-%d-%d-%d", os.Getpid(), n.Cluster, id)
	cfg.Metrics.Listen = ""
	return cfg
}

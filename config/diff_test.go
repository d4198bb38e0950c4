package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestDiff(t *testing.T) {
	a, b := Default(), Default()
	assert.Empty(t, Diff(a, b))
	b.NodeID = 2
	b.Networks[1].Interface = "eth2"
	b.Timing.Misses = 7
	b.Plugins = append(b.Plugins, Plugin{Name: "x"})
	b.Metrics.Listen = "127.0.0.1:1"
	b.LogLevel = "debug"
	assert.Equal(t, []string{"node_id", "timing.misses", "plugins", "metrics.listen", "log_level", "networks.b.interface"}, Diff(a, b))
	c := Default()
	c.Plugins[2].Args = map[string]string{"count": "5"}
	assert.Equal(t, []string{"plugins"}, Diff(a, c), "plugin arguments")
}

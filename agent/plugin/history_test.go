package plugin_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/fmagent/fmagent/agent/plugin"
	"github.com/fmagent/fmagent/wire"
)

func rec(h *plugin.History, from wire.NodeID, entity uint64, at int64) {
	h.Record(&plugin.Report{From: from, Kind: wire.ReportFault, Entity: entity, At: at})
}

func TestHistoryQueries(t *testing.T) {
	h := plugin.NewHistory(16)
	// t=1..6: node 1 against 100 (x3) and 200; node 2 against 100; node 3 against 300.
	rec(h, 1, 100, 1)
	rec(h, 1, 100, 2)
	rec(h, 2, 100, 3)
	rec(h, 1, 200, 4)
	rec(h, 1, 100, 5)
	rec(h, 3, 300, 6)

	tests := []struct {
		name string
		got  int
		want int
	}{
		{"count all", h.Count(100, 0), 4},
		{"count window", h.Count(100, 3), 2},
		{"count since is inclusive", h.Count(100, 5), 1},
		{"count none", h.Count(999, 0), 0},
		{"reporters", h.Reporters(100, 0), 2},
		{"reporters window", h.Reporters(100, 4), 1},
		{"other reporters", h.OtherReporters(100, 1, 0), 1},
		{"other reporters window", h.OtherReporters(100, 1, 4), 0},
		{"other reporters of a lone reporter", h.OtherReporters(300, 3, 0), 0},
		{"by reporter", h.ByReporter(1, 0), 4},
		{"by reporter window", h.ByReporter(1, 4), 2},
		{"targets", h.Targets(1, 0), 2},
		{"targets window", h.Targets(1, 5), 1},
		{"targets of a silent node", h.Targets(4, 0), 0},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, tc.got, tc.name)
	}
}

// TestHistoryManyDistinct crosses the switch from the small sorted set to
// collect-and-sort.
func TestHistoryManyDistinct(t *testing.T) {
	h := plugin.NewHistory(1000)
	for i := range 1000 {
		rec(h, wire.NodeID(i%300), uint64(i%500), int64(i))
	}
	// Node 7 reported at i = 7, 307, 607, 907: entities 7, 307, 107, 407.
	assert.Equal(t, 4, h.Targets(7, 0))
	// Entity 7 drew reports at i = 7 and 507: nodes 7 and 207.
	assert.Equal(t, 2, h.Reporters(7, 0))
	// Every node and every entity, counted as other reporters and targets.
	for i := range 1000 {
		rec(h, 1, uint64(i), int64(1000+i))
	}
	assert.Equal(t, 1000, h.Targets(1, 0))
	for i := range 1000 {
		rec(h, wire.NodeID(i), 5, int64(2000+i))
	}
	assert.Equal(t, 1000, h.Reporters(5, 0))
	assert.Equal(t, 999, h.OtherReporters(5, 3, 0))
	assert.Equal(t, 100, h.Reporters(5, 2900))
}

func TestHistoryOnlyFaults(t *testing.T) {
	h := plugin.NewHistory(4)
	for _, k := range []wire.ReportKind{wire.ReportRaise, wire.ReportClear, wire.ReportRegister,
		wire.ReportUnregister, wire.ReportDown, wire.ReportUp} {
		h.Record(&plugin.Report{From: 1, Kind: k, Entity: 1, At: 1})
	}
	assert.Zero(t, h.Len())
	assert.Zero(t, h.Count(1, 0))
}

// TestHistoryBound: a full ring forgets the oldest reports, and holds no more
// than its size.
func TestHistoryBound(t *testing.T) {
	h := plugin.NewHistory(8)
	assert.Equal(t, 8, h.Cap())
	for i := range 20 {
		rec(h, wire.NodeID(i), 100, int64(i))
	}
	assert.Equal(t, 8, h.Len())
	assert.Equal(t, 8, h.Count(100, 0), "only the newest 8 remain")
	assert.Equal(t, 8, h.Reporters(100, 0))
	assert.Zero(t, h.ByReporter(11, 0), "node 11's report was overwritten")
	assert.Equal(t, 1, h.ByReporter(12, 0))
	assert.Equal(t, 3, h.Count(100, 17))

	h.Reset()
	assert.Zero(t, h.Len())
	assert.Zero(t, h.Count(100, 0))
	rec(h, 1, 100, 1)
	assert.Equal(t, 1, h.Count(100, 0), "after Reset times may start over")

	assert.Equal(t, plugin.DefaultHistorySize, plugin.NewHistory(0).Cap())
}

// TestHistoryClockBackwards: a report stamped earlier than the previous one
// (the master's wall clock stepped back) is kept at the previous time, so it
// is neither lost to the window nor hides newer reports from the scan.
func TestHistoryClockBackwards(t *testing.T) {
	h := plugin.NewHistory(8)
	rec(h, 1, 100, 100)
	rec(h, 2, 100, 50)
	rec(h, 3, 100, 101)
	assert.Equal(t, 3, h.Count(100, 100))
	assert.Equal(t, 3, h.Reporters(100, 100))
}

func TestHistoryAllocs(t *testing.T) {
	h := plugin.NewHistory(plugin.DefaultHistorySize)
	i := int64(0)
	allocs := testing.AllocsPerRun(2*plugin.DefaultHistorySize, func() {
		i++
		rec(h, wire.NodeID(i%7), uint64(i%13), i)
	})
	assert.Zero(t, allocs)
	allocs = testing.AllocsPerRun(20, func() {
		_ = h.Count(3, 0)
		_ = h.Reporters(3, 0)
		_ = h.OtherReporters(3, 1, 0)
		_ = h.ByReporter(1, 0)
		_ = h.Targets(1, 0)
	})
	assert.Zero(t, allocs)
}

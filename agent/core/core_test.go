package core_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/wire"
)

var t0 = time.Unix(1_700_000_000, 0)

// pair is two nodes wired back to back on both networks, with no delay.
type pair struct {
	a, b    *core.Node
	now     time.Time
	results map[wire.NodeID][]core.Result
}

func newPair(t testing.TB) *pair {
	cfg := func(id wire.NodeID) core.Config {
		return core.Config{Node: id, Cluster: 9, Key: []byte("k"), Priority: 100, Eligible: true}
	}
	p := &pair{a: core.New(cfg(1), t0), b: core.New(cfg(2), t0), now: t0, results: map[wire.NodeID][]core.Result{}}
	return p
}

// formedPair is a pair once formed: node 1 the master, node 2 following.
func formedPair(t testing.TB) *pair {
	p := newPair(t)
	p.run(200 * time.Millisecond)
	require.Equal(t, wire.RoleMaster, p.a.Role().Role)
	return p
}

// flush delivers everything each node wants to send to the other, until quiet.
func (p *pair) flush() {
	for i := 0; i < 100; i++ {
		moved := false
		for _, from := range []*core.Node{p.a, p.b} {
			to := p.b
			if from == p.b {
				to = p.a
			}
			rd := from.Ready()
			p.results[from.ID()] = append(p.results[from.ID()], rd.Results...)
			var pkts [][2]any
			for _, pk := range rd.Packets {
				for net := wire.Net(0); net < wire.NumNets; net++ {
					if pk.Nets&(1<<net) != 0 && (pk.To == 0 || pk.To == to.ID()) {
						pkts = append(pkts, [2]any{net, append([]byte(nil), pk.Data...)})
					}
				}
			}
			for _, x := range pkts {
				stepAny(to, p.now, x[0].(wire.Net), x[1].([]byte))
				moved = true
			}
		}
		if !moved {
			return
		}
	}
}

func (p *pair) run(d time.Duration) {
	end := p.now.Add(d)
	for p.now.Before(end) {
		p.now = p.now.Add(time.Millisecond)
		p.a.Tick(p.now)
		p.b.Tick(p.now)
		p.flush()
	}
}

func TestTwoNodesFormACluster(t *testing.T) {
	p := newPair(t)
	p.run(200 * time.Millisecond)
	ra, rb := p.a.Role(), p.b.Role()
	assert.Equal(t, wire.RoleMaster, ra.Role, "node 1 outranks node 2 (lower ID)")
	assert.Equal(t, wire.RoleVice, rb.Role)
	assert.Equal(t, p.a.Table().Digest(), p.b.Table().Digest())
	for _, name := range []string{"node/1", "node/2", "node/1/link/a", "node/2/link/b"} {
		e, ok := p.b.Table().Lookup(name)
		require.True(t, ok, name)
		assert.Equal(t, wire.StateUp, e.State, name)
	}
}

func TestSubmitRaiseReachesBoth(t *testing.T) {
	p := newPair(t)
	p.run(200 * time.Millisecond)
	id := p.b.Submit(p.now, core.Request{Kind: wire.ReportRaise, Name: "svc/x", EntityKind: wire.KindService, Severity: wire.SevMajor, Cause: "slow"})
	p.flush()
	require.Len(t, p.results[2], 1, "the master acknowledged the report")
	assert.Equal(t, id, p.results[2][0].ID)
	require.NoError(t, p.results[2][0].Err)
	assert.Equal(t, p.a.Table().Seq(), p.results[2][0].Seq)
	for _, n := range []*core.Node{p.a, p.b} {
		e, ok := n.Table().Lookup("svc/x")
		require.True(t, ok)
		require.Len(t, e.Alarms, 1)
		assert.Equal(t, "slow", e.Alarms[0].Cause)
		assert.Equal(t, wire.NodeID(2), e.Alarms[0].RaisedBy)
		assert.Equal(t, wire.NodeID(2), e.Owner)
	}
}

func TestBadRequestsAnsweredAtOnce(t *testing.T) {
	n := core.New(core.Config{Node: 1, Key: []byte("k")}, t0)
	n.Submit(t0, core.Request{Kind: wire.ReportRaise, Name: ""})
	n.Submit(t0, core.Request{Kind: wire.ReportRaise, Name: string(make([]byte, wire.MaxName+1))})
	rd := n.Ready()
	require.Len(t, rd.Results, 2)
	for _, r := range rd.Results {
		assert.ErrorIs(t, r.Err, core.ErrBadName)
	}
}

func TestForgedPacketsChangeNothing(t *testing.T) {
	p := newPair(t)
	p.run(100 * time.Millisecond)
	before := p.b.Table().Digest()
	evil := core.New(core.Config{Node: 1, Cluster: 9, Key: []byte("wrong key"), Priority: 255, Eligible: true, Incarnation: 99}, p.now)
	evil.Tick(p.now)
	for _, pk := range evil.Ready().Packets {
		_, err := stepAny(p.b, p.now, wire.NetA, pk.Data)
		assert.ErrorIs(t, err, wire.ErrAuth)
	}
	assert.Equal(t, before, p.b.Table().Digest())
	assert.Equal(t, uint64(1), p.b.Role().Epoch)
}

// The hot path: a steady-state heartbeat stepped into a node (opened,
// authenticated, replay-checked, decoded, membership and election updated)
// allocates nothing, and neither does the tick that sends its own.
func TestAllocStepHeartbeat(t *testing.T) {
	p := newPair(t)
	p.run(200 * time.Millisecond)
	const runs = 100
	var hbs [][]byte
	now := p.now
	for len(hbs) < runs+1 {
		now = now.Add(time.Millisecond)
		p.a.Tick(now)
		for _, pk := range p.a.Ready().Packets {
			if pk.To == 0 && !pk.Prio {
				hbs = append(hbs, append([]byte(nil), pk.Data...))
			}
		}
	}
	i := 0
	bnow := p.now
	allocs := testing.AllocsPerRun(runs, func() {
		bnow = bnow.Add(time.Millisecond / 4)
		if _, err := stepAny(p.b, bnow, wire.NetA, hbs[i]); err != nil {
			t.Fatal(err)
		}
		i++
		p.b.Tick(bnow)
		p.b.Ready()
	})
	assert.Zero(t, allocs)
}

// The master's steady-state tick (heartbeat out, peers judged, membership
// and links checked) allocates nothing either.
func TestAllocMasterTick(t *testing.T) {
	p := newPair(t)
	p.run(300 * time.Millisecond)
	require.Equal(t, wire.RoleMaster, p.a.Role().Role)
	now := p.now
	// 40 ms of ticks: within the detection time, so the silent peer is not
	// (yet) judged; the steady state is what is measured.
	allocs := testing.AllocsPerRun(40, func() {
		now = now.Add(time.Millisecond)
		p.a.Tick(now)
		p.a.Ready()
	})
	assert.Zero(t, allocs)
}

func TestSwitchover(t *testing.T) {
	p := newPair(t)
	p.run(200 * time.Millisecond)
	require.Equal(t, wire.RoleMaster, p.a.Role().Role)
	epoch := p.a.Role().Epoch
	require.NoError(t, p.b.Switchover(p.now), "asked on the vice: forwarded to the master")
	p.flush()
	p.run(30 * time.Millisecond)
	assert.Equal(t, wire.RoleMaster, p.b.Role().Role, "the vice took over")
	assert.Equal(t, epoch+1, p.b.Role().Epoch)
	assert.Equal(t, wire.RoleVice, p.a.Role().Role, "the old master follows, and is named vice")
	p.run(100 * time.Millisecond)
	assert.Equal(t, p.a.Table().Digest(), p.b.Table().Digest())
	for _, name := range []string{"node/1", "node/2"} {
		e, ok := p.b.Table().Lookup(name)
		require.True(t, ok)
		assert.Equal(t, wire.StateUp, e.State, "a switchover downs nothing: %s", name)
	}
	lone := core.New(core.Config{Node: 7, Key: []byte("k")}, t0)
	assert.ErrorIs(t, lone.Switchover(t0), core.ErrNoMaster)
}

func TestConfigValidate(t *testing.T) {
	ok := core.Config{Node: 1, Key: []byte("k")}
	require.NoError(t, ok.Validate(), "zero fields take their defaults")
	for name, c := range map[string]core.Config{
		"two misses":      {Node: 1, Misses: 2},
		"node 0":          {Node: 0},
		"negative":        {Node: 1, Interval: -time.Millisecond},
		"negative alarms": {Node: 1, MaxAlarms: -1},
	} {
		err := c.Validate()
		require.ErrorIs(t, err, core.ErrBadConfig, name)
	}
	bad := core.Config{Node: 1, Misses: 1}
	require.PanicsWithError(t, bad.Validate().Error(), func() {
		core.New(bad, time.Unix(0, 0))
	})
}

// stalls counts the stall events of a Ready.
func stalls(rd *core.Ready) int {
	n := 0
	for _, e := range rd.Events {
		if e.Kind == core.EvStalled {
			n++
		}
	}
	return n
}

// The time from New to the first Tick is the shell's start-up, not a stall
// of this node's ticks: no stall event, no deferred judgement. A gap
// between two ticks is one.
func TestFirstTickIsNotAStall(t *testing.T) {
	cfg := core.Config{Node: 1, Cluster: 9, Key: []byte("k"), Priority: 100, Eligible: true, Interval: 10 * time.Millisecond, Misses: 5}
	n := core.New(cfg, t0)
	now := t0.Add(70 * time.Millisecond) // start-up work
	n.Tick(now)
	assert.Zero(t, stalls(n.Ready()), "the first tick after 70 ms of start-up")
	now = now.Add(10 * time.Millisecond)
	n.Tick(now)
	assert.Zero(t, stalls(n.Ready()))
	now = now.Add(70 * time.Millisecond)
	n.Tick(now)
	assert.Equal(t, 1, stalls(n.Ready()), "70 ms between two ticks at a 10 ms interval")
}

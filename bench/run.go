package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"syscall"
	"time"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
)

// Config is what Run measures and how.
type Config struct {
	// Nodes is the number of agents, at least 2 (the client is on a node other than the master's: clientNodeFor).
	Nodes int
	// Samples is the number of samples of each latency (report to
	// everywhere, down propagation, baseline), after Warmup discarded ones.
	Samples int
	Warmup  int
	// Kills is the number of repetitions of the failure-detection
	// measurement against the heartbeats' bound (0: none): a non-master
	// is stopped (SIGSTOP: silent but not ended, as a hung host), and
	// killed once its down is everywhere. Until the exit watch
	// (agent/exitwatch.go) a kill -9 measured the same; now a kill -9 is
	// seen by the watch, long before the bound (Exits).
	Kills int
	// Failovers is the number of the same repetitions of the master (a
	// stop): to the new master's first change (the old master's node down)
	// visible in every survivor's shared memory (0: none).
	Failovers int
	// Exits and ExitFailovers are the kill -9 repetitions of a non-master
	// and of the master: the process ends, its kernel closes its
	// connections, and the exit watch sees it at once (0: none).
	Exits, ExitFailovers int
	// Idle is the window over which every agent's CPU, RSS and datagrams
	// are measured, with nothing happening, right after the cluster forms
	// (0: not measured).
	Idle time.Duration
	// PinAgents pins agent i to the ith CPU this process may use, round
	// robin (realtime.cpus; cluster.pinSpread); false leaves them where the
	// kernel puts them (the agent's default).
	PinAgents bool
	// IdleFloors measures, after the agents' idle window, the idle floors
	// (idlefloor.go) over as long a window each.
	IdleFloors bool
	// NoSamples skips the latency samples (report, down, baseline): for
	// runs that measure only detection and resource use.
	NoSamples bool
	// Interval and Misses are the agents' timing (profile "custom"): the
	// detection bound is Interval × Misses.
	Interval time.Duration
	Misses   int
	// Profile, if set, is a named timing profile the agents are given
	// instead of Interval and Misses (which must still be the profile's:
	// they give the bound).
	Profile string
	// Agent is the fmagent binary; "" builds cmd/fmagent (BuildAgent) into
	// a temporary directory.
	Agent string
	// Self is the executable re-run as the observers (MaybeHelper);
	// "" is os.Executable().
	Self string
	// Gap is the pause between samples (a random part up to Gap is added).
	Gap time.Duration
	// Timeout bounds one client call; the observers of a sample wait up
	// to twice as long.
	Timeout time.Duration
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// StateBase is where the run's directory (the agents' state
	// directories, where the master fsyncs the membership on every change,
	// and their sockets) is made; "" is the default temporary directory.
	StateBase string
	// LogLevel is the agents' -log-level ("": info).
	LogLevel string
	// LogDir, if set, receives a copy of every agent's log (n1.log...)
	// when the run ends.
	LogDir string
}

func (c *Config) defaults() {
	if c.Nodes == 0 {
		c.Nodes = 3
	}
	if c.Samples == 0 && !c.NoSamples {
		c.Samples = 200
	}
	if c.Interval == 0 {
		c.Interval = 10 * time.Millisecond
	}
	if c.Misses == 0 {
		c.Misses = 5
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Result is what one Run measured.
type Result struct {
	Nodes  int
	Master int // the master when the samples were taken
	// Client is the node whose agent the benchmark's client writes to:
	// never the master (clientNodeFor), so that a report always takes its
	// three hops (client -> agent -> master -> every agent).
	Client   int
	Bound    time.Duration
	Interval time.Duration
	Misses   int
	// LoadBefore and LoadAfter are the 1-minute load average when the run
	// started and ended: the machine is shared.
	LoadBefore, LoadAfter float64

	// Report to everywhere: client.Report on node Client (the plugin raises it), from just before the
	// call to the alarm readable in every node's shared memory.
	Report Dist
	// Its parts: to the master's decision (the alarm's RaisedAt) and from
	// there to the last segment; and the time the Report call took to return.
	ReportToMaster   Dist
	ReportFromMaster Dist
	ReportReturn     Dist
	// The same two paths to the alarm written in every node's table (the
	// segments' written_at: readable there, before any reader is woken).
	ReportWritten           Dist
	ReportFromMasterWritten Dist
	// The same report sent on the API's stream socket (the client's
	// UseDatagram(false)), each taken right after one on the datagram
	// socket: client -> every shm, and written in every table.
	ReportStream        Dist
	ReportStreamWritten Dist

	// Down propagation: from the master's decision (ChangedAt) to the down
	// readable in every node's shared memory, and its first-to-last spread.
	// DownTotal is from just before client.SetState(down) on node Client.
	Down       Dist
	DownFirst  Dist // the master's decision to the first segment
	DownSpread Dist
	DownTotal  Dist
	// DownWritten is from the decision to the down written in every node's
	// table (written_at): readable there, before any reader is woken.
	DownWritten Dist

	// Baseline: one multicast datagram to Nodes receiver processes, send to
	// received by all (and by the first).
	Baseline      Dist
	BaselineFirst Dist
	// Floor: the same datagram through two hops, to Nodes real-time relays
	// that each commit it to a segment of their own, read by the observers
	// through the futex as they read the agents' (relay.go): send to seen in
	// every segment (and in the first).
	Floor      Dist
	FloorFirst Dist
	// FloorWritten is the relays' one hop: the datagram sent to written
	// in every relay's segment (written_at), what DownWritten compares
	// with: one datagram to N real-time processes that write a table.
	FloorWritten Dist
	// ReportFloor: 8 bytes through the report's three hops (a Unix socket
	// to a forwarder, a datagram to a hub, the hub's to the relays:
	// reportfloor.go), sent to seen in every relay's segment (and in the
	// first), and to written there (written_at): what ReportWritten
	// compares with.
	ReportFloor        Dist
	ReportFloorFirst   Dist
	ReportFloorWritten Dist

	// Failure detection, one entry per stop of a non-master (Config.Kills).
	Kills []Kill
	// Failover, one entry per stop of the master: Detect is the stop to
	// the old master's node down (the new master's first change) in every
	// survivor's shared memory; NewMaster is who decided it.
	Failovers []Kill
	// Exits and ExitFailovers: the same, one entry per kill -9 of a
	// non-master and of the master (Config.Exits, Config.ExitFailovers).
	Exits, ExitFailovers []Kill

	// Idle is the agents' resource use over Config.Idle (nil: not measured).
	Idle *ResourceSummary

	// Failures lists every sample that was not observed everywhere (each
	// also left out of the distributions).
	Failures []string
}

// Kill is one failure-detection repetition.
type Kill struct {
	Victim, Master int
	// NewMaster is the master that decided the victim's down (the same as
	// Master unless the victim was the master).
	NewMaster int
	// Detect is the signal (SIGSTOP or kill -9) to down in every
	// survivor's shared memory.
	Detect time.Duration
	// ToDecision is the signal to the master's decision (node/N's ChangedAt);
	// Propagate is the decision to the last survivor's shared memory;
	// Spread is the first survivor's to the last's.
	ToDecision, Propagate, Spread time.Duration
	// Bound is the detection bound the victim was judged at: the master's
	// bound of it just before the kill (the widest of the survivors' for
	// a kill of the master, since any may take over and decide), the
	// configured one or wider after a false down of the victim
	// (agent/core/detector.go). A kill of a victim
	// whose bound was widened measures the widening, not the detector at
	// the profile's bound; DetectAtBoundDist leaves it out.
	Bound time.Duration
	// Last is the survivor whose shared memory showed the down last, and
	// SinceStart how long before the kill it was last started: a tail
	// that is always the node restarted last is its resynchronisation's.
	Last       int
	SinceStart time.Duration
	// Written is the signal to the down written in every survivor's table
	// (the rows' written_at): readable there, before any reader is woken.
	Written time.Duration
}

// DetectDist is the Detect of every kill.
func (r *Result) DetectDist() Dist {
	return r.killDist(func(k Kill) time.Duration { return k.Detect })
}

// DetectWrittenDist is the Written of every kill.
func (r *Result) DetectWrittenDist() Dist {
	return r.killDist(func(k Kill) time.Duration { return k.Written })
}

// DetectWrittenAtBoundDist is the Written of every kill whose victim the
// master held at the configured bound.
func (r *Result) DetectWrittenAtBoundDist() Dist {
	return r.atBound(func(k Kill) time.Duration { return k.Written })
}

// DetectAtBoundDist is the Detect of every kill whose victim the master
// held at the configured bound.
func (r *Result) DetectAtBoundDist() Dist {
	return r.atBound(func(k Kill) time.Duration { return k.Detect })
}

// atBound is f of every kill whose victim the master held at the
// configured bound.
func (r *Result) atBound(f func(Kill) time.Duration) Dist {
	var d Dist
	for _, k := range r.Kills {
		if k.Bound == r.Bound {
			d = append(d, f(k))
		}
	}
	return d
}

// KillsAtWidenedBound is how many kills found the victim's bound widened.
func (r *Result) KillsAtWidenedBound() int {
	n := 0
	for _, k := range r.Kills {
		if k.Bound != r.Bound {
			n++
		}
	}
	return n
}

// DecisionDist is the ToDecision of every kill.
func (r *Result) DecisionDist() Dist {
	return r.killDist(func(k Kill) time.Duration { return k.ToDecision })
}

// PropagateDist is the Propagate of every kill.
func (r *Result) PropagateDist() Dist {
	return r.killDist(func(k Kill) time.Duration { return k.Propagate })
}

// KillSpreadDist is the Spread of every kill.
func (r *Result) KillSpreadDist() Dist {
	return r.killDist(func(k Kill) time.Duration { return k.Spread })
}

func (r *Result) killDist(f func(Kill) time.Duration) Dist { return killDist(r.Kills, f) }

// floorPhases is how many evenly spaced kill phases DetectAtFloorDist
// pairs with each floor sample.
const floorPhases = 40

// DetectAtFloorDist is the detection a perfect agent would show on this
// machine, for comparison with DetectDist: one that judges the victim
// down exactly when its bound runs out after the victim's last heartbeat
// and whose down then reaches every survivor's shared memory in the
// two-hop floor's time (Floor, measured in the same run). A kill falls at
// a phase uniform over the heartbeat interval after that last heartbeat,
// so the decision comes bound - phase after the kill: every floor sample
// is paired with floorPhases phases spread over the interval. Optimistic
// (the heartbeat's own transit and the decider's wake-up are left out):
// what it shows over the target no agent could meet here.
func (r *Result) DetectAtFloorDist() Dist {
	if len(r.Floor) == 0 || len(r.Kills) == 0 || r.Interval <= 0 {
		return nil
	}
	d := make(Dist, 0, len(r.Floor)*floorPhases)
	for _, f := range r.Floor {
		for k := 0; k < floorPhases; k++ {
			phase := r.Interval * time.Duration(2*k+1) / (2 * floorPhases)
			d = append(d, r.Bound-phase+f)
		}
	}
	return d
}

// FailoverDist is the Detect of every kill of the master.
func (r *Result) FailoverDist() Dist {
	return killDist(r.Failovers, func(k Kill) time.Duration { return k.Detect })
}

// FailoverDecisionDist is the ToDecision of every kill of the master.
func (r *Result) FailoverDecisionDist() Dist {
	return killDist(r.Failovers, func(k Kill) time.Duration { return k.ToDecision })
}

// FailoverPropagateDist is the Propagate of every kill of the master.
func (r *Result) FailoverPropagateDist() Dist {
	return killDist(r.Failovers, func(k Kill) time.Duration { return k.Propagate })
}

func killDist(ks []Kill, f func(Kill) time.Duration) Dist {
	d := make(Dist, len(ks))
	for i, k := range ks {
		d[i] = f(k)
	}
	return d
}

// clientNodeFor is the node the benchmark's client writes to when master
// is the master: node 2, or node 3 (node 1 with two nodes) when node 2 is
// the master. A client on the master's node would measure a report with
// one hop fewer, and a run whose formation elected node 2 (about one in
// eight at N = 5 in bench/results/) then mixed two paths under one name.
func clientNodeFor(master, nodes int) int {
	switch {
	case master != 2:
		return 2
	case nodes >= 3:
		return 3
	default:
		return 1
	}
}

const (
	// The client registers these entities on its node (Result.Client):
	// the first takes the alarms, the second goes down and up.
	alarmEntity = "svc/bench-alarm"
	downEntity  = "svc/bench-down"
	// Run gives up after this many failed samples.
	maxFailures = 10
)

// Run starts the cluster and the observers, measures and stops
// everything. It returns an error when the measurement could not run at
// all (the cluster did not form, too many samples failed); samples that
// were not observed everywhere are listed in Result.Failures.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	if cfg.Nodes < 2 {
		return nil, errors.New("bench: at least 2 nodes (the client runs on a node other than the master's)")
	}
	logf := func(format string, args ...any) { fmt.Fprintf(cfg.Log, format+"\n", args...) }

	bin := cfg.Agent
	if bin == "" {
		dir, err := os.MkdirTemp("", "fmbench-bin")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		logf("building fmagent")
		if bin, err = BuildAgent(dir); err != nil {
			return nil, err
		}
	}
	self := cfg.Self
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return nil, err
		}
	}

	c, err := newCluster(bin, cfg.Nodes, cfg.Interval, cfg.Misses, cfg.StateBase)
	if err != nil {
		return nil, err
	}
	c.logLevel = cfg.LogLevel
	c.profile = cfg.Profile
	if cfg.PinAgents {
		if err := c.pinSpread(); err != nil {
			c.cleanup()
			return nil, err
		}
	}
	if err := c.writeConfigs(); err != nil {
		c.cleanup()
		return nil, err
	}
	defer func() {
		c.stop()
		if cfg.LogDir != "" {
			c.saveLogs(cfg.LogDir)
		}
		c.cleanup()
	}()
	logf("starting %d agents on lo (cluster %d, groups %s and %s port %d, %v × %d)",
		cfg.Nodes, c.clusterID, c.groupA, c.groupB, c.port, cfg.Interval, cfg.Misses)
	for _, i := range c.all() {
		if err := c.start(i); err != nil {
			return nil, err
		}
	}
	for _, i := range c.all() {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := c.open(octx, i)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	t0 := time.Now()
	master, err := c.waitFormed(ctx, 20*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, c.logs(10))
	}
	logf("formed in %v; master: node %d", time.Since(t0).Round(time.Millisecond), master)

	o, err := startObservers(self, cfg.Nodes)
	if err != nil {
		return nil, err
	}
	var relay *relays
	defer o.stop()
	all := c.all()
	if err := o.open(all, c.paths(all), c.pids(all), 10*time.Second); err != nil {
		return nil, err
	}

	if !cfg.NoSamples || cfg.Kills > 0 {
		r, err := startRelays(self, "/dev/shm/"+c.shmPrefix+"-relay", cfg.Nodes)
		if err != nil {
			return nil, err
		}
		defer r.stop()
		if err := o.openSlot(1, all, r.paths, r.pids(), 10*time.Second); err != nil {
			return nil, err
		}
		relay = r
	}
	var rfloor *reportFloor
	if !cfg.NoSamples {
		f, err := startReportFloor(self, relay)
		if err != nil {
			return nil, err
		}
		defer f.stop()
		rfloor = f
	}

	m := &measurer{cfg: cfg, c: c, o: o, r: relay, rf: rfloor, logf: logf, res: &Result{
		Nodes: cfg.Nodes, Master: master, Client: clientNodeFor(master, cfg.Nodes), Bound: cfg.Interval * time.Duration(cfg.Misses),
		Interval: cfg.Interval, Misses: cfg.Misses, LoadBefore: LoadAverage(),
	}}
	defer func() { m.res.LoadAfter = LoadAverage() }()
	if cfg.Idle > 0 {
		// Let the formation's traffic (snapshots, persistence) pass first.
		time.Sleep(time.Second)
		logf("idle window of %v: CPU, RSS and datagrams of every agent", cfg.Idle)
		if m.res.Idle, err = measureIdle(ctx, c, cfg.Idle); err != nil {
			return m.res, err
		}
		if cfg.IdleFloors {
			logf("idle floors: %d Go heartbeat loops, then %d C ones, %v each", cfg.Nodes, cfg.Nodes, cfg.Idle)
			if m.res.Idle.Floors, err = measureIdleFloors(ctx, self, c.dir, cfg.Nodes, cfg.Interval, cfg.Idle); err != nil {
				return m.res, err
			}
		}
	}
	if !cfg.NoSamples {
		if err := m.samples(ctx); err != nil {
			return m.res, fmt.Errorf("%w\n%s", err, c.logs(10))
		}
	} else if cfg.Kills > 0 {
		if err := m.floorOnly(ctx); err != nil {
			return m.res, err
		}
	}
	for _, k := range []struct {
		ofMaster bool
		sig      syscall.Signal
		count    int
		into     *[]Kill
	}{
		{false, syscall.SIGSTOP, cfg.Kills, &m.res.Kills},
		{true, syscall.SIGSTOP, cfg.Failovers, &m.res.Failovers},
		{false, syscall.SIGKILL, cfg.Exits, &m.res.Exits},
		{true, syscall.SIGKILL, cfg.ExitFailovers, &m.res.ExitFailovers},
	} {
		if err := m.kills(ctx, k.ofMaster, k.sig, k.count, k.into); err != nil {
			return m.res, fmt.Errorf("%w\n%s", err, c.logs(10))
		}
	}
	return m.res, nil
}

type measurer struct {
	cfg  Config
	c    *cluster
	o    *observers
	r    *relays      // the two-hop floor's (nil without samples or kills)
	rf   *reportFloor // the report's floor (nil without samples)
	cl   *client.Client
	clS  *client.Client // the same node's, on the stream socket only
	res  *Result
	logf func(string, ...any)
	run  int // distinguishes the causes of this run from leftovers
}

func (m *measurer) fail(what string, err error) error {
	msg := fmt.Sprintf("%s: %v", what, err)
	m.res.Failures = append(m.res.Failures, msg)
	m.logf("FAILED %s", msg)
	if len(m.res.Failures) >= maxFailures {
		return fmt.Errorf("bench: %d samples failed, giving up; last: %s", len(m.res.Failures), msg)
	}
	return nil
}

func (m *measurer) pause() {
	if m.cfg.Gap > 0 {
		time.Sleep(m.cfg.Gap + rand.N(m.cfg.Gap))
	}
}

// do runs call (a client request) between arming the observers of nodes
// ids on cond and collecting their sightings. t0 is CLOCK_MONOTONIC and
// wall-clock just before the call, ret the time the call took.
//
// The observers wait up to twice Timeout, from before the call: a call
// that takes long but succeeds (up to Timeout) still gives a sample, a slow
// one; a failure is a change not seen everywhere in that time.
func (m *measurer) do(ctx context.Context, ids []int, cond, name, arg string, call func(context.Context) error) (ss []msg, t0, t0wall int64, ret time.Duration, err error) {
	w, err := m.o.watch(ids, cond, name, arg, 2*m.cfg.Timeout)
	if err != nil {
		return nil, 0, 0, 0, err
	}
	cctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	t0, t0wall = clockPair() // one instant on both clocks: Detect is timed on one, Written on the other
	err = call(cctx)
	ret = time.Duration(monoNow() - t0)
	ss, werr := w.wait()
	if err == nil {
		err = werr
	}
	if err != nil {
		err = fmt.Errorf("%w (the call took %v); now:%s", err, ret.Round(time.Microsecond), m.c.describe(name))
	}
	return ss, t0, t0wall, ret, err
}

// samples takes the report, down, baseline and floor samples, interleaved.
func (m *measurer) samples(ctx context.Context) error {
	c := m.c
	all := c.all()
	m.run = rand.IntN(1 << 30)

	clientNode := m.res.Client
	cl, err := client.Dial(ctx, c.nodes[clientNode].sock)
	if err != nil {
		return err
	}
	defer cl.Close()
	m.cl = cl
	if m.clS, err = client.Dial(ctx, c.nodes[clientNode].sock); err != nil {
		return err
	}
	defer m.clS.Close()
	m.clS.UseDatagram(false)
	for _, name := range []string{alarmEntity, downEntity} {
		_, _, _, _, err := m.do(ctx, all, "exists", name, "", func(ctx context.Context) error {
			_, err := cl.Register(ctx, name, client.KindService)
			return err
		})
		if err != nil {
			return fmt.Errorf("bench: register %s on node %d: %w", name, clientNode, err)
		}
	}

	total := m.cfg.Warmup + m.cfg.Samples
	m.logf("%d samples each (%d warm-up) of report to everywhere, down propagation, the baseline, the two-hop floor and the report's floor", m.cfg.Samples, m.cfg.Warmup)
	// The references: one datagram to every observer (the baseline),
	// through the relays (the two-hop floor), and through a Unix socket
	// and two more hops to the relays (the report's floor).
	refs := []refSample{m.baselineRef(), m.floorRef(), m.reportFloorRef()}
	for i := 0; i < total; i++ {
		keep := i >= m.cfg.Warmup
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, ref := range refs {
			if err := m.sampleRef(ref, i, keep); err != nil {
				return err
			}
		}

		if err := m.report(ctx, i, keep, false); err != nil {
			return err
		}
		m.pause()
		if err := m.report(ctx, i, keep, true); err != nil {
			return err
		}
		m.pause()

		if err := m.down(ctx, i, keep); err != nil {
			return err
		}
		if keep && (i-m.cfg.Warmup+1)%50 == 0 {
			m.logf("  %d/%d", i-m.cfg.Warmup+1, m.cfg.Samples)
		}
	}
	return nil
}

// detectFloorSamples is how many two-hop floor samples a run without
// latency samples takes before its kills, for DetectAtFloorDist.
const detectFloorSamples = 100

// floorOnly takes the two-hop floor's samples alone, beside the idle
// agents, for a run whose latency samples are off but whose kills are
// compared with the floor (DetectAtFloorDist).
func (m *measurer) floorOnly(ctx context.Context) error {
	m.logf("%d samples of the two-hop floor (for the detection a perfect agent would show)", detectFloorSamples)
	ref := m.floorRef()
	for i := 0; i < m.cfg.Warmup+detectFloorSamples; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := m.sampleRef(ref, i, i >= m.cfg.Warmup); err != nil {
			return err
		}
	}
	return nil
}

// refSample is a sample of what the agents are compared with: one
// datagram to every observer (the baseline), or through the relays (the
// two-hop floor, and the relays' one-hop write), kept in last, first and
// written (nil for the baseline).
type refSample struct {
	what                 string
	sample               func() (refTimes, error)
	last, first, written *Dist
}

// refTimes is one reference sample: from the send to the first and to
// the last sighting, and (relays) to the last relay's write.
type refTimes struct{ first, last, written time.Duration }

func (m *measurer) baselineRef() refSample {
	return refSample{"baseline", func() (refTimes, error) {
		first, last, err := m.o.sample(m.cfg.Timeout)
		return refTimes{first: first, last: last}, err
	}, &m.res.Baseline, &m.res.BaselineFirst, nil}
}

func (m *measurer) floorRef() refSample {
	return refSample{"floor", func() (refTimes, error) { return m.r.sample(m.o, m.cfg.Timeout) },
		&m.res.Floor, &m.res.FloorFirst, &m.res.FloorWritten}
}

func (m *measurer) reportFloorRef() refSample {
	return refSample{"report floor", func() (refTimes, error) { return m.rf.sample(m.r, m.o, m.cfg.Timeout) },
		&m.res.ReportFloor, &m.res.ReportFloorFirst, &m.res.ReportFloorWritten}
}

// sampleRef takes reference sample i (kept unless a warm-up), then pauses.
func (m *measurer) sampleRef(ref refSample, i int, keep bool) error {
	t, err := ref.sample()
	if err != nil {
		if err := m.fail(fmt.Sprintf("%s sample %d", ref.what, i), err); err != nil {
			return err
		}
	} else if keep {
		*ref.last = append(*ref.last, t.last)
		*ref.first = append(*ref.first, t.first)
		if ref.written != nil {
			*ref.written = append(*ref.written, t.written)
		}
	}
	m.pause()
	return nil
}

// report takes one report-to-everywhere sample: a fault report with a new
// cause (the passthrough plugin raises it as an alarm), then Clear it (not
// timed) so that the entity never fills up its alarms.
//
// stream: on the stream socket (ReportStream*), instead of the datagram
// socket a client uses by default.
func (m *measurer) report(ctx context.Context, i int, keep, stream bool) error {
	all := m.c.all()
	cl := m.cl
	cause := fmt.Sprintf("bench-%d-%d", m.run, i)
	if stream {
		cl = m.clS
		cause += "-s"
	}
	var res *api.ReportResult
	ss, t0, t0wall, ret, err := m.do(ctx, all, "alarm", alarmEntity, cause, func(ctx context.Context) (err error) {
		res, err = cl.Report(ctx, alarmEntity, cause, client.SevMajor)
		return err
	})
	if err != nil {
		return m.fail(fmt.Sprintf("fault report sample %d (stream %v; %+v)", i, stream, res), err)
	}
	if keep && stream {
		_, last := span(ss)
		m.res.ReportStream = append(m.res.ReportStream, time.Duration(last-t0))
		m.res.ReportStreamWritten = append(m.res.ReportStreamWritten, time.Duration(lastWritten(ss)-t0wall))
	} else if keep {
		_, last := span(ss)
		raisedAt := ss[0].stamp // the master's decision: the same in every copy
		m.res.Report = append(m.res.Report, time.Duration(last-t0))
		m.res.ReportReturn = append(m.res.ReportReturn, ret)
		m.res.ReportToMaster = append(m.res.ReportToMaster, time.Duration(raisedAt-t0wall))
		m.res.ReportFromMaster = append(m.res.ReportFromMaster, time.Duration(lastWall(ss)-raisedAt))
		m.res.ReportWritten = append(m.res.ReportWritten, time.Duration(lastWritten(ss)-t0wall))
		m.res.ReportFromMasterWritten = append(m.res.ReportFromMasterWritten, time.Duration(lastWritten(ss)-raisedAt))
	}
	m.pause()
	// Clear it, and wait until it is gone everywhere.
	_, _, _, _, err = m.do(ctx, all, "noalarm", alarmEntity, cause, func(ctx context.Context) error {
		_, err := cl.Clear(ctx, alarmEntity, cause)
		return err
	})
	if err != nil {
		return m.fail(fmt.Sprintf("clear after raise sample %d", i), err)
	}
	return nil
}

// down takes one down-propagation sample: SetState(down) of an entity the
// client's node owns, timed from the master's decision; then up again.
func (m *measurer) down(ctx context.Context, i int, keep bool) error {
	all := m.c.all()
	for _, st := range []client.State{client.StateDown, client.StateUp} {
		var res *api.ReportResult
		ss, t0, _, _, err := m.do(ctx, all, "state", downEntity, string(st), func(ctx context.Context) (err error) {
			res, err = m.cl.SetState(ctx, downEntity, st)
			return err
		})
		if err != nil {
			return m.fail(fmt.Sprintf("set %s sample %d (%+v)", st, i, res), err)
		}
		if keep && st == client.StateDown {
			first, last := span(ss)
			at := ss[0].stamp // ChangedAt: the master's decision
			m.res.Down = append(m.res.Down, time.Duration(lastWall(ss)-at))
			m.res.DownFirst = append(m.res.DownFirst, time.Duration(firstWall(ss)-at))
			m.res.DownSpread = append(m.res.DownSpread, time.Duration(last-first))
			m.res.DownTotal = append(m.res.DownTotal, time.Duration(last-t0))
			m.res.DownWritten = append(m.res.DownWritten, time.Duration(lastWritten(ss)-at))
		}
		m.pause()
	}
	return nil
}

// kills takes count failure-detection samples into into: sig (SIGSTOP: a
// silent process, judged at the bound; SIGKILL: a process's end, seen by
// the exit watch) to a non-master (to the master when ofMaster is set),
// down in every survivor's segment, the victim killed (if stopped) and
// restarted, the cluster re-formed.
func (m *measurer) kills(ctx context.Context, ofMaster bool, sig syscall.Signal, count int, into *[]Kill) error {
	c := m.c
	if count == 0 {
		return nil
	}
	what := map[bool]string{false: "kill", true: "failover"}[ofMaster]
	how := "kill -9"
	if sig == syscall.SIGSTOP {
		what, how = "stop "+what, "SIGSTOP"
	}
	m.logf("%d %s repetitions of the %s (bound %v)", count, how, map[bool]string{false: "non-masters", true: "master"}[ofMaster], m.res.Bound)
	next := 0
	for k := 0; k < count; k++ {
		master, err := c.waitFormed(ctx, 20*time.Second)
		if err != nil {
			return err
		}
		victim := master
		if !ofMaster {
			var candidates []int
			for _, i := range c.all() {
				if i != master {
					candidates = append(candidates, i)
				}
			}
			victim = candidates[next%len(candidates)]
			next++
		}
		var survivors []int
		for _, i := range c.all() {
			if i != victim {
				survivors = append(survivors, i)
			}
		}
		// The bound the victim is judged at: the master's, which decides
		// its down; of the master, whichever survivor takes over decides,
		// so the widest of theirs.
		deciders := []int{master}
		if ofMaster {
			deciders = survivors
		}
		bound, err := c.boundOf(ctx, deciders, victim)
		if err != nil {
			return err
		}
		pid := c.nodes[victim].cmd.Process.Pid
		ss, t0, t0wall, _, err := m.do(ctx, survivors, "state", fmt.Sprintf("node/%d", victim), "down", func(context.Context) error {
			return syscall.Kill(pid, sig)
		})
		if sig != syscall.SIGKILL {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		<-c.nodes[victim].done
		if err != nil {
			if err := m.fail(fmt.Sprintf("%s %d of node %d", what, k, victim), err); err != nil {
				return err
			}
		} else {
			first, last := span(ss)
			at := ss[0].stamp
			lastNode := 0
			for _, s := range ss {
				if s.mono == last {
					lastNode = s.obs + 1
				}
			}
			kl := Kill{
				Victim: victim, Master: master, NewMaster: c.masterSeenBy(survivors[0]),
				Detect:     time.Duration(last - t0),
				ToDecision: time.Duration(at - t0wall),
				Propagate:  time.Duration(lastWall(ss) - at),
				Spread:     time.Duration(last - first),
				Bound:      bound,
				Last:       lastNode,
				SinceStart: time.Duration(t0 - c.nodes[lastNode].started),
				Written:    time.Duration(lastWritten(ss) - t0wall),
			}
			*into = append(*into, kl)
			widened := ""
			if bound != m.res.Bound {
				widened = fmt.Sprintf("; its bound widened to %v by a false down", bound)
			}
			m.logf("  %s %d: node %d (master %d) down everywhere after %v (decision by %d at %v, then %v; spread %v, last node %d, started %v before%s)",
				what, k+1, victim, master, kl.Detect.Round(time.Microsecond), kl.NewMaster, kl.ToDecision.Round(time.Microsecond),
				kl.Propagate.Round(time.Microsecond), kl.Spread.Round(time.Microsecond), kl.Last, kl.SinceStart.Round(time.Millisecond), widened)
		}
		// Restart it and wait until it is back everywhere.
		if err := c.start(victim); err != nil {
			return err
		}
		octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
		err = c.open(octx, victim)
		ocancel()
		if err != nil {
			return err
		}
		if err := m.o.open([]int{victim}, c.paths([]int{victim}), c.pids([]int{victim}), 10*time.Second); err != nil {
			return err
		}
		if _, err := c.waitFormed(ctx, 20*time.Second); err != nil {
			return err
		}
		// Let the restarted node settle (it has just re-synchronised).
		time.Sleep(10 * m.cfg.Interval)
	}
	return nil
}

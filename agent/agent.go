// Package agent is the fmagent daemon: the thin I/O shell around the pure
// protocol core (package agent/core). Run opens the two networks, the
// shared-memory segment, the API socket, the process watcher, the metrics
// endpoint and the watchdog, feeds the core with packets, time and local
// requests, and carries out what the core's Ready asks for.
//
// # One mutex
//
// The core (a *core.Node) is guarded by one mutex, agent.mu, and so is
// everything the shell does with a Ready (the unicast address book, the
// shared-memory writer, the waiting API calls, the watchers). A mutex rather
// than one owning goroutine because the receive path must not hop through a
// channel: each receive goroutine reads a batch with recvmmsg into its own
// preallocated buffers, takes the lock, Steps every datagram and handles
// each Ready before the next Step (a Ready's packet data is only valid until
// the next call into the core), and releases it. The lock is held for
// microseconds (an HMAC check, a few table updates, a sendmmsg, a
// shared-memory commit); the one slow thing under it is the rare persist
// of the membership generation, which must complete before anything else of
// that Ready is sent (an fsync; a membership change happens a few times in a
// cluster's life). A single owning goroutine would add a channel send and a
// goroutine wake-up (several microseconds, an allocation-free but
// scheduler-bound hop) to every packet, which is what the down-propagation
// budget (DESIGN §6) cannot afford.
//
// The mutex inherits priority (internal/pimutex, a PI futex): the real-time
// loop takes it at every wake-up, and the API, the savers and the metrics
// take it on threads at the normal policy. A holder preempted (by a CPU
// hog, or by other real-time threads) kept the loop waiting 2–13 ms; now,
// while the loop waits, the holder runs at the loop's priority, and the
// lock goes to the loop first when it is released. A goroutine stays on
// its thread while it holds the lock, and must unlock it itself.
//
// Goroutines: the real-time loop (rtloop.go: one locked OS thread at
// SCHED_FIFO that receives from the four sockets, Ticks at the core's
// deadlines and carries out every Ready), the process-exit loop, the
// watchdog kicker, the saver (membership fsyncs) and the bulk sender
// (snapshot bursts), both off the lock, the API server and, if configured,
// the metrics server.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/plugin"
	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/daemon"
	"github.com/fmagent/fmagent/hooks"
	"github.com/fmagent/fmagent/internal/pimutex"
	"github.com/fmagent/fmagent/metrics"
	"github.com/fmagent/fmagent/persist"
	"github.com/fmagent/fmagent/procwatch"
	"github.com/fmagent/fmagent/sdnotify"
	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/transport"
	"github.com/fmagent/fmagent/watchdog"
	"github.com/fmagent/fmagent/wire"
)

// shmCreateError is the start's error for a segment shmem.Create refused.
// The segment is allocated whole at start, so one that does not fit in
// its filesystem is refused with ENOSPC: it names the settings that size
// it.
func shmCreateError(err error, cfg *config.Config) error {
	if errors.Is(err, unix.ENOSPC) {
		return fmt.Errorf("agent: shared memory: %w; [shm] entities = %d and events = %d do not fit in the filesystem of %s (a smaller table, or a larger tmpfs)",
			err, cfg.Shm.Entities, cfg.Shm.Events, cfg.ShmPath())
	}
	return fmt.Errorf("agent: shared memory: %w", err)
}

// testBind, if set, is node's network in place of the multicast transport
// (tests that are not about sockets: a transport/bindtest fake).
var testBind func(node uint32) transport.Bind

// MinKeyLen is the shortest key file accepted.
const MinKeyLen = config.MinKeyLen

// Tunables; variables so that tests can shorten them.
var (
	// requestTimeout bounds a write request that waits for the master (for
	// a master to exist, then for its answer), whatever the client's own
	// deadline.
	requestTimeout = 5 * time.Second
	// shutdownTimeout bounds the whole shutdown.
	shutdownTimeout = 3 * time.Second
	// watchBuffer is the per-watcher event buffer; a watcher further behind
	// than that is dropped.
	watchBuffer = 1024
)

// recvBatch is the number of datagrams one ReadBatch may return.
const recvBatch = 32

// Run runs the agent until ctx is done, then shuts it down cleanly (it says
// goodbye to its peers, so they mark it down at once) and returns nil. It
// returns an error if the agent cannot start, or if the API server fails
// (then after shutting down the rest).
//
// A nil cfg is config.Default() with AllowAlone set: a single-node cluster
// on loopback.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	return RunReloadable(ctx, cfg, log, nil)
}

// agent is one running node.
type agent struct {
	cfg *config.Config
	log *slog.Logger

	// Set at start, read-only afterwards.
	self     wire.NodeID
	stateDir string
	tr       transport.Bind // the multicast transport; a bindtest fake in tests
	pw       *procwatch.Watcher
	// The watchdog guard and the loops' health (guard.go), the daemon
	// supervisor (daemons.go).
	guard     *watchdog.Guard
	wdDev     *watchdog.Device
	health    *watchdog.Health
	hRT       *watchdog.Loop
	hPublish  *watchdog.Loop
	hProc     *watchdog.Loop
	hAPI      *watchdog.Loop
	apiEvery  time.Duration // how often apiProbe asks (apiProbeEvery)
	sup       *daemon.Supervisor
	escalated chan error
	// notDurable is set (mu held) when a new incarnation or epoch could
	// not be made durable (failStop): from then on nothing is sent or
	// published, and fatal tells run to stop.
	notDurable error
	fatal      chan error
	lastFence  core.FenceStatus // the guard's last read of the fence decision (guard goroutine only)
	srv        *api.Server
	ln         *net.UnixListener
	msrv       *metrics.Server
	reg        *metrics.Registry
	m          *agentMetrics
	// reload brings new configurations (SIGHUP); inForce is what was
	// applied of them (reload.go). Used by run's goroutine only.
	reload   <-chan *config.Config
	inForce  *config.Config
	healthMu sync.Mutex
	healthz  health

	// mu guards the core and everything below it.
	mu       pimutex.Mutex
	core     *core.Node
	stopping bool
	snd      transport.BindSender
	shm      *shmem.Writer
	addrs    [wire.NumNets]map[wire.NodeID]netip.AddrPort
	waiters  map[uint64]chan core.Result
	seqWait  []seqWaiter
	watchers map[*watcher]struct{}
	shadow   map[uint64]shadow   // what is published in shared memory
	seen     map[uint64]struct{} // scratch: IDs published in this Ready
	procs    map[uint64]string   // process-tied entity ID -> name
	// Published header state.
	pubMaster wire.NodeID
	pubEpoch  uint64
	pubStale  bool
	pubInit   bool
	// masterCh is closed while a master is known, open while there is none.
	masterCh chan struct{}
	saveq    chan core.Persist     // states saved off the lock (saverLoop)
	bg       *transport.Background // writes the table and owned files off the loop's thread (nil: not started)
	// bgMembers writes the membership file (saverLoop): a thread of its
	// own, so that a membership save a busy disk keeps waiting does not
	// hold a table save a client's write waits for (nil: not started).
	bgMembers *transport.Background
	saverWG   sync.WaitGroup
	bulkq     chan *bulkJob // snapshot bursts sent off the lock (bulkLoop)
	bulkFree  chan *bulkJob // jobs sent, for queueBulk to fill again
	saveMu    sync.Mutex    // orders the state file's saves (save)
	// durableInc and durableEp: what the state file holds for certain (the
	// last save that succeeded; every save of it is synced): a Ready that
	// carries no more than them need not wait for a save (mustSaveFirst).
	// The incarnation is the reserve's end (persist.ReserveIncarnations);
	// neither ever goes back. Written under saveMu.
	durableInc atomic.Uint64
	durableEp  atomic.Uint64
	scratch    shmem.Entity
	events     []api.Event   // scratch for watcher events
	evlog      eventLog      // rate-limited and aggregated log lines (logevents.go)
	late       lateLog       // the real-time loop's late ticks, for lateLogger (rtlate.go)
	lateTrace  *lateTracer   // [realtime] trace_dir's flight recorder (nil: none); lateLogger's
	fit        profileFit    // whether the machine holds the profile (profilefit.go)
	rtWaited   time.Duration // the real-time loop's lock waits since its last wake-up (its goroutine's only)
	// rtNext is the deadline the real-time loop waits for (under mu): a
	// Submit off the loop that needs an earlier one wakes the loop
	// (submitOffLoop).
	rtNext  time.Time
	journal journal // history, resumable watches, hook feed (journal.go)
	hooks   *hooks.Runner

	// What the real-time loop hands to the agent's other threads once the
	// table's readers have had the CPUs (handOffQuiet). Under mu.
	lastPub        time.Time    // the segment's last commit
	pendingSave    core.Persist // the latest state saveLater kept for the saver
	hasPendingSave bool
	handOffSince   time.Time // when a hand-off was first held back (zero: none is)

	// The real-time loop's thread while it runs: its yields' moves, for
	// the metrics.
	rtThread atomic.Pointer[transport.Locked]

	apiSrv atomic.Pointer[api.Server] // a.srv, for the metrics goroutine

	damonSchemes atomic.Int64 // DAMON schemes the kernel runs on this host, seen at start (hostcheck.go)

	waiter    transport.BindWaiter // the real-time loop's one blocking point
	dgram     dgramSock            // the API's datagram socket, which the real-time loop reads (dgramwrite.go)
	rtPrio    int                  // SCHED_FIFO priority of the real-time loop; 0: not permitted or not asked
	exit      *exitWatch           // the connections that tell a process's end at once (exitwatch.go)
	otherNice int                  // nice value of the other threads (SetProcessNice); 0: left alone
	childNice int                  // nice value of the process before; its children get it (hooks)
	rxDrops   atomic.Uint64        // the transport's receive drops when last looked (rtloop.go: core.Deafened)
	memLocked bool                 // mlockall succeeded
	pinned    []int                // the CPUs every thread is pinned to (realtime.cpus); nil: not pinned
	rtDone    chan struct{}        // closed when the real-time loop has returned
	wg        sync.WaitGroup

	tsave    tableSaver // the table on disk (tablesave.go)
	owned    ownedSet   // what this node registered, for a restarted agent to adopt (adopt.go)
	startInc uint64     // the incarnation this agent started with
	// peerLimitLogged: when the peer limit was last logged (recv loops, under mu).
	peerLimitLogged time.Time
}

type seqWaiter struct {
	seq uint64
	ch  chan struct{}
}

// start opens everything; on error the caller closes what was opened.
func (a *agent) start() error {
	cfg := a.cfg
	a.self = wire.NodeID(cfg.NodeID)
	a.stateDir = cfg.Paths.StateDir
	a.waiters = make(map[uint64]chan core.Result)
	a.watchers = make(map[*watcher]struct{})
	a.shadow = make(map[uint64]shadow)
	a.seen = make(map[uint64]struct{})
	a.procs = make(map[uint64]string)
	a.masterCh = make(chan struct{})
	a.journal.start(time.Now())
	a.startHooks()
	for i := range a.addrs {
		a.addrs[i] = make(map[wire.NodeID]netip.AddrPort)
	}

	if err := a.rtSetup(); err != nil {
		return err
	}
	key, acceptKeys, open, err := cfg.Keys()
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	switch {
	case open && cfg.Insecure:
		a.log.Warn("insecure = true and no key_file: packets are NOT authenticated; anyone who can reach the networks can forge masters, alarms and downs. Write a key with 'fmagent -genkey FILE' and set key_file")
	case open:
		a.log.Warn("no key_file: every network is loopback, so only local processes can reach the cluster, and packets are not authenticated against them. Write a key with 'fmagent -genkey FILE' and set key_file")
	case len(acceptKeys) > 0:
		a.log.Warn("key change-over in progress: also accepting the keys of accept_key_files; remove them once every node seals with key_file", "accept_key_files", len(acceptKeys))
	}

	inc, err := persist.NextIncarnation(a.stateDir, persist.ReserveIncarnations)
	a.durableInc.Store(inc + persist.ReserveIncarnations)
	a.saveq = make(chan core.Persist, 1)
	a.bulkq = make(chan *bulkJob, 4)
	a.bulkFree = make(chan *bulkJob, cap(a.bulkq)+1)
	if err != nil {
		return fmt.Errorf("agent: state directory %s: %w", a.stateDir, err)
	}
	st, err := persist.Load(a.stateDir)
	if err != nil {
		return fmt.Errorf("agent: state directory %s: %w", a.stateDir, err)
	}
	a.durableEp.Store(st.Epoch)
	members := make([]wire.NodeID, len(st.Members))
	for i, m := range st.Members {
		members[i] = wire.NodeID(m)
	}

	specs := make([]plugin.Spec, len(cfg.Plugins))
	for i, p := range cfg.Plugins {
		specs[i] = plugin.Spec{Name: p.Name, Args: p.Args}
	}
	chain, err := plugin.NewChain(specs)
	if err != nil {
		return fmt.Errorf("agent: plugin chain: %w", err)
	}

	// max_alarms is the one alarm limit: the core's table refuses more, the
	// same way on every node, and config refuses a value above what a
	// shared-memory slot holds (config.MaxMaxAlarms == shmem.MaxAlarms).
	maxAlarms := cfg.MaxAlarms

	now := time.Now()
	ccfg := core.Config{
		Node:         wire.NodeID(cfg.NodeID),
		Cluster:      cfg.ClusterID,
		Key:          key,
		AcceptKeys:   acceptKeys,
		Priority:     cfg.Priority,
		Eligible:     cfg.Eligible,
		Interval:     cfg.Timing.Interval,
		Misses:       cfg.Timing.Misses,
		StaleTimeout: cfg.Timing.StaleTimeout,
		Incarnation:  inc,
		Generation:   st.Generation,
		Epoch:        st.Epoch,
		EpochExact:   st.EpochExact,
		EpochReserve: epochReserve,
		Members:      members,
		AllowAlone:   cfg.AllowAlone,
		MaxAlarms:    maxAlarms,
		// The master creates no more entities than shared memory holds,
		// nor more than entities_per_owner for one node's clients.
		MaxEntities:         cfg.Shm.Entities,
		MaxEntitiesPerOwner: cfg.Shm.EntitiesPerOwner,
		Chain:               chain,
		Version:             agentVersion(),
	}
	if err := ccfg.Validate(); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.core = core.New(ccfg, now)
	a.initTableSaver()
	a.initOwned()
	a.startInc = inc
	a.log.Info("starting", "node", cfg.NodeID, "cluster", cfg.ClusterID, "incarnation", inc,
		"generation", st.Generation, "members", fmt.Sprint(st.Members), "priority", cfg.Priority,
		"eligible", cfg.Eligible, "interval", cfg.Timing.Interval, "misses", cfg.Timing.Misses,
		"detection", cfg.Timing.Detection(), "allow_alone", cfg.AllowAlone)

	var tc transport.Config
	for i, n := range cfg.Networks {
		tc.Nets[i] = transport.NetConfig{
			Interface: n.Interface, Group: n.Group, Port: n.Port, HeartbeatPort: n.HeartbeatPort,
			TTL: n.TTL, Loopback: n.Loopback, Source: n.Source,
			ListenTCP: wire.Net(i) == wire.NetA, // the exit watch's listener (exitwatch.go)
		}
	}
	if testBind != nil {
		a.tr = testBind(cfg.NodeID)
	} else if a.tr, err = transport.OpenBind(tc); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.snd = a.tr.NewSender()
	if a.waiter, err = a.tr.NewWaiter(); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.holdP()
	for n := wire.Net(0); n < wire.NumNets; n++ {
		a.log.Info("network", "net", netName(n), "interface", cfg.Networks[n].Interface,
			"group", a.tr.Group(n).String(), "unicast", a.tr.LocalAddr(n).String())
	}

	a.openExitWatch(key, acceptKeys)

	a.shm, err = shmem.Create(cfg.ShmPath(), shmem.Options{NodeID: wire.NodeID(cfg.NodeID),
		Capacity: cfg.Shm.Entities, EventRingSize: cfg.Shm.Events})
	if err != nil {
		return shmCreateError(err, cfg)
	}
	if was := a.shm.ReplacedForeign(); was != "" {
		a.log.Warn("shared memory: replaced a file at the segment's path that this agent did not create (never opened as a segment)",
			"path", cfg.ShmPath(), "file", was)
	}

	if a.pw, err = procwatch.New(); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.pw.MaxProcs, a.pw.MaxKeys = maxWatchedProcs, maxProcRegistrations

	a.reg = metrics.NewRegistry()
	a.m = newMetrics(a.reg, a)

	if err := a.openGuard(); err != nil {
		return err
	}
	a.escalated = make(chan error, 1)
	a.fatal = make(chan error, 1)
	// Always, even with no [[daemons]]: a reload may add some.
	if a.sup, err = daemon.New(cfg.NodeID, cfg.Daemons, a.stateDir, a.log.With("part", "daemons")); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.sup.StartProcess = a.startChild

	auth, err := newAuthorizer(cfg.API)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if a.ln, err = listenAPI(cfg.Paths.Socket, cfg.API, a.log); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.srv = &api.Server{Handler: &handler{a}, Authorizer: auth, Log: a.log.With("part", "api"),
		MaxInFlight: cfg.API.MaxInFlight, Limits: apiLimits(cfg.API)}
	a.apiSrv.Store(a.srv)
	if err := a.openDgram(); err != nil {
		return fmt.Errorf("agent: API datagram socket: %w", err)
	}

	// Last: a scrape reads what start sets (the guard, the core's fence
	// decision, the supervisor) from the server's goroutines, so the
	// endpoint opens only once start has written all of it.
	if err := a.startMetrics(cfg.Metrics); err != nil {
		// Metrics are not worth failing over: the node still works.
		a.log.Warn("metrics endpoint not started", "listen", cfg.Metrics.Listen, "err", err)
	}
	return nil
}

// loadKey reads one key file (config.ReadKey: owner-only, long enough).
// "" is no key: nil, nil (whether that is allowed is config.Keys's call).
func loadKey(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	return config.ReadKey(path)
}

// run starts the goroutines, serves until ctx is done or a part fails, and
// shuts down.
func (a *agent) run(ctx context.Context) error {
	done := make(chan struct{})
	a.rtDone = make(chan struct{})
	a.startBackground()
	a.goLoop(func() {
		defer close(a.rtDone)
		a.rtLoop()
	})
	a.saverWG.Add(1)
	go func(q <-chan *bulkJob) {
		defer a.saverWG.Done()
		a.bulkLoop(q)
	}(a.bulkq)
	a.saverWG.Add(1)
	go func(q <-chan core.Persist) {
		defer a.saverWG.Done()
		a.saverLoop(q)
	}(a.saveq)
	a.goLoop(a.procLoop)
	a.goLoop(func() { a.exitListen(done) })
	a.goLoop(func() { a.exitDialLoop(done) })
	a.goLoop(func() { a.tableSaverLoop(done) })
	a.goLoop(func() { a.adoptLoop(done) })
	serveErr := make(chan error, 1)
	go func() { serveErr <- a.srv.Serve(a.ln) }()
	a.goLoop(func() { a.guard.Run(done) })
	a.goLoop(func() { a.apiProbe(done) })
	a.goLoop(func() { a.bootAlarm(done) })
	a.goLoop(func() { a.keepNice(done) })
	a.goLoop(func() { a.lateLogger(done) })
	if st := a.guard.Status(); len(st.Kickers) > 0 {
		a.log.Info("watchdog", "kicking", st.Kickers, "timeout", st.Timeout, "kick_every", st.Period)
	} else {
		a.log.Info("watchdog: none configured; the loops' health is still checked", "every", st.Period)
	}
	if a.sup != nil {
		a.goLoop(func() { a.daemonEvents(done) })
		if err := a.sup.Start(); err != nil {
			a.log.Error("daemon supervisor", "err", err)
		}
	}

	if testHookStarted != nil {
		testHookStarted(a)
	}
	if _, err := sdnotify.Ready(); err != nil {
		a.log.Warn("sd_notify READY", "err", err)
	}
	a.log.Info("serving", "socket", a.cfg.Paths.Socket, "shm", a.cfg.ShmPath())

	var err error
wait:
	for {
		select {
		case c := <-a.reload:
			a.applyReload(c)
		case <-ctx.Done():
			a.log.Info("shutting down")
			break wait
		case err = <-serveErr:
			err = fmt.Errorf("agent: API server: %w", err)
			a.log.Error("shutting down after a failure", "err", err)
			break wait
		case err = <-a.escalated:
			a.log.Error("shutting down: node down by escalation", "err", err)
			break wait
		case err = <-a.fatal:
			a.log.Error("shutting down without a goodbye: this node cannot keep what its packets would promise", "err", err)
			break wait
		}
	}
	a.shutdown(done)
	return err
}

func (a *agent) goLoop(fn func()) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		fn()
	}()
}

// shutdown says goodbye, stops every part and waits (bounded) for the
// goroutines.
func (a *agent) shutdown(done chan struct{}) {
	deadline := time.Now().Add(shutdownTimeout)
	a.mu.Lock()
	a.stopping = true
	a.core.Shutdown(time.Now())
	// The one Ready not left to the real-time loop (poke): the loop ends
	// when it sees stopping, so the goodbye is sent here.
	a.handleReady()
	saidGoodbye := a.notDurable == nil // else nothing was sent (failStop)
	a.mu.Unlock()
	a.closeExitWatch(saidGoodbye)
	close(done)
	if _, err := sdnotify.Stopping(); err != nil {
		a.log.Warn("sd_notify STOPPING", "err", err)
	}

	// The API: cancels every request in progress (waiting writes return,
	// watches end).
	sctx, cancel := context.WithDeadline(context.Background(), deadline.Add(-time.Second))
	if err := a.srv.Shutdown(sctx); err != nil {
		a.log.Warn("API server shutdown", "err", err)
	}
	cancel()
	a.mu.Lock()
	for w := range a.watchers {
		a.dropWatcher(w, api.Errorf(api.ErrUnavailable, "the agent is shutting down"))
	}
	a.mu.Unlock()

	a.waiter.Stop() // ends the real-time loop
	select {
	case <-a.rtDone:
	case <-time.After(time.Until(deadline)):
	}
	a.closeDgram() // after the loop, its reader
	a.waiter.Close()
	a.tr.Close()
	a.pw.Close() // ends the process loop
	if a.sup != nil {
		a.sup.Close() // the daemons keep running: the next agent adopts them
	}
	wait := make(chan struct{})
	go func() {
		a.wg.Wait()
		close(wait)
	}()
	select {
	case <-wait:
	case <-time.After(time.Until(deadline)):
		a.log.Warn("shutdown: some goroutines did not stop in time")
	}
	// The last membership state kept or queued (after the goodbye's Ready).
	a.mu.Lock()
	if a.hasPendingSave {
		a.queueSave(a.pendingSave)
		a.hasPendingSave = false
	}
	close(a.saveq)
	a.saveq = nil
	close(a.bulkq)
	a.bulkq = nil
	a.mu.Unlock()
	a.saverWG.Wait()
	a.saveExactEpoch()
	for _, bg := range []*transport.Background{a.bg, a.bgMembers} {
		if bg != nil {
			bg.Stop() // after the savers: what they still give it runs on their threads
		}
	}
	a.closeAll()
	a.hooks.Close()
	a.log.Info("stopped")
}

// closeAll closes what start opened (idempotent parts only; the transport
// and the process watcher may already be closed).
func (a *agent) closeAll() {
	if a.ln != nil && a.srv == nil {
		a.ln.Close()
	}
	if a.waiter != nil {
		a.waiter.Stop()
		if a.rtDone == nil { // never started
			a.closeDgram()
			a.waiter.Close()
		}
	}
	if a.tr != nil {
		a.tr.Close()
	}
	if a.pw != nil {
		a.pw.Close()
	}
	if a.exit != nil && a.exit.hold != nil {
		// After closeExitWatch (shutdown): the goodbyes it asked for are
		// written first. Not under mu: the holder's events take it.
		a.exit.hold.Close()
	}
	a.mu.Lock()
	if a.shm != nil {
		if err := a.shm.Close(); err != nil {
			a.log.Warn("closing shared memory", "err", err)
		}
		if err := a.shm.Unlink(); err != nil {
			a.log.Warn("removing shared memory", "err", err)
		}
		a.shm = nil
	}
	a.mu.Unlock()
	if a.msrv != nil {
		a.msrv.Close()
	}
	if a.sup != nil {
		a.sup.Close()
	}
	if a.guard != nil {
		// A clean stop disarms the device (magic close).
		if err := a.guard.Close(); err != nil {
			a.log.Warn("closing the watchdog", "err", err)
		}
	}
}

func netName(n wire.Net) string {
	if n < wire.NumNets {
		return string(rune('a' + n))
	}
	return fmt.Sprintf("#%d", n)
}

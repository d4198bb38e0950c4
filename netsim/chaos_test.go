package netsim

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	flagSeed  = flag.Uint64("seed", 0, "replay one chaos seed (with its trace)")
	flagSeeds = flag.Int("seeds", 0, "number of chaos seeds (default 500, or $FMAGENT_SEEDS)")
	flagFrom  = flag.Uint64("seedfrom", 1, "first chaos seed of a -seeds run (to run a long range in chunks)")
	flagLines = flag.Int("tracelines", 200, "trace lines shown for a failing -seed replay (0: all)")
	// The scenario's shape: the cluster's size is drawn from
	// [minnodes, maxnodes], and the actions are many before the final heal.
	// A longer list (-actions 20 -maxnodes 3: longChaos) reaches states
	// the default rarely does, such as a node restarted twice between two
	// masters.
	flagMinNodes = flag.Int("minnodes", DefaultChaos.MinNodes, "chaos: fewest nodes")
	flagMaxNodes = flag.Int("maxnodes", DefaultChaos.MaxNodes, "chaos: most nodes")
	flagActions  = flag.Int("actions", DefaultChaos.Actions, "chaos: actions before the final heal")
	// -maxalarms 2: the entities' alarms fill up, and raises displace
	// the least severe (fullChaos).
	flagMaxAlarms = flag.Int("maxalarms", 0, "chaos: alarms per entity (0: the core's default, never full here)")
	// -maxtombs 1: the tables forget tombstones almost at once.
	flagMaxTombs = flag.Int("maxtombs", 0, "chaos: tombstones of each kind a table keeps (0: the table's default, never full here)")
)

// chaosOptions is the scenario's shape the flags ask for, and the flags to
// replay a seed of it.
func chaosOptions() (ChaosOptions, string) {
	co := DefaultChaos
	co.MinNodes, co.MaxNodes, co.Actions, co.MaxAlarms = *flagMinNodes, *flagMaxNodes, *flagActions, *flagMaxAlarms
	co.MaxTombstones = *flagMaxTombs
	return co, shapeFlags(co)
}

// shapeFlags: the flags that give co's shape ("" for the default).
func shapeFlags(co ChaosOptions) string {
	var f string
	if co.MinNodes != DefaultChaos.MinNodes {
		f += fmt.Sprintf(" -minnodes %d", co.MinNodes)
	}
	if co.MaxNodes != DefaultChaos.MaxNodes {
		f += fmt.Sprintf(" -maxnodes %d", co.MaxNodes)
	}
	if co.Actions != DefaultChaos.Actions {
		f += fmt.Sprintf(" -actions %d", co.Actions)
	}
	if co.MaxAlarms != DefaultChaos.MaxAlarms {
		f += fmt.Sprintf(" -maxalarms %d", co.MaxAlarms)
	}
	if co.MaxTombstones != DefaultChaos.MaxTombstones {
		f += fmt.Sprintf(" -maxtombs %d", co.MaxTombstones)
	}
	return f
}

func chaosSeeds() int {
	if *flagSeeds > 0 {
		return *flagSeeds
	}
	if v, err := strconv.Atoi(os.Getenv("FMAGENT_SEEDS")); err == nil && v > 0 {
		return v
	}
	return 500
}

// TestChaos runs the randomized chaos scenario over many seeds (2 to 9
// nodes, crashes, restarts, pauses, partitions, cut links, loss, clients
// raising, clearing, registering, unregistering and setting state) and checks every invariant after every step. A failure names
// the seed, the invariant and the command that replays it.
func TestChaos(t *testing.T) {
	shape, flags := chaosOptions()
	if *flagSeed != 0 {
		co := shape
		co.Trace = true
		res, s, err := RunChaos(*flagSeed, co)
		t.Logf("seed %d: %d nodes, actions %v", res.Seed, res.Nodes, res.Actions)
		traceIfAsked(*flagSeed, s) // -fulltrace (trace_test.go)
		if err != nil {
			lines := *flagLines
			if lines <= 0 {
				lines = int(^uint(0) >> 1)
			}
			t.Fatalf("%v\ntrace (last %d lines):\n%s", err, *flagLines, s.Trace(lines))
		}
		return
	}
	n := chaosSeeds()
	var next atomic.Uint64
	var mu sync.Mutex
	var failed []string
	var crashes, kills, checked, acked atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seed := *flagFrom - 1 + next.Add(1)
				if seed >= *flagFrom+uint64(n) {
					return
				}
				res, _, err := RunChaos(seed, shape)
				if n >= 2000 && (seed-*flagFrom+1)%1000 == 0 {
					// Long runs say how far they are (go test prints
					// t.Logf only at the end).
					fmt.Fprintf(os.Stderr, "chaos: seed %d of %d after %v\n", seed, n, time.Since(start).Round(time.Second))
				}
				if err != nil && n >= 2000 {
					fmt.Fprintf(os.Stderr, "chaos: seed %d (%d nodes): %v\n", seed, res.Nodes, err)
				}
				crashes.Add(int64(res.Crashes))
				kills.Add(int64(res.Kills))
				checked.Add(int64(res.Checked))
				acked.Add(int64(res.Acked))
				if err != nil {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("seed %d (%d nodes): %v\n    replay: go test ./netsim/ -run 'TestChaos$' -seed %d -v -args%s", seed, res.Nodes, err, seed, flags))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d seeds (%d..%d%s) in %v: %d crashes (%d of the process alone; %d checked against the detection bound), %d writes acked",
		n, *flagFrom, *flagFrom+uint64(n)-1, flags, time.Since(start).Round(time.Millisecond), crashes.Load(), kills.Load(), checked.Load(), acked.Load())
	if len(failed) > 0 {
		for i, f := range failed {
			if i == 20 {
				t.Errorf("... and %d more", len(failed)-20)
				break
			}
			t.Error(f)
		}
	}
}

// keptSeeds failed once: on the core before versioned writes (1–50: acked
// writes lost or resurrected, stale flagged early), or on the way to it (a
// restarted node's persisted epoch forcing a re-claim, a re-asserted
// registration undoing a state not yet answered, a split brain's merge).
// 2542: a write re-sent to an older epoch's master after a newer one had
// applied it; 2748: two masters of one epoch, the loser's acknowledged write
// outliving a later one of the winner's; 3887: the first fix of 2748 claimed
// above a same-epoch master before hearing a newer one; 1483: a write
// acknowledged at epoch 2 re-asserted for ever to an epoch-1 master that
// never claimed above it; 2254: a node's own later write versioned below
// its earlier one by an older master; 3118: a vice's verdict due 0.3µs
// after the heal, before any packet could cross it; 5293, 5767: a queued
// re-assertion of a registration carrying the owner's older "down" over its
// newer re-registration; 55423: an owner's re-asserted registration
// undoing its own later, acknowledged down (1497, 2150, 3054, 4129: the
// first fix of it); 177, 248: an owner's word of a fenced node's earlier
// life, decided again as its new life's, marked with the request a second
// time (request-applied-once's first runs). They run whatever -seeds says.
var keptSeeds = []uint64{1, 4, 5, 11, 16, 17, 20, 21, 22, 23, 24, 25, 26, 27, 39, 40, 46, 47, 48, 49, 50,
	72, 76, 99, 174, 222, 224, 388, 520, 607, 1036, 1113, 1793, 1483, 2254, 2542, 2748, 3118, 3887, 5293, 5767, 17824,
	1497, 2150, 3054, 4129, 55423, 177, 248}

// longChaos: two or three nodes through twice the default actions, where a
// node restarts, is paused and is cut off more often between two masters.
var longChaos = ChaosOptions{MinNodes: 2, MaxNodes: 3, Actions: 20}

// keptLongSeeds failed once under longChaos: 12803, an owner's up from its
// restarted agent undone by the next master (left under the old
// incarnation, found not adopted); 11046, a node that took its master back
// on one heartbeat flagged its table stale 140 ms early; 25573, the final
// check's own mistake (a registration that died with its master's reign
// outranking, by version, the owner's later word).
var keptLongSeeds = []uint64{11046, 12803, 25573}

// wideChaos: two to nine nodes through 25 actions.
var wideChaos = ChaosOptions{MinNodes: 2, MaxNodes: 9, Actions: 25}

// keptWideSeeds failed once under wideChaos: 3198, 4214 and 4326, an
// owner's up applied by both masters of a split brain, each under its own
// version, overruled by the winner's down of the owner's entities while it
// was cut off, then superseded when the owner re-asserted it under the
// loser's (older) version; 1690, a table flagged stale 910 ms after a
// transaction's commit from its master (and the check counting a packet of
// the same node's as its master's word once it followed another reign);
// 7348, a clear answered by a master the node no longer followed, never
// re-asserted to the one it did.
var keptWideSeeds = []uint64{1690, 3198, 4214, 4326, 7348}

// bigChaos: four to nine nodes through 30 actions.
var bigChaos = ChaosOptions{MinNodes: 4, MaxNodes: 9, Actions: 30}

// keptBigSeeds failed once under bigChaos: 5104, the check's own mistake (a
// crash of the master counted calm while its vice was dead).
var keptBigSeeds = []uint64{5104}

// deepChaos: three to five nodes through 40 actions.
var deepChaos = ChaosOptions{MinNodes: 3, MaxNodes: 5, Actions: 40}

// keptDeepSeeds failed once under deepChaos: 5813, an owner's down applied
// in a write answered "unknown entity": the registration re-asserted after
// a master change carried the unanswered down (before the answer came), and
// a second copy of the request was decided again after it. 2993, an
// owner's up, applied and its answer lost, then answered from what the
// master remembered of it after the owner's node was fenced and
// reincarnated: its entities, marked down with the fence, stayed down
// (the new life's retransmission is a new write).
var keptDeepSeeds = []uint64{5813, 2993}

// twoChaos: two nodes through the default actions.
var twoChaos = ChaosOptions{MinNodes: 2, MaxNodes: 2, Actions: DefaultChaos.Actions}

// keptTwoSeeds failed once under twoChaos: 4931 and 10270, the master's own
// request applied twice: its retry, queued behind a transaction while its
// first copy waited there too, was decided again after the first was
// answered (the master did not remember its own answers;
// request-applied-once). 867 and 1887, once the checks compared tombstones
// (TombstoneDigest): a node's own stale-cluster alarm, raised and cleared
// with no master, left a tombstone the master's table did not have.
var keptTwoSeeds = []uint64{4931, 10270, 867, 1887}

// fullChaos: the default shape with two alarms allowed per entity, so
// that the clients' raises (three causes per service, severities drawn at
// random) fill entities up and displace the least severe alarm.
var fullChaos = ChaosOptions{MinNodes: DefaultChaos.MinNodes, MaxNodes: DefaultChaos.MaxNodes, Actions: DefaultChaos.Actions, MaxAlarms: 2}

// keptFullSeeds failed once under fullChaos (-maxalarms 2): 174, 415, 570,
// 1347, 1690 and 1789, an alarm acknowledged by the losing side of a split
// brain, re-asserted to the winner whose entity was full of alarms as
// severe or more, refused as full and kept by its reporter's ledger for the
// next master change: absent from every table meanwhile, with no clear or
// displacement anyone was told of. It is now displaced on arrival.
var keptFullSeeds = []uint64{174, 415, 570, 1347, 1690, 1789}

// tightChaos: fullChaos with one alarm allowed per entity.
var tightChaos = ChaosOptions{MinNodes: DefaultChaos.MinNodes, MaxNodes: DefaultChaos.MaxNodes, Actions: DefaultChaos.Actions, MaxAlarms: 1}

// keptTightSeeds failed once under tightChaos (-maxalarms 1): 878, a
// ledger bounded to the alarm limit by severity alone, which forgot the
// raise just acknowledged and kept one another node had cleared (the
// raise was absent from every table after the next master change); 7462,
// the same bound with the table a step behind the acknowledgement, which
// forgot the raise just acknowledged; 2410 and 2701, the write checker's
// own mistake, fixed with the first: a raise of the losing reign of a
// split brain, displaced by a clear the winning reign decided before it
// was asked for but ordered after it (a higher epoch).
var keptTightSeeds = []uint64{878, 2410, 2701, 7462}

// deepTightChaos: deepChaos with one alarm allowed per entity.
var deepTightChaos = ChaosOptions{MinNodes: deepChaos.MinNodes, MaxNodes: deepChaos.MaxNodes, Actions: deepChaos.Actions, MaxAlarms: 1}

// keptDeepTightSeeds failed once under deepTightChaos: 4331 and 7516, the
// ledger's bound sparing the raise just acknowledged, an older one
// displaced since whose acknowledgement came late, and forgetting the
// newer raise that had displaced it (now it spares the newest); 3191, the
// bound guessing at the limit itself, which forgot a raise waiting to be
// re-asserted to a master restarted with an empty table (now it guesses
// only beyond twice the limit).
var keptDeepTightSeeds = []uint64{4331, 7516, 3191}

// fewTombsChaos: the default shape with four tombstones of each kind kept
// per table (thousands in the agent), so that clears and unregisters are
// forgotten by the tables almost at once.
var fewTombsChaos = ChaosOptions{MinNodes: DefaultChaos.MinNodes, MaxNodes: DefaultChaos.MaxNodes, Actions: DefaultChaos.Actions, MaxTombstones: 4}

// keptFewTombsSeeds failed once under fewTombsChaos (-maxtombs 4; 20 of
// the first 1,500): 105, 362 and 905, another node's clear applied in
// every table while the raiser's ledger kept its raise, re-asserted after
// the next master change to a table that had forgotten the clear's
// tombstone: the alarm back in every table. The ledger now forgets what
// its own table shows superseded (ledgercover.go). 424, the last of them
// then: a raise re-asserted by a node cut off when the clear was decided,
// which the master now knows its table applied (lineage.go). 2224: a
// split brain's heal, the losing side's raise older than the winner's
// clear, which the winner's tombstone refuses; but the alarm had been
// cleared, raised and cleared again in the winner's table, and the table
// forgot the tombstone with the first clear's place in its queue
// (tombs.go: one place per alarm now, its last clear's).
var keptFewTombsSeeds = []uint64{105, 362, 905, 424, 2224}

// twoFewTombsChaos: two nodes, one tombstone of each kind kept.
var twoFewTombsChaos = ChaosOptions{MinNodes: 2, MaxNodes: 2, Actions: DefaultChaos.Actions, MaxTombstones: 1}

// keptTwoFewTombsSeeds failed once under twoFewTombsChaos (48 of the first
// 3,000): 93, 136 and 1468, as keptFewTombsSeeds' first three; 384 and
// 1633, as 424. Still failing: 9 of the first 9,000 (797, 2435, 3814, ...)
// and, under fewTombsChaos, 2 of the first 6,000 (1861, 4289): a raise of
// the losing side of a split brain, older by version than the winner's
// clear, which only its tombstone can refuse, forgotten behind newer ones
// (DESIGN §9, "It stays").
var keptTwoFewTombsSeeds = []uint64{93, 136, 1468, 384, 1633}

// TestChaosFull runs the default shape with entities' alarms full: one
// and two alarms allowed per entity, 75 seeds each (15 with -short; under
// the race detector the 2-9 node clusters make a seed costly: 400 seeds
// took 105 s). Only these shapes displace alarms: the others allow eight.
// Longer runs: go test ./netsim -run 'TestChaos$' -seeds N -args -maxalarms 1.
func TestChaosFull(t *testing.T) {
	runShapes(t, 75, tightChaos, fullChaos)
}

// runShapes runs seeds 1 to n (15 with -short) of each shape.
func runShapes(t *testing.T, n uint64, shapes ...ChaosOptions) {
	if testing.Short() {
		n = min(n, 15)
	}
	for _, shape := range shapes {
		for seed := uint64(1); seed <= n; seed++ {
			res, _, err := RunChaos(seed, shape)
			if err != nil {
				t.Errorf("seed %d (%d nodes): %v\n    replay: go test ./netsim/ -run 'TestChaos$' -seed %d -v -args%s", seed, res.Nodes, err, seed, shapeFlags(shape))
			}
		}
	}
}

// TestChaosFewTombstones runs the default shape with four tombstones kept
// per table, and two nodes with one, 40 seeds each (15 with -short; 75
// took 48 s under the race detector beside two chaos runs): the
// tables forget clears and unregisters almost at once, and no
// acknowledged clear may come back all the same (DESIGN §9, "It stays").
// Longer runs: go test ./netsim -run 'TestChaos$' -seeds N -args -maxtombs 4.
func TestChaosFewTombstones(t *testing.T) {
	runShapes(t, 40, fewTombsChaos, twoFewTombsChaos)
}

// TestChaosLong runs longChaos over a few hundred seeds (fifty with
// -short), whatever -seeds says: the shape found three faults the default
// had not in 60,000 seeds.
func TestChaosLong(t *testing.T) {
	n := uint64(300)
	if testing.Short() {
		n = 50
	}
	for seed := uint64(1); seed <= n; seed++ {
		res, _, err := RunChaos(seed, longChaos)
		if err != nil {
			t.Errorf("seed %d (%d nodes): %v\n    replay: go test ./netsim/ -run 'TestChaos$' -seed %d -v -args%s", seed, res.Nodes, err, seed, shapeFlags(longChaos))
		}
	}
}

func TestChaosKeptSeeds(t *testing.T) {
	for _, seed := range keptSeeds {
		res, _, err := RunChaos(seed, DefaultChaos)
		if err != nil {
			t.Errorf("seed %d (%d nodes): %v\n    replay: go test ./netsim/ -run 'TestChaos$' -seed %d -v", seed, res.Nodes, err, seed)
		}
	}
	for _, kept := range []struct {
		shape ChaosOptions
		seeds []uint64
	}{{longChaos, keptLongSeeds}, {wideChaos, keptWideSeeds}, {bigChaos, keptBigSeeds}, {deepChaos, keptDeepSeeds}, {twoChaos, keptTwoSeeds}, {fullChaos, keptFullSeeds}, {tightChaos, keptTightSeeds}, {deepTightChaos, keptDeepTightSeeds},
		{fewTombsChaos, keptFewTombsSeeds}, {twoFewTombsChaos, keptTwoFewTombsSeeds}} {
		for _, seed := range kept.seeds {
			res, _, err := RunChaos(seed, kept.shape)
			if err != nil {
				t.Errorf("seed %d (%d nodes): %v\n    replay: go test ./netsim/ -run 'TestChaos$' -seed %d -v -args%s", seed, res.Nodes, err, seed, shapeFlags(kept.shape))
			}
		}
	}
}

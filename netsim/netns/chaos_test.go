package netns

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/wire"
)

// `make chaos` sets these; `make test` runs the short default.
var (
	chaosDuration = flag.Duration("chaos.duration", 25*time.Second, "how long TestChaosNetns injects faults and writes")
	chaosNodes    = flag.Int("chaos.nodes", 5, "agents in TestChaosNetns")
	chaosSeed     = flag.Uint64("chaos.seed", 0, "seed of TestChaosNetns's fault schedule and writes (0: from the clock, printed)")
)

// Fault kinds the chaos run injects.
const (
	faultKill9     = "kill-9+restart"
	faultRestart   = "sigterm+restart"
	faultStop      = "sigstop+sigcont"
	faultLinkCut   = "link-cut"
	faultNodeCut   = "node-cut"
	faultPartition = "partition"
)

var faultKinds = []string{faultKill9, faultRestart, faultStop, faultLinkCut, faultNodeCut, faultPartition}

// TestChaosNetns: real agents in network namespaces on two bridges. For the
// whole run a seeded random mix of kill -9, restart, SIGSTOP/SIGCONT, link
// and node cuts, partitions and heals, while clients on every node make
// acknowledged writes of every kind (register, unregister, raise, clear,
// set state) and log each acknowledgement. At the end everything heals and
// the run checks every node's table against the acknowledged writes (the
// latest acknowledged write per entity, state and alarm wins) and that all
// digests are equal.
//
// A write whose outcome is unknown (timeout, no master, agent gone) may
// still be applied later (the agent's core retries it until a master
// answers): the key it wrote is uncertain until an acknowledged write on
// it that was sent more than settle after the unknown one; keys still
// uncertain at the end are not checked, and counted. A write refused with an error
// (not_found, limit, refused, permission_denied, collision) must not have
// been applied: the model does not change.
func TestChaosNetns(t *testing.T) {
	if skipWhy != "" {
		t.Skip(skipWhy)
	}
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	seed := *chaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	n := *chaosNodes
	if n < 3 {
		t.Fatalf("-chaos.nodes %d: at least 3", n)
	}
	duration := *chaosDuration
	if testing.Short() && !flagSet("chaos.duration") {
		// make check: a few faults, every kind of check; make test and
		// make chaos run the full length.
		duration = 6 * time.Second
	}
	t.Logf("chaos: seed %d (replay the schedule with -chaos.seed=%d), %d nodes, %v", seed, seed, n, duration)
	// The story of a failure is logged last, after the harness's log
	// dumps (cleanups run last-registered first): CI shows a failure's
	// head and tail, and the tail must be what explains it.
	var story strings.Builder
	t.Cleanup(func() {
		if story.Len() > 0 {
			t.Log("chaos: the story of the first discrepancies (ack log, each node's journal):\n" + story.String())
		}
	})
	c := newCluster(t, n)
	all := ids(1, n)
	for _, i := range all {
		c.start(i)
	}
	c.converged(all, 60*time.Second, "a formed cluster")

	logf, err := os.Create(filepath.Join(c.dir, "acks.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	m := &chaosModel{keys: map[string]*keyState{}, log: logf, start: time.Now()}

	// Writers: one per node, each owning its entities but writing through
	// any node.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 1; w <= n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			chaosWriter(c, m, w, rand.New(rand.NewPCG(seed, uint64(w))), stop)
		}()
	}

	faults := map[string]int{}
	rng := rand.New(rand.NewPCG(seed, 0))
	end := time.Now().Add(duration)
	for time.Now().Before(end) {
		kind := faultKinds[rng.IntN(len(faultKinds))]
		victim := 1 + rng.IntN(n)
		hold := time.Duration(200+rng.IntN(1800)) * time.Millisecond
		m.logf("fault %s node %d hold %v", kind, victim, hold)
		c.inject(kind, victim, hold, rng)
		faults[kind]++
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
	}
	// Heal everything, the writers still writing: they go on for a quiet
	// tail longer than settle, so that a key left uncertain by a write of
	// unknown outcome near the end of the faults gets a later acknowledged
	// write and is checked too. Then let the cluster converge, and check
	// once the adoption grace period is over (restarted agents have
	// adopted their entities).
	c.healAll()
	time.Sleep(settle + 8*time.Second)
	close(stop)
	wg.Wait()
	c.converged(all, 60*time.Second, "a converged cluster after the heal")
	time.Sleep(3 * time.Second)

	total := 0
	for _, k := range faultKinds {
		total += faults[k]
	}
	t.Logf("chaos: %d faults injected: %v", total, faults)
	t.Logf("chaos: writes acknowledged %v (of which older than a write already acknowledged on the same key, the other side of a split brain: %v), refused (not applied) %v, outcome unknown %v; ack log %s",
		m.acked, m.older, m.refused, m.unknown, logf.Name())

	// Every node's table against the model, on one converged snapshot (the
	// tables judged converged are the tables checked). On a busy machine a
	// node may still be fenced after the heal (a false down), and what it
	// owns is down until it rejoins and re-asserts it: such a transient
	// passes, and the check is taken again on a later snapshot, for up to
	// recheckFor. A lost or resurrected write does not pass with time.
	const recheckFor = 20 * time.Second
	var (
		checked, tainted, snapshots int
		bad                         []string
		tabs                        []table
		st                          map[int]api.Status
	)
	recheckUntil := time.Now().Add(recheckFor)
	for {
		snapshots++
		st, _ = c.converged(all, 60*time.Second, "a converged cluster after the adoption grace", func(tb []table, _ map[int]api.Status) bool {
			tabs = tb
			return true
		})
		checked, tainted, bad = 0, 0, nil
		for _, key := range m.sortedKeys() {
			ks := m.keys[key]
			if !ks.unsure.IsZero() {
				tainted++
				continue
			}
			checked++
			for _, tb := range tabs {
				if d := ks.check(tb); d != "" {
					bad = append(bad, fmt.Sprintf("node %d: %s: %s (last acknowledged: %s)", tb.node, key, d, ks.last))
				}
			}
		}
		if len(bad) == 0 || time.Now().After(recheckUntil) {
			break
		}
		t.Logf("chaos: snapshot %d (master %d epoch %d seq %d): %d discrepancies, first: %s; checking again", snapshots,
			st[1].Master, st[1].Epoch, st[1].TableSeq, len(bad), bad[0])
		time.Sleep(time.Second)
	}
	t.Logf("chaos: %d keys checked on each of %d nodes (entity existence, state, alarms), %d not checked (a write of unknown outcome not superseded %v later), digest %v on every node, on converged snapshot %d",
		checked, n, tainted, settle, st[1].Digest, snapshots)
	if len(bad) > 0 {
		// The history of the first discrepant entities, and the faults.
		logf.Sync()
		hist, _ := os.ReadFile(logf.Name())
		seen := map[string]bool{}
		for _, b := range bad {
			if len(seen) == 3 {
				break
			}
			ent := strings.SplitN(strings.SplitN(b, ": ", 3)[1], "#", 2)[0]
			if seen[ent] {
				continue
			}
			seen[ent] = true
			var lines []string
			for _, l := range strings.Split(string(hist), "\n") {
				if strings.Contains(l, " "+ent+" ") || strings.Contains(l, "fault ") {
					lines = append(lines, l)
				}
			}
			if len(lines) > 80 {
				lines = lines[len(lines)-80:]
			}
			fmt.Fprintf(&story, "== %s: acknowledgements (and the faults), last %d lines:\n%s\n", ent, len(lines), strings.Join(lines, "\n"))
			// Each node's journal of the entity: which change (seq, by
			// which node's report) made the table differ.
			for _, nd := range c.nodes {
				out, err := c.ctlText(nd.id, "history", "-prefix", ent, "-n", "30")
				fmt.Fprintf(&story, "== %s: node %d's journal (fmctl history -prefix %s -n 30):\n%s%v\n", ent, nd.id, ent, out, errOrEmpty(err))
			}
		}
		for _, nd := range c.nodes {
			for life := 1; life <= nd.lives; life++ {
				b, _ := os.ReadFile(c.logPath(nd, life))
				var lines []string
				for _, l := range strings.Split(string(b), "\n") {
					if strings.Contains(l, "elected") || strings.Contains(l, "following") || strings.Contains(l, "stepped") ||
						strings.Contains(l, "snapshot") || strings.Contains(l, "restored") || strings.Contains(l, "adopted") {
						lines = append(lines, l)
					}
				}
				t.Logf("chaos: node %d life %d: masters and snapshots:\n%s", nd.id, life, strings.Join(lines, "\n"))
			}
		}
		t.Errorf("chaos: %d discrepancies between acknowledged writes and the final tables:\n%s\ntables:\n%s",
			len(bad), strings.Join(first(bad, 60), "\n"), fmtTables(tabs))
	}
}

// inject applies one fault to victim, holds it, and undoes it.
func (c *cluster) inject(kind string, victim int, hold time.Duration, rng *rand.Rand) {
	c.t.Helper()
	nd := c.nodes[victim-1]
	switch kind {
	case faultKill9:
		c.kill9(victim)
		time.Sleep(hold)
		c.start(victim)
	case faultRestart:
		nd.proc.stop(5 * time.Second)
		time.Sleep(hold / 4)
		c.start(victim)
	case faultStop:
		_ = nd.proc.cmd.Process.Signal(syscall.SIGSTOP)
		time.Sleep(hold)
		_ = nd.proc.cmd.Process.Signal(syscall.SIGCONT)
	case faultLinkCut:
		net := []string{"a", "b"}[rng.IntN(2)]
		c.setLink(victim, net, false)
		time.Sleep(hold)
		c.setLink(victim, net, true)
	case faultNodeCut:
		c.setLink(victim, "a", false)
		c.setLink(victim, "b", false)
		time.Sleep(hold)
		c.setLink(victim, "a", true)
		c.setLink(victim, "b", true)
	case faultPartition:
		// victim and maybe one more on the other side.
		side := []int{victim}
		if other := 1 + rng.IntN(len(c.nodes)); other != victim && rng.IntN(2) == 0 {
			side = append(side, other)
		}
		c.moveTo("2", side...)
		time.Sleep(hold)
		c.moveTo("", side...)
	}
}

// healAll undoes anything left: every link up on the main bridges, every
// agent running and not stopped.
func (c *cluster) healAll() {
	c.t.Helper()
	for _, nd := range c.nodes {
		c.moveTo("", nd.id)
		c.setLink(nd.id, "a", true)
		c.setLink(nd.id, "b", true)
		if nd.proc == nil || nd.proc.exited() {
			c.start(nd.id)
		} else {
			_ = nd.proc.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
}

// ---- the model of acknowledged writes ----

// keyState is what the acknowledged writes say about one key: an entity
// (existence, and the state its owner set) or one alarm of an entity. Of
// two acknowledged writes on a key the one with the higher version counts
// (DESIGN §9, the consistency model), whatever the order of their
// acknowledgements: on the two sides of a split brain, a write
// acknowledged later in real time may be older in the cluster's order.
type keyState struct {
	entity   string
	cause    string // "" for the entity itself
	exists   bool   // entity registered / alarm raised
	ver      *api.WriteVersion
	state    wire.State // entity: the state set by the latest of register, up and down
	stateVer *api.WriteVersion
	sev      wire.Severity
	unsure   time.Time // a write of unknown outcome: uncertain until an ack of a write sent after this
	last     string    // the latest acknowledged write, for reports
}

// newer reports whether a write acknowledged with version v (nil: none
// given) is ordered after cur, the version a key holds.
func newer(v, cur *api.WriteVersion) bool {
	if v == nil {
		return cur == nil // both unversioned: the later acknowledgement
	}
	return cur.Less(v)
}

func (ks *keyState) check(tb table) string {
	if tb.err != nil {
		return tb.err.Error()
	}
	e, ok := tb.get(ks.entity)
	if ks.cause == "" {
		switch {
		case ok != ks.exists:
			return fmt.Sprintf("registered %v, want %v", ok, ks.exists)
		case ok && ks.state != 0 && e.State != ks.state:
			return fmt.Sprintf("state %s, want %s", stateName(e.State), stateName(ks.state))
		}
		return ""
	}
	if !ok {
		if ks.exists {
			return "alarm's entity missing"
		}
		return ""
	}
	a, has := e.FindAlarm([]byte(ks.cause))
	switch {
	case has != ks.exists:
		return fmt.Sprintf("alarm present %v, want %v", has, ks.exists)
	case has && a.Severity != ks.sev:
		return fmt.Sprintf("severity %d, want %d", a.Severity, ks.sev)
	}
	return ""
}

type chaosModel struct {
	mu      sync.Mutex
	keys    map[string]*keyState
	log     *os.File
	start   time.Time
	acked   map[string]int
	refused map[string]int
	unknown map[string]int
	// older: acknowledged, but older (a lower version) than a write already
	// acknowledged on the same key: the other side of a split brain.
	older map[string]int
}

func (m *chaosModel) logf(format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fmt.Fprintf(m.log, "%9.3fs "+format+"\n", append([]any{time.Since(m.start).Seconds()}, args...)...)
}

func (m *chaosModel) key(entity, cause string) *keyState {
	k := entity + "#" + cause
	ks, ok := m.keys[k]
	if !ok {
		ks = &keyState{entity: entity, cause: cause}
		m.keys[k] = ks
	}
	return ks
}

func (m *chaosModel) sortedKeys() []string {
	l := make([]string, 0, len(m.keys))
	for k := range m.keys {
		l = append(l, k)
	}
	sort.Strings(l)
	return l
}

func count(mp *map[string]int, k string) {
	if *mp == nil {
		*mp = map[string]int{}
	}
	(*mp)[k]++
}

// chaosWrite is one write a writer makes.
type chaosWrite struct {
	op     string // register, unregister, raise, clear, up, down
	entity string
	cause  string
	sev    api.Severity
	node   int
	sent   time.Time
}

// settle bounds how long after its client gave up a write of unknown
// outcome may still be applied (the core resends it every five intervals
// while a master is reachable).
const settle = 10 * time.Second

// outcome records the result of w in the model; ver is the version the
// write was acknowledged with.
func (m *chaosModel) outcome(w *chaosWrite, ver *api.WriteVersion, err error, causes []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	desc := fmt.Sprintf("%s %s", w.op, w.entity)
	if w.cause != "" {
		desc += " " + w.cause
	}
	if w.sev != "" {
		desc += " " + string(w.sev)
	}
	desc += fmt.Sprintf(" via node %d", w.node)
	at := time.Since(m.start).Seconds()
	var ae *api.Error
	switch {
	case err == nil:
		count(&m.acked, w.op)
		vs := "no version"
		if ver != nil {
			vs = fmt.Sprintf("version %d/%d/%d", ver.Epoch, ver.Seq, ver.Master)
		}
		last := fmt.Sprintf("%s at %.3fs, %s", desc, at, vs)
		ent := m.key(w.entity, "")
		certain := func(ks *keyState) {
			if !ks.unsure.IsZero() && w.sent.After(ks.unsure) {
				ks.unsure = time.Time{}
			}
		}
		switch w.op {
		case "register", "unregister", "up", "down":
			certain(ent)
			for _, c := range causes {
				if w.op == "unregister" { // a register keeps the alarms
					certain(m.key(w.entity, c))
				}
			}
		default:
			certain(m.key(w.entity, w.cause))
		}
		// An up, down or raise acknowledged with a version newer than
		// the entity's latest known unregister proves the entity was
		// there at that version: registered again by a write of unknown
		// outcome (or created by the raise).
		if (w.op == "up" || w.op == "down" || w.op == "raise") && !ent.exists && newer(ver, ent.ver) {
			ent.exists, ent.ver, ent.last = true, ver, last+" (which proves the entity was registered)"
		}
		applied := false
		switch w.op {
		case "register":
			if newer(ver, ent.ver) {
				ent.exists, ent.ver, ent.last, applied = true, ver, last, true
			}
			if newer(ver, ent.stateVer) {
				ent.state, ent.stateVer = wire.StateUp, ver // registered: up
			}
		case "unregister":
			if newer(ver, ent.ver) {
				ent.exists, ent.ver, ent.last, applied = false, ver, last, true
			}
			// The entity's alarms go with it: those older than this.
			for _, c := range causes {
				if a := m.key(w.entity, c); newer(ver, a.ver) {
					a.exists, a.ver, a.last = false, ver, last
				}
			}
		case "up", "down":
			if newer(ver, ent.stateVer) {
				ent.state, ent.stateVer, ent.last, applied = wire.StateUp, ver, last, true
				if w.op == "down" {
					ent.state = wire.StateDown
				}
			}
		case "raise":
			if a := m.key(w.entity, w.cause); newer(ver, a.ver) {
				a.exists, a.sev, a.ver, a.last, applied = true, w.sev.Wire(), ver, last, true
			}
		case "clear":
			if a := m.key(w.entity, w.cause); newer(ver, a.ver) {
				a.exists, a.ver, a.last, applied = false, ver, last, true
			}
		}
		if applied {
			fmt.Fprintf(m.log, "%9.3fs ack %s %s\n", at, desc, vs)
		} else {
			count(&m.older, w.op)
			fmt.Fprintf(m.log, "%9.3fs ack %s %s: older than the key's latest write, which stands\n", at, desc, vs)
		}
	case errors.As(err, &ae) && (ae.Code == api.CodeNotFound || ae.Code == api.CodeLimit || ae.Code == api.CodeRefused ||
		ae.Code == api.CodePermission || ae.Code == api.CodeCollision || ae.Code == api.CodeBadRequest):
		count(&m.refused, w.op+":"+ae.Code)
		fmt.Fprintf(m.log, "%9.3fs refused %s: %v\n", at, desc, err)
	default:
		count(&m.unknown, w.op)
		fmt.Fprintf(m.log, "%9.3fs unknown %s: %v\n", at, desc, err)
		until := time.Now().Add(settle)
		ent := m.key(w.entity, "")
		switch w.op {
		case "register", "unregister":
			ent.unsure = until
			for _, c := range causes {
				m.key(w.entity, c).unsure = until
			}
		case "up", "down":
			ent.unsure = until
		default:
			m.key(w.entity, w.cause).unsure = until
		}
	}
}

// chaosWriter writes to its own entities through random nodes until stop.
func chaosWriter(c *cluster, m *chaosModel, w int, rng *rand.Rand, stop <-chan struct{}) {
	causes := []string{"disk", "cpu", "net"}
	sevs := []api.Severity{api.SevMinor, api.SevMajor, api.SevCritical}
	type ent struct {
		name  string
		owner int // 0: not registered (as far as the writer knows)
	}
	var ents []*ent
	for j := range 4 {
		ents = append(ents, &ent{name: fmt.Sprintf("svc/w%d-%d", w, j)})
	}
	clients := map[int]*client.Client{}
	defer func() {
		for _, cl := range clients {
			cl.Close()
		}
	}()
	get := func(i int) (*client.Client, error) {
		if cl, ok := clients[i]; ok {
			return cl, nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		cl, err := client.Dial(ctx, c.nodes[i-1].sock)
		if err != nil {
			return nil, err
		}
		clients[i] = cl
		return cl, nil
	}
	for {
		select {
		case <-stop:
			return
		default:
		}
		e := ents[rng.IntN(len(ents))]
		wr := &chaosWrite{entity: e.name, node: 1 + rng.IntN(len(c.nodes))}
		switch {
		case e.owner == 0:
			wr.op = "register"
		default:
			switch r := rng.IntN(20); {
			case r < 8:
				wr.op, wr.cause, wr.sev = "raise", causes[rng.IntN(len(causes))], sevs[rng.IntN(len(sevs))]
			case r < 14:
				wr.op, wr.cause = "clear", causes[rng.IntN(len(causes))]
			case r < 18:
				wr.op, wr.node = []string{"up", "down"}[rng.IntN(2)], e.owner
			default:
				wr.op = "unregister"
			}
		}
		cl, err := get(wr.node)
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue // nothing was sent
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		wr.sent = time.Now()
		var res *api.ReportResult
		switch wr.op {
		case "register":
			var e *api.Entity
			if e, err = cl.Register(ctx, wr.entity, client.KindService); err == nil {
				res = &api.ReportResult{Version: e.Version}
			}
		case "unregister":
			res, err = cl.Unregister(ctx, wr.entity)
		case "raise":
			res, err = cl.Raise(ctx, wr.entity, wr.cause, wr.sev)
		case "clear":
			res, err = cl.Clear(ctx, wr.entity, wr.cause)
		case "up":
			res, err = cl.SetState(ctx, wr.entity, client.StateUp)
		case "down":
			res, err = cl.SetState(ctx, wr.entity, client.StateDown)
		}
		cancel()
		var ver *api.WriteVersion
		if res != nil {
			ver = res.Version
		}
		m.outcome(wr, ver, err, causes)
		var ae *api.Error
		if err != nil && !errors.As(err, &ae) || ae != nil && ae.Code == api.CodeUnavailable {
			cl.Close() // the connection may be gone: dial again next time
			delete(clients, wr.node)
		}
		if err == nil {
			switch wr.op {
			case "register":
				e.owner = wr.node
			case "unregister":
				e.owner = 0
			}
		} else if ae != nil && ae.Code == api.CodeNotFound && wr.op != "clear" && wr.op != "register" {
			// The entity is not there (unregistered by a write of unknown
			// outcome, or never registered): register it next. Without
			// this a writer kept raising on an absent entity for the rest
			// of a 10-minute run (23,000 refusals, 72 of 80 keys left
			// unchecked).
			e.owner = 0
		} else if wr.op == "register" || wr.op == "unregister" {
			// Unknown or refused: whether it is registered, and where, is
			// not known; keep writing to it as registered by that node
			// (errors are expected and counted).
			if ae == nil || ae.Code != api.CodeCollision {
				e.owner = wr.node
			}
		}
		time.Sleep(time.Duration(5+rng.IntN(30)) * time.Millisecond)
	}
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// flagSet reports whether the named flag was given on the command line.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

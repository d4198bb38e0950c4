package netsim

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// Script drives one simulation from the commands of a golden transcript
// (netsim/testdata/*.txt, see golden_test.go) and prints what each command
// made happen. The output depends on nothing but the commands (the seed is
// one of them), so a transcript is a regression test of the whole protocol.
//
// Commands (node IDs are numbers, networks are a and b, durations are Go
// durations):
//
//	start nodes=N [seed=S] [interval=D] [misses=M] [stale=D] [delay=D-D] [loss=P] [prio=ID:P,...] [tombs=N]
//	run D                     advance the virtual clock; print the events
//	status                    one line per node: role, epoch, master, vice, table
//	show NAME                 the entity NAME as every running node sees it
//	crash ID | restart ID | pause ID | resume ID
//	cut ID NET | uncut ID NET one node's link to one network
//	partition NET 1,2|3,4     split a network into groups (heal with heal)
//	heal                      every network, link and paused node back
//	register ID NAME KIND     a client of node ID writes (KIND: node, link,
//	unregister ID NAME        process, service, custom; SEV: critical,
//	raise ID NAME CAUSE [SEV] major, minor, warning, indeterminate)
//	clear ID NAME CAUSE
//	up ID NAME | down ID NAME the owner's word on its entity
//	switchover ID             node ID asks the master to hand over
type Script struct {
	Sim  *Sim
	out  []string
	reqs map[reqKey]string // what each request was, to print its result
	// The request being submitted, and whether it was answered within
	// Submit (a master's own client).
	submitting wire.NodeID
	submitWhat string
	answered   bool
}

type reqKey struct {
	node wire.NodeID
	id   uint64
}

// Do runs one command line and returns its output (no blank lines; empty
// when the command printed nothing).
func (sc *Script) Do(line string) (string, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return "", fmt.Errorf("empty command")
	}
	cmd, args := f[0], f[1:]
	if cmd != "start" && sc.Sim == nil {
		return "", fmt.Errorf("%s before start", cmd)
	}
	sc.out = sc.out[:0]
	var err error
	switch cmd {
	case "start":
		err = sc.start(args)
	case "run":
		err = sc.run(args)
	case "status":
		sc.status()
	case "show":
		err = sc.show(args)
	case "crash", "restart", "pause", "resume", "switchover":
		err = sc.nodeCmd(cmd, args)
	case "cut", "uncut":
		err = sc.cut(cmd == "cut", args)
	case "partition":
		err = sc.partition(args)
	case "heal":
		sc.Sim.HealAll()
	case "register", "unregister", "raise", "clear", "up", "down":
		err = sc.write(cmd, args)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	return strings.Join(sc.out, "\n"), err
}

func (sc *Script) printf(format string, args ...any) {
	sc.out = append(sc.out, fmt.Sprintf(format, args...))
}

// at is the virtual time, as in the chaos traces.
func (sc *Script) at() string {
	return fmt.Sprintf("%9.3fms", float64(sc.Sim.Now.Sub(Epoch0))/1e6)
}

func kv(args []string) (map[string]string, error) {
	m := map[string]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("argument %q: want key=value", a)
		}
		m[k] = v
	}
	return m, nil
}

func (sc *Script) start(args []string) error {
	if sc.Sim != nil {
		return fmt.Errorf("start twice")
	}
	m, err := kv(args)
	if err != nil {
		return err
	}
	opt := Options{Seed: 1, Interval: 10 * time.Millisecond, Misses: 5}
	delay := [2]time.Duration{50 * time.Microsecond, 400 * time.Microsecond}
	loss := 0.0
	prio := map[wire.NodeID]uint8{}
	for k, v := range m {
		switch k {
		case "nodes":
			opt.Nodes, err = strconv.Atoi(v)
		case "seed":
			opt.Seed, err = strconv.ParseUint(v, 10, 64)
		case "interval":
			opt.Interval, err = time.ParseDuration(v)
		case "misses":
			opt.Misses, err = strconv.Atoi(v)
		case "stale":
			opt.Stale, err = time.ParseDuration(v)
		case "loss":
			loss, err = strconv.ParseFloat(v, 64)
		case "tombs":
			opt.MaxTombstones, err = strconv.Atoi(v)
		case "delay":
			lo, hi, ok := strings.Cut(v, "-")
			if !ok {
				return fmt.Errorf("delay=%s: want MIN-MAX", v)
			}
			if delay[0], err = time.ParseDuration(lo); err == nil {
				delay[1], err = time.ParseDuration(hi)
			}
		case "prio":
			for _, p := range strings.Split(v, ",") {
				id, pr, ok := strings.Cut(p, ":")
				if !ok {
					return fmt.Errorf("prio=%s: want ID:PRIORITY pairs separated by commas", v)
				}
				n, e1 := strconv.ParseUint(id, 10, 32)
				q, e2 := strconv.ParseUint(pr, 10, 8)
				if e1 != nil || e2 != nil {
					return fmt.Errorf("prio=%s: want ID:PRIORITY pairs separated by commas", v)
				}
				prio[wire.NodeID(n)] = uint8(q)
			}
		default:
			return fmt.Errorf("start: unknown argument %q", k)
		}
		if err != nil {
			return fmt.Errorf("start %s=%s: %w", k, v, err)
		}
	}
	if opt.Nodes < 1 {
		return fmt.Errorf("start: nodes=N is required")
	}
	for i := range opt.Nets {
		opt.Nets[i] = NetConditions{Loss: loss, MinDelay: delay[0], MaxDelay: delay[1]}
	}
	if len(prio) > 0 {
		opt.Priority = func(id wire.NodeID) uint8 {
			if p, ok := prio[id]; ok {
				return p
			}
			return 100
		}
	}
	sc.reqs = map[reqKey]string{}
	sc.Sim = New(opt)
	sc.Sim.OnReady = sc.observe
	sc.printf("%d nodes, heartbeat %v x %d, stale after %v, seed %d", opt.Nodes, sc.Sim.Opt.Interval, sc.Sim.Opt.Misses, sc.Sim.Opt.Stale, opt.Seed)
	if opt.MaxTombstones > 0 {
		sc.printf("tables keep %d tombstones of each kind", opt.MaxTombstones)
	}
	return nil
}

// observe records what a step made happen: the node's events (but not the
// per-packet noise) and the results its clients got.
func (sc *Script) observe(n *Node, rd *core.Ready) {
	for _, e := range rd.Events {
		switch e.Kind {
		case core.EvRejected, core.EvStalled:
			continue
		}
		line := fmt.Sprintf("%s node %d: %s", sc.at(), n.ID, e.Kind)
		switch e.Kind {
		case core.EvPeerUp, core.EvPeerDown, core.EvTxnSuspect:
			line += fmt.Sprintf(" node %d", e.Node)
		case core.EvLinkUp, core.EvLinkDown:
			line += fmt.Sprintf(" node %d net %s", e.Node, netName(e.Net))
		case core.EvElected, core.EvFollowing, core.EvSteppedDown, core.EvMasterLost:
			if e.Node != 0 {
				line += fmt.Sprintf(" node %d", e.Node)
			}
			line += fmt.Sprintf(" epoch %d", e.Epoch)
		}
		if e.Reason != "" {
			line += " (" + e.Reason + ")"
		}
		sc.out = append(sc.out, line)
	}
	for _, r := range rd.Results {
		what, ok := sc.reqs[reqKey{n.ID, r.ID}]
		delete(sc.reqs, reqKey{n.ID, r.ID})
		if !ok && n.ID == sc.submitting {
			what, sc.answered = sc.submitWhat, true
		}
		switch {
		case r.Err != nil:
			sc.printf("%s node %d: %s: error: %v", sc.at(), n.ID, what, r.Err)
		case r.Seq == 0:
			sc.printf("%s node %d: %s: acknowledged, no change", sc.at(), n.ID, what)
		default:
			sc.printf("%s node %d: %s: acknowledged at seq %d", sc.at(), n.ID, what, r.Seq)
		}
	}
}

func (sc *Script) run(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("run: want one duration")
	}
	d, err := time.ParseDuration(args[0])
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	return sc.Sim.RunUntil(sc.Sim.Now.Add(d), nil)
}

func (sc *Script) status() {
	for _, n := range sc.Sim.Nodes {
		switch {
		case !n.Up:
			sc.printf("node %d: crashed", n.ID)
			continue
		case n.Paused:
			sc.printf("node %d: paused", n.ID)
			continue
		}
		st := n.Core.Status()
		stale := ""
		if st.Stale {
			stale = " stale"
		}
		down := []string{}
		tab := n.Core.Table()
		tab.Range(func(e *table.Entity) bool {
			if e.State == wire.StateDown {
				down = append(down, e.Name)
			}
			return true
		})
		sort.Strings(down)
		sc.printf("node %d: %-10s epoch %d master %d vice %d seq %d entities %d digest %016x%s down [%s]",
			n.ID, st.Role, st.Epoch, st.Master, st.Vice, st.TableSeq, tab.Len(), st.Digest, stale, strings.Join(down, " "))
	}
}

func (sc *Script) show(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("show: want one entity name")
	}
	for _, n := range sc.Sim.Nodes {
		if !n.Up {
			continue
		}
		e, ok := n.Core.Table().Lookup(args[0])
		if !ok {
			sc.printf("node %d: no %s", n.ID, args[0])
			continue
		}
		var alarms []string
		for _, a := range e.Alarms {
			alarms = append(alarms, fmt.Sprintf("%s/%s", a.Cause, sevName(a.Severity)))
		}
		sc.printf("node %d: %s %s owner %d alarms [%s]", n.ID, args[0], stateName(e.State), e.Owner, strings.Join(alarms, " "))
	}
	return nil
}

func parseNode(s *Sim, a string) (wire.NodeID, error) {
	id, err := strconv.ParseUint(a, 10, 32)
	if err != nil || id < 1 || int(id) > len(s.Nodes) {
		return 0, fmt.Errorf("node %q: want 1..%d", a, len(s.Nodes))
	}
	return wire.NodeID(id), nil
}

func parseNet(a string) (wire.Net, error) {
	switch a {
	case "a":
		return wire.NetA, nil
	case "b":
		return wire.NetB, nil
	}
	return 0, fmt.Errorf("network %q: want a or b", a)
}

func netName(n wire.Net) string { return string(rune('a' + n)) }

func (sc *Script) nodeCmd(cmd string, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%s: want one node ID", cmd)
	}
	id, err := parseNode(sc.Sim, args[0])
	if err != nil {
		return err
	}
	s := sc.Sim
	switch cmd {
	case "crash":
		s.Crash(id)
	case "restart":
		s.Restart(id)
	case "pause":
		s.Pause(id)
	case "resume":
		s.Resume(id)
	case "switchover":
		n := s.node(id)
		if !n.Up || n.Paused {
			return fmt.Errorf("switchover: node %d is not running", id)
		}
		if err := n.Core.Switchover(s.Now); err != nil {
			sc.printf("%s node %d: switchover refused: %v", sc.at(), id, err)
		}
		s.collect(n)
	}
	return nil
}

func (sc *Script) cut(cut bool, args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("cut: want a node ID and a network")
	}
	id, err := parseNode(sc.Sim, args[0])
	if err != nil {
		return err
	}
	net, err := parseNet(args[1])
	if err != nil {
		return err
	}
	sc.Sim.CutLink(id, net, cut)
	return nil
}

func (sc *Script) partition(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("partition: want a network and groups like 1,2|3")
	}
	net, err := parseNet(args[0])
	if err != nil {
		return err
	}
	labels := make([]int, len(sc.Sim.Nodes))
	for i := range labels {
		labels[i] = -1
	}
	for g, group := range strings.Split(args[1], "|") {
		for _, a := range strings.Split(group, ",") {
			id, err := parseNode(sc.Sim, a)
			if err != nil {
				return err
			}
			labels[id-1] = g
		}
	}
	for i, l := range labels {
		if l < 0 {
			return fmt.Errorf("partition: node %d is in no group", i+1)
		}
	}
	sc.Sim.Partition(net, labels)
	return nil
}

func (sc *Script) write(cmd string, args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("%s: want a node ID and an entity name", cmd)
	}
	id, err := parseNode(sc.Sim, args[0])
	if err != nil {
		return err
	}
	r := core.Request{Name: args[1]}
	rest := args[2:]
	want := 0
	switch cmd {
	case "register":
		r.Kind, want = wire.ReportRegister, 1
		if len(rest) == 1 {
			if r.EntityKind, err = parseKind(rest[0]); err != nil {
				return err
			}
		}
	case "unregister":
		r.Kind = wire.ReportUnregister
	case "raise":
		r.Kind, r.Severity, want = wire.ReportRaise, wire.SevIndeterminate, 1
		if len(rest) >= 1 {
			r.Cause = rest[0]
		}
		if len(rest) == 2 {
			want = 2
			if r.Severity, err = parseSev(rest[1]); err != nil {
				return err
			}
		}
	case "clear":
		r.Kind, want = wire.ReportClear, 1
		if len(rest) == 1 {
			r.Cause = rest[0]
		}
	case "up":
		r.Kind = wire.ReportUp
	case "down":
		r.Kind = wire.ReportDown
	}
	if len(rest) != want {
		return fmt.Errorf("%s: wrong number of arguments", cmd)
	}
	if r.EntityKind == 0 {
		r.EntityKind = table.KindOfName(r.Name)
	}
	what := strings.Join(append([]string{cmd}, args[1:]...), " ")
	// A master answers its own client within Submit: the result is
	// observed before Submit returns the request's ID.
	sc.submitting, sc.submitWhat = id, what
	rid, ok := sc.Sim.Submit(id, r)
	sc.submitting, sc.submitWhat = 0, ""
	if sc.answered {
		sc.answered = false
		return nil
	}
	if !ok {
		sc.printf("%s node %d: %s: not running", sc.at(), id, what)
		return nil
	}
	sc.reqs[reqKey{id, rid}] = what
	return nil
}

var kinds = map[string]wire.EntityKind{"node": wire.KindNode, "link": wire.KindLink, "process": wire.KindProcess, "service": wire.KindService, "custom": wire.KindCustom}

func parseKind(s string) (wire.EntityKind, error) {
	if k, ok := kinds[s]; ok {
		return k, nil
	}
	return 0, fmt.Errorf("kind %q: want node, link, process, service or custom", s)
}

var sevs = map[string]wire.Severity{"critical": wire.SevCritical, "major": wire.SevMajor, "minor": wire.SevMinor, "warning": wire.SevWarning, "indeterminate": wire.SevIndeterminate}

func parseSev(s string) (wire.Severity, error) {
	if v, ok := sevs[s]; ok {
		return v, nil
	}
	return 0, fmt.Errorf("severity %q: want critical, major, minor, warning or indeterminate", s)
}

func sevName(v wire.Severity) string {
	for k, s := range sevs {
		if s == v {
			return k
		}
	}
	return "?"
}

func stateName(s wire.State) string {
	if s == wire.StateDown {
		return "down"
	}
	return "up"
}

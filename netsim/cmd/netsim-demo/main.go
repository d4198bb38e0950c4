// Command netsim-demo runs a simulated five-node fmagent cluster on the
// deterministic simulator and narrates what it does: election, a client
// alarm, a crash of the master, a partition and its healing. The same
// -seed always prints the same story.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/netsim"
	"github.com/fmagent/fmagent/wire"
)

func main() {
	seed := flag.Uint64("seed", 1, "simulation seed")
	nodes := flag.Int("nodes", 5, "cluster size")
	flag.Parse()
	interval := 10 * time.Millisecond
	s := netsim.New(netsim.Options{Seed: *seed, Nodes: *nodes, Interval: interval, Misses: 5,
		Nets: [2]netsim.NetConditions{{MinDelay: 50 * time.Microsecond, MaxDelay: 400 * time.Microsecond}, {MinDelay: 50 * time.Microsecond, MaxDelay: 400 * time.Microsecond}}})
	at := func() string { return fmt.Sprintf("[%7.1f ms]", float64(s.Now.Sub(netsim.Epoch0))/1e6) }
	run := func(d time.Duration) { _ = s.RunUntil(s.Now.Add(d), nil) }
	status := func() {
		for _, n := range s.Nodes {
			if !n.Up {
				fmt.Printf("    node %d: crashed\n", n.ID)
				continue
			}
			r := n.Core.Role()
			t := n.Core.Table()
			fmt.Printf("    node %d: %-11s epoch %d  master %d  vice %d  table seq %3d  %2d entities  digest %016x\n",
				n.ID, r.Role, r.Epoch, r.Master, r.Vice, t.Seq(), t.Len(), t.Digest())
		}
	}
	master := func() wire.NodeID {
		for _, n := range s.Nodes {
			if n.Up && n.Core.Role().Role == wire.RoleMaster {
				return n.ID
			}
		}
		return 0
	}
	// downAt waits until every running node shows node/id down; returns how long that took.
	downAt := func(id wire.NodeID, limit time.Duration) time.Duration {
		start := s.Now
		for s.Now.Sub(start) < limit {
			run(100 * time.Microsecond)
			all := true
			for _, n := range s.Nodes {
				if !n.Up {
					continue
				}
				e, ok := n.Core.Table().Get(table.NodeEntityID(id))
				all = all && ok && e.State == wire.StateDown
			}
			if all {
				return s.Now.Sub(start)
			}
		}
		return -1
	}

	fmt.Printf("fmagent netsim demo: %d nodes, two simulated networks, heartbeat %v x %d misses (seed %d)\n\n", *nodes, interval, 5, *seed)
	run(100 * time.Millisecond)
	fmt.Println(at(), "cold start: the nodes hear each other and elect a master")
	status()

	id, _ := s.Submit(2, core.Request{Kind: wire.ReportRaise, Name: "svc/billing", EntityKind: wire.KindService, Severity: wire.SevMajor, Cause: "db-latency"})
	run(5 * time.Millisecond)
	fmt.Printf("\n%s a client on node 2 raises alarm db-latency on svc/billing (request %x)\n", at(), id)
	for _, n := range s.Nodes {
		e, ok := n.Core.Table().Lookup("svc/billing")
		fmt.Printf("    node %d sees svc/billing: %v", n.ID, ok)
		if ok {
			fmt.Printf(" with %d alarm(s): %s", len(e.Alarms), e.Alarms[0].Cause)
		}
		fmt.Println()
	}

	m := master()
	s.Crash(m)
	fmt.Printf("\n%s node %d (the master) is killed\n", at(), m)
	d := downAt(m, time.Second)
	fmt.Printf("%s every survivor shows node/%d down after %v (bound: interval x misses + one interval = %v)\n", at(), m, d, 6*interval)
	status()

	s.Partition(wire.NetA, split(*nodes))
	run(200 * time.Millisecond)
	fmt.Printf("\n%s network A is cut between the first and the second half of the nodes: links go down, nodes stay up\n", at())
	for _, n := range s.Nodes {
		if !n.Up {
			continue
		}
		e, _ := n.Core.Table().Lookup(table.LinkName(n.ID, wire.NetA))
		ne, _ := n.Core.Table().Lookup(table.NodeName(n.ID))
		if e != nil && ne != nil {
			fmt.Printf("    node/%d is %s; its link a is %s with %d alarm(s)\n", n.ID, st(ne.State), st(e.State), len(e.Alarms))
		}
	}
	s.Partition(wire.NetB, split(*nodes))
	run(300 * time.Millisecond)
	fmt.Printf("\n%s network B is cut the same way: a split brain\n", at())
	status()
	s.HealAll()
	s.Restart(m)
	run(500 * time.Millisecond)
	fmt.Printf("\n%s both networks healed and node %d restarted: one master (the last elected), one table\n", at(), m)
	status()
	digests := map[uint64]bool{}
	for _, n := range s.Nodes {
		digests[n.Core.Table().Digest()] = true
	}
	if len(digests) != 1 || master() == 0 {
		fmt.Println("\nFAILED: the cluster did not converge")
		os.Exit(1)
	}
	fmt.Println("\nall tables agree.")
}

func st(s wire.State) string {
	if s == wire.StateUp {
		return "up"
	}
	return "down"
}

// split labels the first ceil(n/2) nodes 0 and the rest 1.
func split(n int) []int {
	l := make([]int, n)
	for i := (n + 1) / 2; i < n; i++ {
		l[i] = 1
	}
	return l
}

package netns

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/wire"
)

const nNodes = 5

// TestClusterInNetns runs five real agents in network namespaces on two
// bridges and checks the fault model of DESIGN §2 on real sockets: a single
// fault (one network cut) raises link alarms and downs nothing; a double
// fault (both links of a node) downs the node and what it owns everywhere;
// the vice-master takes over from a killed master at a higher epoch; a
// partition that made two masters heals to one, the last elected, with no
// raised alarm lost; a killed agent that restarts rejoins with a new
// incarnation and catches up by snapshot.
//
// The subtests run in order on one cluster; each starts by waiting for a
// converged cluster and undoes its cuts when it ends, pass or fail.
func TestClusterInNetns(t *testing.T) {
	if skipWhy != "" {
		t.Skip(skipWhy)
	}
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	begin := time.Now()
	c := newCluster(t, nNodes)
	t.Logf("topology ready in %v: hub %s, nodes %s … %s, network A 10.201.%d.0/24, B 10.202.%d.0/24",
		time.Since(begin).Round(time.Millisecond), c.hub, c.nodes[0].ns, c.nodes[nNodes-1].ns, c.netA, c.netB)
	all := ids(1, nNodes)

	formed := t.Run("formation", func(t *testing.T) {
		c.t = t
		start := time.Now()
		for _, i := range all {
			c.start(i)
		}
		st, took := c.converged(all, 15*time.Second, "a formed cluster of 5")
		m := st[1].Master
		t.Logf("formed %v after the first start (%v after convergence began): master %d, vice %d, epoch %d, digest %016x",
			time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond), m, st[1].Vice, st[1].Epoch, uint64(st[1].Digest))
		// Equal priorities: the lowest node ID is the best candidate.
		if m != 1 {
			t.Errorf("master is node %d; with equal priorities the best candidate is node 1\n%s", m, fmtStatuses(st))
		}
	})

	if !formed {
		t.Fatal("no cluster formed: the other checks need one")
	}

	t.Run("cut-network-a", func(t *testing.T) {
		c.t = t
		st, _ := c.converged(all, 10*time.Second, "a converged cluster before the cut")
		master, epoch := st[1].Master, st[1].Epoch

		// Everything that must hold while network A is cut, checked on
		// every poll: no node down, the same master at the same epoch.
		var violations []string
		var cut time.Time
		watch := func(tabs []table) {
			for _, tb := range tabs {
				for _, j := range all {
					if name := nodeName(j); tb.is(name, wire.StateDown) {
						violations = append(violations, fmt.Sprintf("node %d's table shows %s down (%v after the cut)", tb.node, name, time.Since(cut).Round(time.Millisecond)))
					}
				}
				if tb.err == nil && (tb.hdr.Master != master || tb.hdr.Epoch != epoch) {
					violations = append(violations, fmt.Sprintf("node %d's table: master %d epoch %d, was %d at %d", tb.node, tb.hdr.Master, tb.hdr.Epoch, master, epoch))
				}
			}
		}

		c.setBridge("bra", false)
		cut = time.Now()
		defer c.setBridge("bra", true)
		took := c.eventually(10*time.Second, "every link on network A down with a link-down alarm in every table", func() (bool, string) {
			c.checkAlive(all...)
			tabs := c.tables(all)
			watch(tabs)
			for _, tb := range tabs {
				if tb.err != nil {
					return false, fmtTables(tabs)
				}
				for _, j := range all {
					if !tb.is(linkName(j, "a"), wire.StateDown) || !tb.hasAlarm(linkName(j, "a"), "link-down") ||
						!tb.is(linkName(j, "b"), wire.StateUp) || !tb.is(nodeName(j), wire.StateUp) {
						return false, fmtTables(tabs)
					}
				}
			}
			return true, ""
		})
		t.Logf("network A cut: all 5 links down with a link-down alarm in all 5 tables after %v", took.Round(time.Millisecond))
		// Stay cut for ten detection times: still nothing down.
		hold := time.Now().Add(10 * interval * misses)
		for time.Now().Before(hold) {
			watch(c.tables(all))
			time.Sleep(pollEvery)
		}
		if len(violations) > 0 {
			t.Fatalf("a single fault downed something or moved the master:\n  %s", strings.Join(first(violations, 10), "\n  "))
		}

		c.setBridge("bra", true)
		cut = time.Now()
		took = c.eventually(10*time.Second, "every link on network A up again with no link-down alarm", func() (bool, string) {
			c.checkAlive(all...)
			tabs := c.tables(all)
			watch(tabs)
			for _, tb := range tabs {
				if tb.err != nil {
					return false, fmtTables(tabs)
				}
				for _, j := range all {
					for _, net := range []string{"a", "b"} {
						if !tb.is(linkName(j, net), wire.StateUp) || tb.hasAlarm(linkName(j, net), "link-down") {
							return false, fmtTables(tabs)
						}
					}
				}
			}
			return true, ""
		})
		t.Logf("network A restored: all links up, alarms cleared after %v", took.Round(time.Millisecond))
		if len(violations) > 0 {
			t.Fatalf("healing a single fault downed something or moved the master:\n  %s", strings.Join(first(violations, 10), "\n  "))
		}
	})

	t.Run("isolate-node", func(t *testing.T) {
		c.t = t
		const victim = 5
		others := without(all, victim)
		c.converged(all, 10*time.Second, "a converged cluster before isolating node 5")
		c.traceOnFailure(all...)
		proc := fmt.Sprintf("node/%d/proc/demo", victim)
		var reg api.Entity
		mustJSON(t, c.mustCtl(victim, "register", proc, "-kind", "process"), &reg)
		c.eventually(5*time.Second, proc+" registered in every table", func() (bool, string) {
			tabs := c.tables(all)
			for _, tb := range tabs {
				if !tb.is(proc, wire.StateUp) {
					return false, fmtTables(tabs)
				}
			}
			return true, ""
		})
		before, _ := c.read(1).get(nodeName(victim))
		oldInc := before.Incarnation

		cut := time.Now()
		c.setLink(victim, "a", false)
		c.setLink(victim, "b", false)
		defer c.setLink(victim, "a", true)
		defer c.setLink(victim, "b", true)
		c.eventuallyEvery(pollShm, 10*time.Second, "node/5 and node/5/proc/demo down in every other table, the others up", func() (bool, string) {
			c.checkAlive(all...)
			tabs := c.tables(others)
			for _, tb := range tabs {
				if !tb.is(nodeName(victim), wire.StateDown) || !tb.is(proc, wire.StateDown) {
					return false, fmtTables(tabs)
				}
				for _, j := range others {
					if !tb.is(nodeName(j), wire.StateUp) {
						return false, fmtTables(tabs)
					}
				}
			}
			return true, ""
		})
		t.Logf("both links of node 5 cut: node/5 and %s down in tables of nodes 1-4 %v after the first link went down (bound: %v × %d = %v)",
			proc, time.Since(cut).Round(time.Millisecond), interval, misses, interval*misses)
		// Stay cut for ten detection times: node 5, which
		// had peers and now hears none, must not make itself master, and
		// the others must not lose theirs.
		st0, err := c.statuses(others)
		if err != nil {
			t.Fatal(err)
		}
		// Node 5 judges its peers on its own ticks, a little before or
		// after they judge it: first it sees its master gone.
		c.eventually(5*time.Second, "node 5, isolated, without a master", func() (bool, string) {
			own := c.read(victim)
			return own.err == nil && own.hdr.Master == 0, fmt.Sprintf("node 5: master %d epoch %d (err %v)", own.hdr.Master, own.hdr.Epoch, own.err)
		})
		hold := time.Now().Add(10 * interval * misses)
		for time.Now().Before(hold) {
			own := c.read(victim)
			if own.err != nil || own.hdr.Master != 0 {
				t.Fatalf("node 5, isolated, has master %d (epoch %d): an isolated node must not claim (err %v)", own.hdr.Master, own.hdr.Epoch, own.err)
			}
			for _, tb := range c.tables(others) {
				if tb.hdr.Master != st0[1].Master || tb.hdr.Epoch != st0[1].Epoch {
					t.Fatalf("node %d: master %d epoch %d while node 5 was isolated, was %d at %d", tb.node, tb.hdr.Master, tb.hdr.Epoch, st0[1].Master, st0[1].Epoch)
				}
			}
			time.Sleep(pollEvery)
		}
		own := c.read(victim)
		t.Logf("node 5's own view after %v isolated: master %d (none), epoch %d, stale %v; the others kept master %d at epoch %d",
			time.Since(cut).Round(time.Millisecond), own.hdr.Master, own.hdr.Epoch, own.hdr.Stale, st0[1].Master, st0[1].Epoch)

		c.setLink(victim, "a", true)
		c.setLink(victim, "b", true)
		healed := time.Now()
		st, took := c.converged(all, 15*time.Second, "node 5 back in a converged cluster", func(tabs []table, st map[int]api.Status) bool {
			for _, tb := range tabs {
				e, ok := tb.get(nodeName(victim))
				if !ok || e.Incarnation <= oldInc || e.Incarnation != st[victim].Incarnation || !tb.is(proc, wire.StateUp) {
					return false
				}
			}
			return true
		})
		t.Logf("links of node 5 restored (cut for %v): node 5 back with incarnation %d (was %d), %s up again, in every table after %v",
			healed.Sub(cut).Round(time.Millisecond), st[victim].Incarnation, oldInc, proc, took.Round(time.Millisecond))
		c.logHas(victim, "rejoining under a new incarnation")
	})

	t.Run("kill-master", func(t *testing.T) {
		c.t = t
		st, _ := c.converged(all, 10*time.Second, "a converged cluster before killing the master")
		master, vice, epoch := int(st[1].Master), int(st[1].Vice), st[1].Epoch
		if vice == 0 {
			t.Fatalf("no vice-master before the kill:\n%s", fmtStatuses(st))
		}
		survivors := without(all, master)
		killed := c.kill9(master)
		c.eventuallyEvery(pollShm, 10*time.Second, fmt.Sprintf("node/%d down and node %d master in every survivor's table", master, vice), func() (bool, string) {
			tabs := c.tables(survivors)
			for _, tb := range tabs {
				if !tb.is(nodeName(master), wire.StateDown) || int(tb.hdr.Master) != vice || tb.hdr.Epoch <= epoch {
					return false, fmtTables(tabs)
				}
			}
			return true, ""
		})
		downAfter := time.Since(killed)
		st, _ = c.converged(survivors, 10*time.Second, fmt.Sprintf("the vice-master (node %d) master of the survivors at an epoch above %d", vice, epoch),
			func(tabs []table, st map[int]api.Status) bool {
				return int(st[vice].Master) == vice && st[vice].Epoch > epoch
			})
		t.Logf("kill -9 of master %d (epoch %d, vice %d): node/%d down and node %d master at epoch %d in every survivor's shared memory %v after the kill; new vice %d",
			master, epoch, vice, master, vice, st[vice].Epoch, downAfter.Round(time.Millisecond), st[vice].Vice)

		// Back to five for the partition: the old master restarts and
		// follows the live master (sticky: it does not take over again).
		restarted := time.Now()
		c.start(master)
		newEpoch := st[vice].Epoch
		st, _ = c.converged(all, 15*time.Second, fmt.Sprintf("node %d back, following node %d", master, vice))
		if int(st[1].Master) != vice {
			t.Errorf("after node %d restarted the master is node %d, want %d (a live master is not displaced)\n%s", master, st[1].Master, vice, fmtStatuses(st))
		}
		t.Logf("node %d restarted: following master %d (epoch %d, was %d), converged %v after the restart", master, st[1].Master, st[1].Epoch, newEpoch, time.Since(restarted).Round(time.Millisecond))
	})

	t.Run("partition", func(t *testing.T) {
		c.t = t
		left, right := []int{1, 2}, []int{3, 4, 5}
		before, _ := c.converged(all, 10*time.Second, "a converged cluster before the partition")
		c.traceOnFailure(all...)
		for _, r := range []struct {
			node int
			name string
		}{{1, "svc/left"}, {4, "svc/right"}} {
			c.mustCtl(r.node, "register", r.name, "-kind", "service")
		}
		c.eventually(5*time.Second, "svc/left and svc/right in every table", func() (bool, string) {
			tabs := c.tables(all)
			for _, tb := range tabs {
				if !tb.is("svc/left", wire.StateUp) || !tb.is("svc/right", wire.StateUp) {
					return false, fmtTables(tabs)
				}
			}
			return true, ""
		})

		c.moveTo("2", left...)
		parted := time.Now()
		healed := false
		defer func() {
			if !healed {
				c.moveTo("", left...)
			}
		}()
		var sides [2]api.Status // the master's status on each side
		twoMasters := func() (bool, string) {
			c.checkAlive(all...)
			tabs := c.tables(all)
			st, err := c.statuses(all)
			obs := func() string { return "tables:\n" + fmtTables(tabs) + "fmctl status:\n" + fmtStatuses(st) }
			if err != nil {
				return false, err.Error() + "\n" + obs()
			}
			for k, side := range [][]int{left, right} {
				m := int(st[side[0]].Master)
				if !slices.Contains(side, m) || st[m].Role != api.Role("master") {
					return false, obs()
				}
				for _, i := range side {
					if int(st[i].Master) != m || st[i].Epoch != st[m].Epoch {
						return false, obs()
					}
				}
				sides[k] = st[m]
			}
			for _, tb := range tabs {
				for _, j := range all {
					want := wire.StateDown
					if slices.Contains(left, tb.node) == slices.Contains(left, j) {
						want = wire.StateUp
					}
					if !tb.is(nodeName(j), want) {
						return false, obs()
					}
				}
			}
			return true, ""
		}
		const partitioned = "a master on each side of the partition {1,2} | {3,4,5}, each side's nodes up and the other's down in its tables"
		took := c.eventually(10*time.Second, partitioned, twoMasters)
		t.Logf("partitioned: two masters, each side down in the other's tables, after %v: node %d (epoch %d) on {1,2}, node %d (epoch %d) on {3,4,5}",
			took.Round(time.Millisecond), sides[0].Node, sides[0].Epoch, sides[1].Node, sides[1].Epoch)

		// An alarm raised on each side, acknowledged by that side's master.
		alarms := []struct {
			node     int
			entity   string
			cause    string
			severity string
		}{
			{1, "svc/left", "part-left", "major"},
			{2, "node/2", "part-node2", "warning"},
			{4, "svc/right", "part-right", "minor"},
			{5, "svc/left", "part-cross", "critical"},
		}
		for _, a := range alarms {
			var res api.ReportResult
			mustJSON(t, c.mustCtl(a.node, "raise", a.entity, "-cause", a.cause, "-severity", a.severity), &res)
			if res.Seq == 0 || res.Verdict != "raise" {
				t.Fatalf("node %d: raise %s %s: verdict %q seq %d, want raise with a seq", a.node, a.entity, a.cause, res.Verdict, res.Seq)
			}
		}
		c.eventually(5*time.Second, "each side's alarms in its own tables", func() (bool, string) {
			tabs := c.tables(all)
			for _, a := range alarms {
				side := right
				if slices.Contains(left, a.node) {
					side = left
				}
				for _, tb := range tabs {
					if slices.Contains(side, tb.node) && !tb.hasAlarm(a.entity, a.cause) {
						return false, fmtTables(tabs)
					}
				}
			}
			return true, ""
		})

		// The last elected wins: higher epoch, then rank (equal
		// priorities: the lower node ID). Judged from the masters just
		// before the heal: a side may have elected again since.
		atFirst := sides
		c.eventually(10*time.Second, partitioned+", just before the heal", twoMasters)
		if sides[0].Node != atFirst[0].Node || sides[0].Epoch != atFirst[0].Epoch || sides[1].Node != atFirst[1].Node || sides[1].Epoch != atFirst[1].Epoch {
			t.Logf("a side elected again while partitioned: now node %d (epoch %d) on {1,2}, node %d (epoch %d) on {3,4,5}",
				sides[0].Node, sides[0].Epoch, sides[1].Node, sides[1].Epoch)
		}
		winner, loser := sides[1], sides[0]
		if sides[0].Epoch > sides[1].Epoch || sides[0].Epoch == sides[1].Epoch && sides[0].Node < sides[1].Node {
			winner, loser = sides[0], sides[1]
		}
		c.moveTo("", left...)
		healed = true
		healAt := time.Now()
		losers := left
		if slices.Contains(left, int(winner.Node)) {
			losers = right
		}
		st, took := c.converged(all, 20*time.Second, fmt.Sprintf("one master, node %d, the losing side reincarnated, every alarm raised on either side in every table", winner.Node),
			func(tabs []table, st map[int]api.Status) bool {
				if st[1].Master != winner.Node {
					return false
				}
				// The losing side was fenced (down in the winner's
				// table): it rejoins with new incarnations.
				for _, i := range losers {
					if st[i].Incarnation <= before[i].Incarnation {
						return false
					}
				}
				for _, tb := range tabs {
					for _, a := range alarms {
						if !tb.hasAlarm(a.entity, a.cause) {
							return false
						}
					}
				}
				return true
			})
		t.Logf("healed after %v of partition: one master, node %d (epoch %d before the heal, %d after), vice-master node %d; the other master, node %d (epoch %d), is now %s; nodes %v reincarnated; all %d alarms in all 5 tables after %v",
			healAt.Sub(parted).Round(time.Millisecond), winner.Node, winner.Epoch, st[1].Epoch, st[1].Vice, loser.Node, loser.Epoch,
			st[int(loser.Node)].Role, losers, len(alarms), took.Round(time.Millisecond))
	})

	t.Run("restart", func(t *testing.T) {
		c.t = t
		st, _ := c.converged(all, 10*time.Second, "a converged cluster before the restart")
		master, vice := int(st[1].Master), int(st[1].Vice)
		victim := 0
		for _, i := range slices.Backward(all) {
			if i != master && i != vice {
				victim = i
				break
			}
		}
		oldInc := st[victim].Incarnation
		survivors := without(all, victim)
		killed := c.kill9(victim)
		c.eventuallyEvery(pollShm, 10*time.Second, fmt.Sprintf("node/%d down in every survivor's table", victim), func() (bool, string) {
			tabs := c.tables(survivors)
			for _, tb := range tabs {
				if !tb.is(nodeName(victim), wire.StateDown) {
					return false, fmtTables(tabs)
				}
			}
			return true, ""
		})
		t.Logf("kill -9 of node %d (master %d, vice %d): down in every survivor's table %v after the kill", victim, master, vice, time.Since(killed).Round(time.Millisecond))

		// A change the dead node misses.
		c.mustCtl(master, "register", "svc/while-down", "-kind", "service")
		c.mustCtl(master, "raise", "svc/while-down", "-cause", "missed", "-severity", "major")

		restarted := time.Now()
		c.start(victim)
		st, _ = c.converged(all, 15*time.Second, fmt.Sprintf("node %d back with a new incarnation and the master's table", victim),
			func(tabs []table, st map[int]api.Status) bool {
				if st[victim].Incarnation <= oldInc {
					return false
				}
				for _, tb := range tabs {
					e, ok := tb.get(nodeName(victim))
					if !ok || e.Incarnation != st[victim].Incarnation || !tb.hasAlarm("svc/while-down", "missed") {
						return false
					}
				}
				return true
			})
		t.Logf("node %d restarted: incarnation %d (was %d), digest %016x = the master's, table seq %d, %v after the restart",
			victim, st[victim].Incarnation, oldInc, uint64(st[victim].Digest), st[victim].TableSeq, time.Since(restarted).Round(time.Millisecond))
		c.logHas(victim, "table replaced by a snapshot from the master")
	})

	t.Logf("total %v", time.Since(begin).Round(time.Millisecond))
}

// converged waits until every node of ids runs and they agree: one master
// (in shared memory and in fmctl status; exactly one node with the master
// role, the others member or vice-master), every node of ids up in every
// table, the same table seq and digest everywhere, and extra (if given)
// holds. It returns the last statuses and how long it took.
func (c *cluster) converged(ids []int, timeout time.Duration, what string, extra ...func([]table, map[int]api.Status) bool) (map[int]api.Status, time.Duration) {
	c.t.Helper()
	var st map[int]api.Status
	took := c.eventually(timeout, what, func() (bool, string) {
		c.checkAlive(ids...)
		tabs := c.tables(ids)
		var err error
		st, err = c.statuses(ids)
		obs := func() string {
			s := "tables:\n" + fmtTables(tabs) + "fmctl status:\n" + fmtStatuses(st)
			if err != nil {
				s = err.Error() + "\n" + s
			}
			return s
		}
		if err != nil {
			return false, obs()
		}
		m := tabs[0].hdr.Master
		if m == 0 || !slices.Contains(ids, int(m)) {
			return false, obs()
		}
		masters := 0
		for _, tb := range tabs {
			s := st[tb.node]
			if tb.err != nil || tb.hdr.Master != m || s.Master != m || s.Epoch != st[int(m)].Epoch ||
				s.Digest != st[int(m)].Digest || s.TableSeq != st[int(m)].TableSeq {
				return false, obs()
			}
			switch s.Role {
			case "master":
				masters++
			case "member", "vice-master":
			default:
				return false, obs()
			}
			for _, j := range ids {
				if !tb.is(nodeName(j), wire.StateUp) {
					return false, obs()
				}
			}
		}
		if masters != 1 || st[int(m)].Role != "master" {
			return false, obs()
		}
		for _, f := range extra {
			if !f(tabs, st) {
				return false, obs()
			}
		}
		return true, ""
	})
	return st, took
}

// traceOnFailure traces the changes the nodes publish from now until the
// end of the (sub)test, and logs them if it fails.
func (c *cluster) traceOnFailure(ids ...int) {
	t := c.t
	var trs []*tracer
	for _, i := range ids {
		trs = append(trs, c.trace(i))
	}
	t.Cleanup(func() {
		for _, tr := range trs {
			s := tr.String()
			if t.Failed() {
				t.Log(s)
			}
		}
	})
}

// logHas fails the test unless node i's current log has a line containing s.
func (c *cluster) logHas(i int, s string) {
	c.t.Helper()
	nd := c.nodes[i-1]
	b, err := os.ReadFile(c.logPath(nd, nd.lives))
	if err != nil {
		c.t.Fatal(err)
	}
	if !strings.Contains(string(b), s) {
		c.t.Errorf("node %d's log (life %d) has no line with %q", i, nd.lives, s)
	}
}

func nodeName(i int) string             { return fmt.Sprintf("node/%d", i) }
func linkName(i int, net string) string { return fmt.Sprintf("node/%d/link/%s", i, net) }

func ids(from, to int) []int {
	var l []int
	for i := from; i <= to; i++ {
		l = append(l, i)
	}
	return l
}

func without(l []int, x int) []int {
	return slices.DeleteFunc(slices.Clone(l), func(i int) bool { return i == x })
}

func first(l []string, n int) []string {
	if len(l) > n {
		return append(l[:n:n], fmt.Sprintf("… and %d more", len(l)-n))
	}
	return l
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
}

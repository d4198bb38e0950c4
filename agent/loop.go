package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/persist"
	"github.com/fmagent/fmagent/transport"
	"github.com/fmagent/fmagent/wire"
)

// rejected counts (and at debug level logs) a dropped datagram.
func (a *agent) rejected(m *transport.Message, err error) {
	a.m.reject(err)
	if errors.Is(err, core.ErrPeerLimit) {
		a.peerLimit(m)
	}
	a.warnRejected(m, err)
	if a.log.Enabled(context.Background(), slog.LevelDebug) {
		a.log.Debug("packet rejected", "net", netName(m.Net), "from", m.From.String(), "reason", wire.Reason(err), "err", err)
	}
}

// poke wakes the real-time loop: it carries out whatever Ready is left
// (rtRun, on EvWoken) and computes its next deadline again.
func (a *agent) poke() { a.waiter.Wake() }

// submitOffLoop submits req from a goroutine other than the real-time
// loop (the API, the process watcher), registers ch (if not nil) for its
// result, and carries out the Ready at once: the report leaves for the
// master (on the master, its decision for every node and this node's
// table) from this goroutine's thread, not after a wake-up of the loop.
// It wakes the loop only if the request needs a deadline sooner than the
// one the loop waits for (a.rtNext). mu held.
//
// The section runs at the loop's priority (transport.Boost): a Ready
// carried out on a thread at the normal policy was tried and undone
// (until 3 December 2026 every such Submit left its Ready to the loop).
// Its first send woke the master's and the other nodes' real-time loops,
// which preempted it, on two CPUs at once, while it held a.mu, the Ready's
// second network and its publication: traced on five agents on loopback,
// the reporting node's loop, woken by the master's change, waited 0.9 ms
// for the lock, and that node's table was the last to show the change in
// 72 of 166 changes. At SCHED_FIFO no real-time loop preempts it (no
// real-time loop preempts another), and the one wake-up saved is one less
// on the report's path: see docs/bench.md, "3 December 2026, afternoon".
func (a *agent) submitOffLoop(req core.Request, ch chan core.Result) uint64 {
	var b transport.Boost
	b.Enter(a.rtPrio) // 0 (real-time refused or not asked): wiring only
	defer b.Exit()
	id := a.core.Submit(time.Now(), req)
	if ch != nil {
		a.waiters[id] = ch
	}
	a.handleReady()
	if a.core.NextDeadline().Before(a.rtNext) {
		a.poke()
	}
	return id
}

// procLoop turns the exit of a process tied to an entity into the owner's
// report that the entity is down.
func (a *agent) procLoop() {
	for ex := range a.pw.Events() {
		a.hProc.Busy()
		a.mu.Lock()
		name, ok := a.procs[ex.Key]
		if ok && !a.stopping {
			delete(a.procs, ex.Key)
			req := core.Request{Kind: wire.ReportDown, Name: name}
			if e, ok := a.core.Table().Get(ex.Key); ok {
				req.EntityKind = e.Kind
			}
			a.submitOffLoop(req, nil)
		}
		a.mu.Unlock()
		a.hProc.Idle()
		if ok {
			a.log.Info("process exited: reporting its entity down", "pid", ex.PID, "entity", name)
		}
	}
}

// handleReady carries out the core's Ready: persist first, then send, then
// publish to shared memory, then answer the local requests, then log. mu
// held. Called after every Step, Tick and Submit.
func (a *agent) handleReady() {
	rd := a.core.Ready()
	if a.notDurable != nil {
		return // stopping (failStop): nothing more leaves or is published
	}
	// A new incarnation or epoch must be on disk before anything carries
	// it: a restart must never reuse one. A new membership generation need
	// not: a node that crashes before saving it comes back behind, which
	// the amnesia guard treats as the safe side. So only the former holds
	// the packets back (a node's death changes the membership, and two
	// fsyncs would otherwise delay its down notice by milliseconds), and
	// only when the disk does not hold it already (mustSaveFirst).
	first := rd.Persist != nil && a.mustSaveFirst(rd.Persist, rd.MustSync)
	if first {
		if err := a.saveNow(rd.Persist); err != nil {
			a.failStop(err)
			return
		}
	}
	bulk := a.bulkq != nil && bulkPackets(rd) >= bulkMin
	a.send(rd.Packets, bulk)
	if bulk {
		a.queueBulk(rd)
	}
	a.hPublish.Busy()
	a.publish(rd)
	a.hPublish.Idle()
	a.tableChanged(rd)
	for _, d := range rd.Propagation {
		a.m.propagation.ObserveDuration(d)
	}
	for _, r := range rd.Results {
		if ch, ok := a.waiters[r.ID]; ok {
			delete(a.waiters, r.ID)
			ch <- r // buffered
		}
	}
	for i := range rd.Events {
		a.event(&rd.Events[i])
	}
	if rd.Persist != nil && !first {
		a.saveLater(rd.Persist)
	}
}

// mustSaveFirst reports whether p must be saved before the packets of its
// Ready leave: it carries an incarnation past the reserve on disk
// (persist.ReserveIncarnations), or, where the core asks for it (mustSync:
// a new epoch or incarnation), an epoch the disk does not hold yet (one
// this node claims or follows: a node must never claim, after a restart,
// an epoch it followed). A node fenced by its cluster rejoins under an
// incarnation already reserved, without an fsync on the loop.
func (a *agent) mustSaveFirst(p *core.Persist, mustSync bool) bool {
	return p.Incarnation > a.durableInc.Load() || mustSync && p.Epoch > a.durableEp.Load()
}

// saveLater keeps a state that need not be on disk before anything is sent
// (a new membership generation) for the saver goroutine, to which the
// real-time loop hands it once the table's readers have had the CPUs
// (handOffQuiet): its write must not hold a.mu, which heartbeats and
// receives wait for (on a loaded disk a write may wait for the file
// system's journal, and an fsync takes hundreds of milliseconds). Only the
// latest state matters: an older one still kept or waiting is replaced. At
// shutdown (the loop has stopped) it is queued at once. mu held.
func (a *agent) saveLater(p *core.Persist) {
	if a.saveq == nil { // shutting down: the saver is gone
		_ = a.saveNow(p) // logged; behind on the membership is safe
		return
	}
	st := *p
	st.Members = append([]wire.NodeID(nil), p.Members...)
	if a.stopping {
		a.queueSave(st)
		return
	}
	a.pendingSave, a.hasPendingSave = st, true
}

// queueSave hands st to the saver goroutine, replacing a state it has not
// taken yet. mu held.
func (a *agent) queueSave(st core.Persist) {
	select {
	case a.saveq <- st:
	default:
		select {
		case <-a.saveq:
		default:
		}
		a.saveq <- st // room now: every sender holds mu
	}
}

// saverLoop writes the membership states handed to it (queueSave) to the
// membership file, until q is closed: on the membership's background
// thread (a.bgMembers), off the real-time loop's thread and off the thread
// of the table's saves, which a client's write waits for.
func (a *agent) saverLoop(q <-chan core.Persist) {
	for st := range q {
		if a.bgMembers != nil {
			// A failure is logged: coming back behind on the
			// membership generation is safe.
			a.bgMembers.Do(func() { _ = a.saveMembers(&st) })
		} else {
			_ = a.saveMembers(&st)
		}
	}
}

// ErrNotDurable is returned by Run when a new incarnation or epoch of this
// node could not be made durable (failStop).
var ErrNotDurable = errors.New("agent: a new incarnation or epoch could not be saved to disk")

// failStop stops the node after a failed save of a new incarnation or
// epoch (mu held). The Ready's packets would carry what the disk does not
// hold: after a restart this node could claim an epoch it had followed or
// claimed, or speak again under an incarnation it had used, and two reigns
// or two lives of one node would be confused. Nothing is sent from now on
// (not even the goodbye, which carries them too: the peers judge the
// silence) and nothing more is published (a master's decision its cluster
// never heard must not reach its readers); run stops the agent, whose
// segment then says its writer is gone. A save that failed is not retried:
// after a failed fsync the kernel may have dropped the pages it could not
// write and report the next fsync clean (PostgreSQL's "fsyncgate"), and a
// restart starts over from what the disk really holds. The membership
// generation's unsynced saves (saverLoop) only log a failure: coming back
// behind on it is safe.
func (a *agent) failStop(err error) {
	a.notDurable = fmt.Errorf("%w: %w", ErrNotDurable, err)
	a.log.Error("cannot save a new incarnation or epoch: stopping this node without sending it (a restart starts again from what the disk holds)",
		"err", err, "state_dir", a.stateDir)
	select {
	case a.fatal <- a.notDurable:
	default:
	}
}

// backgroundNice is the nice value of the background thread that writes
// the table and membership files: the agent's other threads' (-20 when it
// could renice them, else the process's own).
//
// Until 3 December 2026 it was nice 10, below the table's readers (nice
// 0), so that a save did not run ahead of them on the way of a down. But a
// Go thread below a CPU hog holds up the whole process: the runtime hands
// a P to the thread when its goroutine is woken for work (and it keeps
// that P while it runs Go code between its system calls), and a
// stop-the-world waits until the kernel runs that thread. Under a report
// flood and two CPU burners (20ms profile, six alternated soaks of 40 s
// each) the world took 168–201 ms to stop in three runs of six at nice 10,
// at most 10 ms in every run at nice -20; false downs 35 against 14, the
// longest heartbeat gap 233 against 54 ms. Down propagation at N = 5, eight
// alternated rounds of 200 samples, was the same at p50 (502–681 against
// 517–616 µs) and within the noise at p99 (docs/bench.md, "The background
// thread at the agent's priority"): the hand-offs held back for a quiet
// after a commit (handOffQuiet) now keep the saves off the readers' way.
func (a *agent) backgroundNice() int {
	if a.otherNice != 0 {
		return a.otherNice
	}
	return a.childNice
}

// startBackground starts the background threads, a.bg (the table and
// owned files) and a.bgMembers (the membership file); without one its
// files are written on the goroutines that save them. Two threads, not
// one: a membership save is unsynced and nobody waits for it, but a busy
// disk can still keep its write waiting (79 ms in ext4's journal, seen),
// and on one thread the table's save queued behind it, and with it the
// acknowledgement of every client's write on this node
// (TestWriteAckedWhileMembershipSaveWaits).
func (a *agent) startBackground() {
	for _, b := range []struct {
		bg   **transport.Background
		what string
	}{{&a.bg, "the table and owned files"}, {&a.bgMembers, "the membership file"}} {
		bg, err := transport.StartBackground(a.backgroundNice())
		if err != nil {
			a.log.Warn("no background thread for "+b.what+": written on the goroutines that save them", "err", err)
			continue
		}
		*b.bg = bg
	}
}

// saveNow writes p to the state file before anything more is sent (mu
// held), synced (persist.Save: a slot overwritten, fdatasync): a new
// incarnation or epoch (mustSaveFirst). saveMu orders the saves (the
// loop's, and saveLater's at shutdown), and the incarnation on disk never
// goes back. It shares no lock and no file with the saver goroutine's
// membership saves (saveMembers), which a busy disk may keep waiting.
func (a *agent) saveNow(p *core.Persist) error {
	a.saveMu.Lock()
	defer a.saveMu.Unlock()
	diskInc := a.durableInc.Load()
	inc := max(p.Incarnation, diskInc)
	if p.Incarnation > diskInc {
		// Past the reserve (mustSaveFirst saves it first): a new one.
		inc = p.Incarnation + persist.ReserveIncarnations
	}
	st := persist.State{Incarnation: inc, Generation: p.Generation, Members: members32(p.Members), Epoch: max(p.Epoch, a.durableEp.Load())}
	if err := persist.Save(a.stateDir, st); err != nil {
		a.m.persistErrors.Inc()
		a.log.Error("persisting state", "err", err, "generation", p.Generation, "synced", true)
		return err
	}
	// Only once written: a failed save must not make the next one take
	// the reserve for renewed.
	a.durableInc.Store(inc)
	a.durableEp.Store(st.Epoch)
	a.log.Info("persisted", "incarnation", p.Incarnation, "generation", p.Generation, "members", st.Members, "synced", true)
	return nil
}

// saveExactEpoch writes, at a clean stop, the exact highest epoch this
// node held in place of the ceiling on disk (core.Node.StopPersist), so
// that when it comes back and later claims, the cluster's epoch goes up by
// one instead of jumping past the reserve, and no other node has to save
// on that failover's way (DESIGN §9). Called once nothing more can be sent
// (the transport is closed, the savers have finished); not after a failed
// save (failStop), whose node promised nothing it could keep, and not while
// the real-time loop has not returned (a shutdown past its deadline): it
// could still take a newer epoch from a datagram it had read. A failure, or
// no save, leaves the ceiling, which is always safe.
func (a *agent) saveExactEpoch() {
	if a.rtDone == nil {
		return
	}
	select {
	case <-a.rtDone:
	default:
		a.log.Warn("not persisting the exact epoch: the real-time loop has not stopped; the state file keeps its epoch's reserve")
		return
	}
	a.mu.Lock()
	p, ok := a.core.StopPersist()
	ok = ok && a.notDurable == nil
	a.mu.Unlock()
	if !ok {
		return
	}
	a.saveMu.Lock()
	defer a.saveMu.Unlock()
	st := persist.State{Incarnation: a.durableInc.Load(), Generation: p.Generation, Members: members32(p.Members),
		Epoch: p.Epoch, EpochExact: true}
	if err := persist.Save(a.stateDir, st); err != nil {
		a.m.persistErrors.Inc()
		a.log.Warn("persisting the exact epoch at a clean stop: the state file keeps its epoch's reserve", "err", err)
		return
	}
	a.log.Info("persisted the exact epoch", "epoch", p.Epoch, "ceiling_was", a.durableEp.Load())
}

// saveMembers writes p's membership generation and members to the
// membership file, unsynced (persist.SaveMembers): what it holds is safe to
// lose in a crash. Until 4 December 2026 these saves went to the state
// file, under the lock the loop's saves of an epoch take: a flushed one on
// a busy disk held it for hundreds of milliseconds (the listers soak, 3
// December 2026), an unflushed one once 79 ms in ext4's journal.
func (a *agent) saveMembers(p *core.Persist) error {
	members := members32(p.Members)
	if err := persist.SaveMembers(a.stateDir, p.Generation, members); err != nil {
		a.m.persistErrors.Inc()
		a.log.Error("persisting state", "err", err, "generation", p.Generation, "synced", false)
		return err
	}
	a.log.Info("persisted", "generation", p.Generation, "members", members, "synced", false)
	return nil
}

// members32 is ms as the state files keep them.
func members32(ms []wire.NodeID) []uint32 {
	out := make([]uint32, len(ms))
	for i, m := range ms {
		out[i] = uint32(m)
	}
	return out
}

// send sends ps (but the bulk sender's, if bulk): each multicast on the
// networks of its Nets, or unicast to the address last learned for its To
// on each of them, network by network, each network's in one sendmmsg
// (transport.Sender.Queue), in their order. A peer never heard on a
// network has no address there; the packet is not sent on that network
// (the core retries what matters). One sendmsg per packet and network,
// as until 2 December 2026, was two thirds of a 41 ms stretch of the
// master's loop in a registration storm (perf), on a CPU the other
// agents' loops waited for.
func (a *agent) send(ps []core.Packet, bulk bool) {
	var err error
	for n := wire.Net(0); n < wire.NumNets; n++ {
		for i := range ps {
			p := &ps[i]
			if p.Nets&(1<<n) == 0 || bulk && isBulk(p) {
				continue
			}
			kind, to := transport.ToGroup, netip.AddrPort{}
			switch {
			case p.Heartbeat:
				kind = transport.ToHeartbeat
			case p.To != 0:
				var ok bool
				if to, ok = a.addrs[n][p.To]; !ok {
					a.m.noAddr.Inc()
					continue
				}
				kind = transport.ToPeer
			}
			if e := a.snd.Queue(n, kind, to, p.Data, p.Prio); e != nil && err == nil {
				err = e
			}
		}
	}
	if e := a.snd.Flush(); e != nil && err == nil {
		err = e
	}
	if err != nil && a.log.Enabled(context.Background(), slog.LevelDebug) {
		a.log.Debug("send", "err", err)
	}
}

// event logs a core event (logevents.go) and counts it.
func (a *agent) event(e *core.Event) {
	if e.Kind == core.EvReincarnated {
		a.nudgeExit() // the connection to the master is to be opened anew
	}
	a.m.event(e.Kind)
	a.logEvent(e)
}

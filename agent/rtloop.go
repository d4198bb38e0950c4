package agent

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"time"

	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/transport"
	"github.com/fmagent/fmagent/wire"
)

// The real-time loop (DESIGN §8) is the one thread whose timing is the
// product: it sends the heartbeats, receives and judges the peers' packets,
// and applies and publishes a down. It runs on an OS thread of its own
// (transport.RunLocked), at SCHED_FIFO when permitted, and blocks in one
// place only, transport.Waiter.Wait: a ppoll on the group and unicast
// sockets, a timerfd armed at the core's next deadline (absolute
// CLOCK_MONOTONIC) and an eventfd that Submit's callers write. So the
// kernel wakes this thread itself when a datagram arrives or a deadline
// passes, ahead of every normal thread of the machine, with no hop through
// Go's netpoller or timers (whose threads a CPU hog delays by
// milliseconds).
//
// Peers' heartbeats do not wake it: they come to the heartbeat sockets,
// which the loop reads each time it ticks (after what woke it, before the
// tick), and steps with the time the kernel received each
// (core.StepHeartbeat). The loop ticks at least once an interval (to send
// its own heartbeat), and at a peer's judgement deadline, where it reads
// them before it judges; so a heartbeat is judged exactly as if it had
// woken the loop, for a fraction of the wake-ups (one per interval instead
// of one per peer's datagram).
//
// One thread for both: a received packet and a tick never wait for each
// other's thread to be scheduled, and the core's mutex is contended only
// by the API and the process watcher, whose critical sections are short
// (slow work — fsyncs, snapshot transfers — is done off the lock).

// wholeProcess: rtSetup gives every other thread of the process nice -20
// (transport.SetProcessNice says why), and the real-time loop keeps its P
// (holdP). Off in this package's tests, where many agents share the test
// binary.
var wholeProcess = true

// epochReserve is the core's EpochReserve (0: core.DefaultEpochReserve).
// Set to 1 by this package's tests of a failed save of a new epoch, which
// the reserve otherwise makes rare.
var epochReserve uint64

// otherThreadsNice is the nice value of the process's threads other than
// the real-time loop's.
const otherThreadsNice = -20

// gcPercent is the garbage collector's GOGC in an agent's own process
// unless the environment sets GOGC: a collection every fifth heap growth
// instead of every doubling. Every collection stops the world twice, and
// the real-time loop with it (a stop-the-world waits for every P, so for
// the agent's threads a busy machine keeps off the CPU); fewer
// collections are fewer such stalls. Measured: the 20ms soak under a
// report flood (`soak -profiles 20ms -hog 30s -idle -1s -flood 2`, two
// burners, seven alternated rounds, the last three against this build's
// default; no stall of the machine's own over 14 ms): false downs 30 / 31
// / 32 / 14 / 26 / 27 / 33 (median 30) and 16 elections in all at GOGC
// 100, 13 / 20 / 9 / 31 / 25 / 19 / 12 (median 19) and 7 at 400; the
// longest collector pause 50–537 ms against 10–100 ms; RSS under the flood
// 20–25 MiB against 28–32 MiB.
const gcPercent = 400

// tuneGC sets gcPercent, in a process of the agent's own, unless GOGC is
// in the environment (which Go's runtime has applied already).
func tuneGC() {
	if wholeProcess && os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}

// gcPercentNow is the collector's GOGC now (-1: off).
func gcPercentNow() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	v := s[0].Value.Uint64()
	if v == math.MaxUint64 {
		return -1
	}
	return int(v)
}

// rtSetup reports what real-time scheduling the process may have, once and
// clearly, and refuses a profile that cannot be held without it. It runs
// before anything is opened.
func (a *agent) rtSetup() error {
	rt := a.cfg.Realtime
	prof, named := config.LookupProfile(a.cfg.Timing.Profile)
	a.rtPrio = 0
	if n, err := transport.CurrentNice(); err == nil {
		a.childNice = n
	}
	if !rt.Enabled {
		if named && prof.NeedsRealtime { // config.Validate refuses it too
			return fmt.Errorf("agent: realtime.enabled = false: %s; set realtime.enabled = true, or choose a slower profile", config.RealtimeRefusal(prof))
		}
		a.log.Warn("realtime.enabled = false: the heartbeat thread runs at the normal scheduling policy; under CPU load its heartbeats and judgements are late by a scheduler time slice or more, and peers may be falsely declared down",
			"profile", a.cfg.Timing.Profile, "bound", a.cfg.Timing.Detection())
	} else if err := a.setFIFO(rt.Priority); err != nil {
		msg := "real-time scheduling is not permitted: the heartbeat thread runs at the normal policy. Under CPU load it waits behind every other runnable thread for a time slice (milliseconds), so heartbeats are late and peers may be falsely declared down within the detection bound. Grant CAP_SYS_NICE (the unit file does) or raise RLIMIT_RTPRIO"
		if named && prof.NeedsRealtime {
			return fmt.Errorf("agent: %s, and SCHED_FIFO is not permitted: %w; grant CAP_SYS_NICE or raise RLIMIT_RTPRIO, or choose a slower profile", config.RealtimeRefusal(prof), err)
		}
		a.log.Warn(msg, "err", err, "profile", a.cfg.Timing.Profile, "bound", a.cfg.Timing.Detection())
	} else {
		a.rtPrio = rt.Priority
	}
	if rt.LockMemory {
		if err := transport.LockMemory(); err != nil {
			a.log.Warn("memory not locked: a page fault (swap, a dropped file page) can stall a heartbeat; grant CAP_IPC_LOCK or raise RLIMIT_MEMLOCK (the unit file sets LimitMEMLOCK=infinity)", "err", err)
		} else {
			a.memLocked = true
		}
	}
	if err := a.pin(rt.CPUs); err != nil {
		return err
	}
	a.warnOneCPU()
	a.warnDAMON("/")
	tuneGC()
	a.log.Info("real-time path", "sched_fifo", a.rtPrio > 0, "priority", a.rtPrio, "other_threads_nice", a.otherNice, "mlockall", a.memLocked,
		"cpus", a.pinned, "gc_percent", gcPercentNow(), "profile", a.cfg.Timing.Profile, "interval", a.cfg.Timing.Interval, "misses", a.cfg.Timing.Misses)
	return nil
}

// pin pins every thread of the process to cpus (realtime.cpus), if any. A
// CPU the process may not use is a configuration the agent refuses: the
// operator asked for a placement it cannot have.
func (a *agent) pin(cpus []int) error {
	if len(cpus) == 0 {
		return nil
	}
	if !wholeProcess {
		a.log.Warn("realtime.cpus ignored: agents share this process (tests)", "cpus", cpus)
		return nil
	}
	if err := transport.PinProcess(cpus); err != nil {
		return fmt.Errorf("agent: realtime.cpus = %v: %w", cpus, err)
	}
	a.pinned = slices.Clone(cpus)
	return nil
}

// warnOneCPU says, once at start, when the real-time loop can only run on
// the CPU the agent's other threads run on (realtime.cpus of one CPU, a
// one-CPU cpuset or taskset, a one-vCPU machine). There the loop at
// SCHED_FIFO preempts the very threads it may wait for inside Go's runtime:
// a garbage-collector assist that scans another goroutine's stack, an
// allocation waiting for another thread to publish a span, a system call's
// return while the runtime retakes its P — each spins until the other
// thread runs, which at SCHED_FIFO is when the kernel's real-time
// throttling stops the loop, about a second later (soak/cmd/rtinversion
// reproduces it within 20 s: 948 ms to 1.005 s, against 7–8 ms on two
// CPUs; docs/bench.md). The loop's own system calls are raw, which removes
// the last of the three, not the others.
func (a *agent) warnOneCPU() {
	if a.rtPrio == 0 || !wholeProcess {
		return
	}
	cpus, err := transport.ProcessCPUs()
	if err != nil || len(cpus) != 1 {
		return
	}
	a.log.Warn("the agent may run on one CPU only, real-time loop included: there the loop can wait inside Go's runtime for a thread it keeps off the CPU, until the kernel's real-time throttling ends it (about a second, and peers then declare this node down). Give the agent two CPUs or more (realtime.cpus, its cpuset, taskset)",
		"cpus", cpus)
}

// setFIFO checks that a thread may have SCHED_FIFO prio and (when
// wholeProcess) gives the process's other threads nice -20; not being
// permitted that is only warned about (the loop is what must be on time).
func (a *agent) setFIFO(prio int) error {
	if err := transport.ProbeRealtime(prio); err != nil {
		return err
	}
	if wholeProcess {
		orig, err := transport.SetProcessNice(otherThreadsNice)
		if err != nil {
			a.log.Warn("the agent's other threads stay at their nice value: under CPU load the garbage collector may stop the real-time loop for a time slice while it waits for them", "err", err)
			return nil
		}
		a.childNice, a.otherNice = orig, otherThreadsNice
	}
	return nil
}

// keepNice gives nice -20 to threads Go created since (those cloned from
// the real-time loop's thread are at nice 0: its SCHED_FLAG_RESET_ON_FORK),
// every second until done.
func (a *agent) keepNice(done chan struct{}) {
	if a.otherNice == 0 {
		return
	}
	every(done, time.Second, func() bool {
		n, err := transport.KeepNice(a.otherNice)
		if err != nil {
			a.log.Warn("renicing the agent's threads", "err", err)
			return false
		}
		if n > 0 {
			a.log.Debug("reniced threads created at another nice value", "threads", n, "nice", a.otherNice)
		}
		return true
	})
}

// every calls fn every period until done is closed or fn returns false.
func every(done chan struct{}, period time.Duration, fn func() bool) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		if !fn() {
			return
		}
	}
}

// holdP lets the real-time loop keep its P while it waits
// (transport.Waiter.HoldP says why) and gives the rest of the process the P
// back: GOMAXPROCS one above what the runtime chose, unless the
// environment set it. Only for a real-time loop in a process of its own
// (not the agents that this package's tests run in one binary), and with
// at least two Ps.
func (a *agent) holdP() {
	w, ok := a.waiter.(*transport.Waiter)
	if !ok || a.rtPrio == 0 || !wholeProcess {
		return
	}
	if os.Getenv("GOMAXPROCS") == "" {
		// Pinned, the runtime's count (the CPUs it could use at start)
		// is not what it has now.
		n := runtime.GOMAXPROCS(0)
		if len(a.pinned) > 0 {
			n = len(a.pinned)
		}
		runtime.GOMAXPROCS(n + 1)
	}
	if runtime.GOMAXPROCS(0) < 2 {
		return
	}
	w.HoldP = true
	a.log.Info("real-time loop keeps its P while it waits", "gomaxprocs", runtime.GOMAXPROCS(0))
}

// rtLoop is the real-time loop; it returns when the waiter is stopped.
func (a *agent) rtLoop() {
	opts := transport.ThreadOptions{Realtime: a.rtPrio > 0, Priority: a.rtPrio,
		Logf: func(f string, args ...any) { a.log.Warn(fmt.Sprintf(f, args...)) }}
	_ = transport.RunLockedWith(opts, a.rtRun) // a refusal here was already reported by rtSetup
}

func (a *agent) rtRun(th *transport.Locked) {
	a.rtThread.Store(th)
	msgs := make([]transport.Message, recvBatch)
	for i := range msgs {
		msgs[i].Buf = make([]byte, wire.MaxDatagram)
	}
	a.rtLock()
	next := a.core.NextDeadline()
	a.rtNext = next
	a.mu.Unlock()
	// The last yield (from..to) and the lock waits since the wake-up
	// (rtWaited): what held a late tick (lateTick).
	var lastYield, yieldFrom, yieldTo time.Time
	var dropsAt time.Time // the kernel's drop counters last read
	// The first wake-up's deadline was set before the sockets, the
	// shared memory and the API were opened: its lateness is the start's.
	first := true
	for {
		ev, err := a.waiter.Wait(next)
		if errors.Is(err, transport.ErrStopped) {
			return
		}
		if err != nil {
			a.log.Error("real-time loop: waiting", "err", err)
			time.Sleep(time.Millisecond)
			continue
		}
		woke := time.Now() // what follows is the loop's work (lateTick.work)
		a.hRT.Busy()
		a.rtWaited = 0
		// Datagrams first: a tick must judge with what has arrived. What
		// woke us (a change, a claim, a request) is read at once: it is
		// what a reader of the table waits for. The heartbeats queued
		// since the last tick are read only when this wake-up ticks,
		// just before it: they are judged by their arrival stamps
		// whenever they are read, as long as it is before the tick, and a
		// wake-up for a change (on the path of a down to every node's
		// table) then costs no more system calls than it must.
		deaf := false
		for n := wire.Net(0); n < wire.NumNets; n++ {
			for _, sock := range [2]int{sockGroup, sockUnicast} {
				if ev&transport.Readable(n, sock == sockUnicast) != 0 && a.drainSocket(n, sock, msgs, next) {
					deaf = true
				}
			}
		}
		a.rtLock()
		if a.stopping {
			a.mu.Unlock()
			return
		}
		if ev&transport.EvExtra != 0 {
			// Fault writes on the API's datagram socket: submitted and
			// sent to the master now (dgramwrite.go).
			a.readDgrams(time.Now())
			a.handleReady()
			a.startDgrams()
		}
		if ev&transport.EvWoken != 0 {
			// Woken by poke: a switchover asked off the loop left its
			// Ready to us, or a request submitted off the loop needs a
			// sooner deadline (submitOffLoop). Whatever is left goes out
			// now, before the heartbeats are read and the tick.
			a.handleReady()
		}
		now := time.Now()
		due := !now.Before(a.core.NextDeadline()) || ev&(transport.EvTimer|transport.EvWoken) != 0
		if due {
			a.mu.Unlock()
			for n := wire.Net(0); n < wire.NumNets; n++ {
				if a.drainSocket(n, sockHeartbeat, msgs, next) {
					deaf = true
				}
			}
			a.rtLock()
			if a.stopping {
				a.mu.Unlock()
				return
			}
			now = time.Now()
			if now.Sub(dropsAt) >= dropsEvery || a.core.JudgementNear(now, a.cfg.Timing.Interval) {
				dropsAt = now
				if d := a.tr.Drops(); d != a.rxDrops.Load() {
					// The kernel dropped datagrams a full socket buffer
					// could not take: what we did not hear may have been
					// sent. (Read before a tick only, since it is the
					// tick that judges: six getsockopt calls on every
					// wake-up were a tenth of the loop's time; and only
					// when a judgement is near, see dropsEvery.)
					a.rxDrops.Store(d)
					deaf = true
				}
			}
		}
		if deaf {
			// More arrived than the loop could read: the kernel drops
			// what overflows, heartbeats too. Our deafness is not the
			// peers' silence (core.Deafened).
			a.core.Deafened(now)
		}
		if ev&transport.EvTimer != 0 || !now.Before(next) {
			// How late the loop ticked for its deadline: what a hog, the
			// garbage collector or a page fault cost the heartbeats. Not
			// only on a wake-up by the timer: one for a request or a
			// change that worked past the deadline ticks late as well.
			late := max(now.Sub(next), 0)
			a.m.tickLateness.ObserveDuration(late)
			if ns := int64(late); ns > a.m.tickLateMax.Load() {
				a.m.tickLateMax.Store(ns)
			}
			if late >= lateTickIntervals*a.cfg.Timing.Interval && !first {
				t := lateTick{due: next, late: late, yield: yieldPast(yieldFrom, yieldTo, next), lockWait: a.rtWaited,
					work: workPast(woke, next, now, a.rtWaited)}
				a.m.lateTicks[t.cause()].Inc()
				a.late.record(t)
				a.fit.observe(&t, fitTolerance(a.cfg.Timing))
			}
		}
		if due {
			a.core.Tick(now)
			a.shm.Beat()
			a.handleReady()
			a.handOffQuiet(now)
		}
		next = a.core.NextDeadline()
		a.rtNext = next
		a.mu.Unlock()
		a.hRT.Idle()
		first = false
		if now.Sub(lastYield) >= yieldEvery {
			// See yieldEvery.
			lastYield = now
			yieldFrom = time.Now()
			th.YieldInPlace()
			yieldTo = time.Now()
			d := yieldTo.Sub(yieldFrom)
			a.m.yieldTime.ObserveDuration(d)
			if int64(d) > a.m.yieldMax.Load() {
				a.m.yieldMax.Store(int64(d))
			}
		}
	}
}

// quietAfterPublish is how long after the segment's last commit the
// real-time loop waits before it hands work to the agent's other threads:
// the table saver's kick and a membership state to save (handOffQuiet).
// Those threads run at nice -20 (the saver's goroutines, the Go threads
// woken to run them, and the background thread's file writes, at nice 10
// until 3 December 2026: backgroundNice); a commit wakes the table's readers, at nice 0, which those threads
// outrank or share the CPUs with. A node's death, judged at a tick, was
// committed, kicked the saver and handed the new membership over in the
// same wake-up: on two CPUs (five agents, five readers) the readers then
// ran 90–450 µs after they were woken. Held back, a death's verdict
// reaches the last reader in 705–793 µs at p50 instead of 995–1,273 µs
// (six alternated rounds of 100 kills, N = 5, bench.md). 2 ms was enough
// for a node's own readers, but not for a machine's other readers: nine
// agents on two CPUs, each with its reader, where a survivor's saver,
// kicked 2 ms after its own commit, ran ahead of another survivor's reader
// not yet scheduled. At 10 ms the down reached the last of the eight
// survivors' readers in 4.8 ms at p99 (max 8.1) instead of 11.5 (max
// 14.6), four alternated rounds of 100 kills each, 4 ms × 5, N = 9; at
// N = 5 3.5 against 3.6 ms (max 4.8 against 6.4; bench.md). What waits
// is only a file (the table's, for a restart in the same boot to adopt)
// and a membership state that need not be on disk before anything is
// sent (saveLater). quietMax bounds the wait while commits keep coming
// (a flood); a write a client waits for is saved at once all the same
// (waitSaved kicks the saver itself).
const (
	quietAfterPublish = 10 * time.Millisecond
	quietMax          = 50 * time.Millisecond
)

// handOffQuiet kicks the table saver if the table changed, and hands the
// membership state saveLater kept to its saver, unless the segment was
// committed less than quietAfterPublish before now and the hand-off has
// not yet waited quietMax. The loop calls it at every tick. mu held.
func (a *agent) handOffQuiet(now time.Time) {
	if !a.hasPendingSave && !a.tsave.wantsKick() {
		a.handOffSince = time.Time{}
		return
	}
	if a.handOffSince.IsZero() {
		a.handOffSince = now
	}
	if now.Sub(a.lastPub) < quietAfterPublish && now.Sub(a.handOffSince) < quietMax {
		return
	}
	a.handOffSince = time.Time{}
	a.kickTableSaver()
	if a.hasPendingSave {
		a.queueSave(a.pendingSave)
		a.hasPendingSave = false
	}
}

// rtLock takes a.mu for the real-time loop, timing the wait when another
// goroutine holds it: that goroutine runs on a thread at the normal policy,
// which a busy machine would keep off the CPU while the loop waits behind
// it, were it not for the lock's priority inheritance (the holder runs at
// the loop's priority until it unlocks). The waits add up in rtWaited. The
// loop knows its thread (rtThread's Tid), which saves a gettid per lock.
func (a *agent) rtLock() {
	tid := a.rtThread.Load().Tid()
	if a.mu.TryLockOnThread(tid) {
		return
	}
	t0 := time.Now()
	a.mu.LockOnThread(tid)
	d := time.Since(t0)
	a.m.lockWait.ObserveDuration(d)
	if int64(d) > a.m.lockWaitMax.Load() {
		a.m.lockWaitMax.Store(int64(d))
	}
	a.rtWaited += d
}

// dropsEvery: how often the real-time loop reads the kernel's drop
// counters of its six sockets (six getsockopt calls, about 10 µs here)
// when no peer or link is within an interval of being judged silent; it
// reads them before every tick that is. A drop that hid a peer's
// heartbeats is so always seen by the tick that would judge that silence
// (the counters are cumulative), and one seen near a judgement is at most
// this old. Read at every tick, they cost 0.5 % of a core at 2 ms × 5.
const dropsEvery = 100 * time.Millisecond

// yieldEvery: how often the real-time loop yields to Go's scheduler. The
// loop only makes system calls (ppoll, recvmmsg, sendmsg) and never blocks
// in Go, so its P keeps one scheduling tick for ever; after 10 ms on one
// tick the runtime's monitor thread (sysmon) takes it for a runaway
// goroutine stuck in a system call, preempts it and retakes its P at every
// wake-up, and so never backs off from its 20 µs polling. Measured on five
// idle agents (50ms profile, N = 5): sysmon was 36–54% of each agent's CPU.
// One yield every 5 ms costs far less. It yields in place
// (transport.Locked.YieldInPlace): no other thread is woken, and the
// goroutine comes back on its own thread at once. Locked (a Gosched, until
// 2 December 2026), each yield handed the P to an idle thread at the
// normal policy and waited for it to be scheduled and hand the P back,
// which under a CPU hog took up to tens of milliseconds: the 10 ms
// profile's false downs of DESIGN §8.
const yieldEvery = 5 * time.Millisecond

// The sockets drainSocket reads.
const (
	sockGroup     = iota // the group socket (Readable(n, false))
	sockUnicast          // the unicast socket (Readable(n, true))
	sockHeartbeat        // the heartbeat socket, read at every wake-up
)

// drainSocket reads a socket while the core's next deadline has not come.
// A flood arriving faster than the loop rejects it must not hold the loop
// in one socket: the loop would neither read the other sockets nor tick,
// and a node that does not tick sends no heartbeats, so its peers judge it
// lost (issue 9: 40,000 wrong-magic packets made the master silent for
// 200 ms and the cluster elected another). Once the deadline has passed the
// loop ticks and comes back to the socket at once (the wait reports it still
// readable). What stays queued is bounded by the socket buffer, so a tick
// still judges with what has arrived, or knows it could not
// (core.Deafened).
//
// It reads until the socket has nothing queued or deadline has passed,
// Stepping every datagram under the lock batch by batch; a heartbeat
// (sockHeartbeat) at the time the kernel received it. A rejected datagram
// costs its check and a count: the core's output is handled after an
// accepted one (before the next step, which reuses its buffers), or once
// after the batch. It reports whether the socket may still hold datagrams
// (the deadline came first).
func (a *agent) drainSocket(n wire.Net, sock int, msgs []transport.Message, deadline time.Time) (backlog bool) {
	for {
		var k int
		var err error
		if sock == sockHeartbeat {
			k, err = a.tr.TryReadHeartbeats(n, msgs)
		} else {
			k, err = a.tr.TryReadBatch(n, sock == sockUnicast, msgs)
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				a.log.Debug("receive", "net", netName(n), "socket", sock, "err", err)
			}
			return false
		}
		if k == 0 {
			return false
		}
		a.rtLock()
		if a.stopping {
			a.mu.Unlock()
			return false
		}
		now := time.Now() // the batch was queued by now
		unhandled := false
		for i := 0; i < k; i++ {
			m := &msgs[i]
			var from wire.NodeID
			if sock == sockHeartbeat {
				at := m.At // read before now, so not after it
				if at.IsZero() {
					at = now
				}
				from, err = a.core.StepHeartbeat(at, m.Net, m.Buf[:m.N])
			} else {
				from, err = a.core.Step(now, m.Net, m.Buf[:m.N])
			}
			if err != nil {
				a.rejected(m, err)
				unhandled = true // a rejection may still have output (a duplicate node ID's notice)
				continue
			}
			if m.Net < wire.NumNets && a.addrs[m.Net][from] != m.From {
				a.addrs[m.Net][from] = m.From
			}
			a.handleReady()
			unhandled = false
		}
		if unhandled {
			a.handleReady()
		}
		a.mu.Unlock()
		if k < len(msgs) {
			return false
		}
		if !now.Before(deadline) {
			return true
		}
	}
}

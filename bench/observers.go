package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/wire"
)

// Observers. Every measurement ends in N observer processes, one per node
// (this executable run again with helperEnv set, see MaybeHelper), so that
// the agents and the baseline are timed the same way: each observer stamps
// CLOCK_MONOTONIC (one clock for every process of the host) the moment it
// sees what it waits for, and sends the stamp to this process through a
// pipe.
//
//   - The baseline: every observer has joined a multicast group on lo of its
//     own run; this process sends one datagram and the observers stamp it as
//     soon as their read returns (through Go's network poller, as the agents
//     read theirs): send to received by all.
//   - The agents: observer i has node i's segment open (shmem.Open) and, on
//     a "watch" command, takes the table seq, says "armed", then reads the
//     entity and while the condition does not hold sleeps in Reader.Wait (a
//     futex the agent wakes after every commit) and reads again; the stamp
//     is taken when the read shows the condition: what a local reader does.
//   - The two-hop floor (relay.go): observer i also has relay i's segment
//     open (slot 1), and watches it the same way.
//
// Protocol, one line each way (stdin: commands; stdout: answers):
//
//	open ID PATH PID TIMEOUT [SLOT]    -> opened ID | fail ID MSG
//	watch ID COND NAME ARG TIMEOUT [SLOT] -> armed ID, then seen ID MONO WALL STAMP WRITTEN | fail ID MSG
//	(a datagram SEQ)                   -> mc SEQ MONO
//
// COND is alarm (ARG: a cause raised), noalarm (ARG: a cause not raised),
// state (ARG: up or down), exists (ARG ignored) or seq (ARG: a number the
// entity's Incarnation has reached: the relays' datagram count). STAMP is
// the alarm's RaisedAt for alarm, the entity's ChangedAt otherwise (the
// master's wall clock at its decision). WRITTEN is the row's written_at as
// read (the writer's wall clock when it wrote the row: when the row became
// readable, before any reader was woken). TIMEOUT is in nanoseconds. SLOT
// (0, the default, or 1) chooses which open segment a command is about.
// The observer ends when its stdin closes.

const (
	helperEnv      = "FMAGENT_BENCH_HELPER"
	helperGroupEnv = "FMAGENT_BENCH_GROUP" // ip:port
	helperObserver = "observer"
)

// MaybeHelper turns this process into an observer when it was started as
// one, and never returns then; otherwise it returns at once. Call it first
// thing in main (and in TestMain) of any program that calls Run: Run
// re-executes the program itself (os.Executable, or Config.Self).
func MaybeHelper() {
	switch os.Getenv(helperEnv) {
	case "":
		return
	case helperObserver:
		os.Exit(observerMain(os.Getenv(helperGroupEnv), os.Stdin, os.Stdout))
	case helperRelay:
		os.Exit(relayMain(os.Getenv(helperGroupEnv), os.Getenv(helperShmEnv), os.Stdin, os.Stdout))
	case helperHop:
		os.Exit(hopMain(os.Getenv(helperHopInEnv), os.Getenv(helperHopOutEnv), os.Stdin, os.Stdout))
	case helperHeartbeat:
		os.Exit(heartbeatMain(os.Getenv(helperGroupEnv), os.Getenv(helperIntervalEnv), os.Stdin, os.Stdout))
	default:
		fmt.Fprintf(os.Stderr, "bench: unknown helper %q\n", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// clockPair reads CLOCK_MONOTONIC and the wall clock at one instant: the
// monotonic clock before and after the wall clock, again (up to five
// times) while the two are more than pairSlack apart, as when the thread
// was preempted between them, and the midpoint of the closest pair. A
// written_at (wall clock) is carried to the monotonic clock through such
// a pair; read one after the other, the two clocks were once 51 µs apart
// and a row seemed written after it was seen (TestE2EShort, 3 December
// 2026).
func clockPair() (mono, wall int64) {
	best := int64(math.MaxInt64)
	for range 5 {
		m1 := monoNow()
		w := time.Now().UnixNano()
		d := monoNow() - m1
		if d < best {
			best, mono, wall = d, m1+d/2, w
		}
		if best <= int64(pairSlack) {
			break
		}
	}
	return mono, wall
}

// pairSlack is how far apart clockPair's two monotonic readings may be.
const pairSlack = 5 * time.Microsecond

// observerMain is the observer process.
func observerMain(group string, in io.Reader, out io.Writer) int {
	ap, err := netip.ParseAddrPort(group)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench observer: group %q: %v\n", group, err)
		return 2
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench observer: %v\n", err)
		return 1
	}
	c, err := net.ListenMulticastUDP("udp4", lo, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench observer: %v\n", err)
		return 1
	}
	var mu sync.Mutex
	say := func(b []byte) {
		mu.Lock()
		out.Write(b)
		mu.Unlock()
	}
	sayf := func(format string, args ...any) { say(fmt.Appendf(nil, format, args...)) }

	go func() {
		buf := make([]byte, 64)
		line := make([]byte, 0, 64)
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			t := monoNow()
			if err != nil {
				fmt.Fprintf(os.Stderr, "bench observer: %v\n", err)
				os.Exit(1)
			}
			if n < 8 {
				continue
			}
			line = append(line[:0], "mc "...)
			line = strconv.AppendUint(line, binary.LittleEndian.Uint64(buf), 10)
			line = append(line, ' ')
			line = strconv.AppendInt(line, t, 10)
			line = append(line, '\n')
			say(line)
		}
	}()

	var readers [2]*shmem.Reader // slot 0: the agent's segment; 1: the relay's
	slotOf := func(f []string, n int) (int, bool) {
		if len(f) == n {
			return 0, true
		}
		k, err := strconv.Atoi(f[n])
		return k, len(f) == n+1 && err == nil && k >= 0 && k < len(readers)
	}
	sayf("ready\n")
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		id := f[1]
		switch {
		case f[0] == "open" && (len(f) == 5 || len(f) == 6):
			slot, ok := slotOf(f, 5)
			if !ok {
				sayf("fail %s bad slot in %q\n", id, sc.Text())
				continue
			}
			pid, _ := strconv.Atoi(f[3])
			d, _ := strconv.ParseInt(f[4], 10, 64)
			if readers[slot] != nil {
				readers[slot].Close()
				readers[slot] = nil
			}
			var err error
			if readers[slot], err = openWriter(f[2], pid, time.Duration(d)); err != nil {
				sayf("fail %s %v\n", id, err)
			} else {
				sayf("opened %s\n", id)
			}
		case f[0] == "watch" && (len(f) == 6 || len(f) == 7):
			slot, ok := slotOf(f, 6)
			if !ok {
				sayf("fail %s bad slot in %q\n", id, sc.Text())
				continue
			}
			r := readers[slot]
			if r == nil {
				sayf("fail %s no segment open in slot %d\n", id, slot)
				continue
			}
			cond, err := condition(f[2], f[4])
			if err != nil {
				sayf("fail %s %v\n", id, err)
				continue
			}
			d, _ := strconv.ParseInt(f[5], 10, 64)
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(d))
			seq := r.Seq()
			sayf("armed %s\n", id)
			go func(r *shmem.Reader, name string) {
				defer cancel()
				mono, wall, stamp, written, err := observe(ctx, r, seq, name, cond)
				if err != nil {
					sayf("fail %s %v\n", id, err)
					return
				}
				sayf("seen %s %d %d %d %d\n", id, mono, wall, stamp, written)
			}(r, f[3])
		default:
			sayf("fail %s bad command %q\n", id, sc.Text())
		}
	}
	return 0
}

// openWriter opens the segment at path once the agent with this pid
// publishes it (after a restart the path holds the killed agent's segment
// until the new one replaces it).
func openWriter(path string, pid int, timeout time.Duration) (*shmem.Reader, error) {
	deadline := time.Now().Add(timeout)
	for {
		r, err := shmem.Open(path)
		if err == nil {
			h := r.Header()
			if h.Status == shmem.StatusReady && h.WriterPID == pid {
				return r, nil
			}
			r.Close()
			err = fmt.Errorf("writer %d, status %v", h.WriterPID, h.Status)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: no segment of pid %d after %v (%v)", path, pid, timeout, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// condition returns the test of a watch and what to stamp.
func condition(kind, arg string) (func(*shmem.Entity) (bool, int64), error) {
	cb := []byte(arg)
	switch kind {
	case "alarm":
		return func(e *shmem.Entity) (bool, int64) {
			if a, ok := e.FindAlarm(cb); ok {
				return true, a.RaisedAt
			}
			return false, 0
		}, nil
	case "noalarm":
		return func(e *shmem.Entity) (bool, int64) {
			_, ok := e.FindAlarm(cb)
			return !ok, e.ChangedAt
		}, nil
	case "state":
		want := wire.StateUp
		switch arg {
		case "up":
		case "down":
			want = wire.StateDown
		default:
			return nil, fmt.Errorf("state %q", arg)
		}
		return func(e *shmem.Entity) (bool, int64) { return e.State == want, e.ChangedAt }, nil
	case "exists":
		return func(e *shmem.Entity) (bool, int64) { return true, e.ChangedAt }, nil
	case "seq":
		n, err := strconv.ParseUint(arg, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("seq %q: %w", arg, err)
		}
		return func(e *shmem.Entity) (bool, int64) { return e.Incarnation >= n, e.ChangedAt }, nil
	}
	return nil, fmt.Errorf("condition %q", kind)
}

// observe reads name until cond holds, sleeping in Wait between commits.
// seq was taken before the caller said "armed": no later commit is missed.
func observe(ctx context.Context, r *shmem.Reader, seq uint64, name string, cond func(*shmem.Entity) (bool, int64)) (mono, wall, stamp, written int64, err error) {
	var e shmem.Entity
	for {
		err := r.ReadByName(name, &e)
		if err == nil {
			if ok, st := cond(&e); ok {
				mono, wall := clockPair()
				return mono, wall, st, e.WrittenAt, nil
			}
		}
		switch {
		case err == nil, errors.Is(err, shmem.ErrNotFound):
		case errors.Is(err, shmem.ErrTorn):
			continue // the writer was descheduled mid-commit: read again
		default:
			return 0, 0, 0, 0, err
		}
		if seq, err = r.Wait(ctx, seq); err != nil {
			return 0, 0, 0, 0, err
		}
	}
}

// msg is one answer of an observer.
type msg struct {
	obs   int // observer index
	kind  string
	id    uint64
	mono  int64
	wall  int64
	stamp int64
	// written is the row's written_at (unix ns) in a sighting.
	written int64
	text    string
}

// observers is this process's side: the observer processes, the sending
// socket of the baseline, and the answers.
type observers struct {
	n       int
	conn    *net.UDPConn
	dst     *net.UDPAddr
	procs   []*exec.Cmd
	stdin   []io.WriteCloser
	mc      chan msg
	ctl     chan msg
	pending []msg  // answers that came before they were awaited
	seq     uint64 // baseline datagrams
	id      uint64 // commands
	got     []int64
}

// startObservers starts n observer processes (self re-executed), joined
// to a fresh group and port, and the sending socket.
func startObservers(self string, n int) (*observers, error) {
	group := netip.AddrPortFrom(netip.AddrFrom4([4]byte{239, 255, byte(20 + rand.IntN(200)), byte(1 + rand.IntN(250))}),
		uint16(40000+rand.IntN(20000)))
	o := &observers{n: n, dst: net.UDPAddrFromAddrPort(group), mc: make(chan msg, 64*n), ctl: make(chan msg, 64*n), got: make([]int64, n)}
	for i := 0; i < n; i++ {
		cmd, in, sc, err := startHelper(self, helperEnv+"="+helperObserver, helperGroupEnv+"="+group.String())
		if cmd != nil {
			o.procs, o.stdin = append(o.procs, cmd), append(o.stdin, in)
		}
		if err != nil {
			o.stop()
			return nil, fmt.Errorf("bench: observer %d: %w", i+1, err)
		}
		go o.read(i, sc)
	}
	var err error
	if o.conn, err = multicastSender(); err != nil {
		o.stop()
		return nil, err
	}
	return o, nil
}

// multicastSender is a UDP socket on 127.0.0.1 that sends multicast on lo.
func multicastSender() (*net.UDPConn, error) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return nil, err
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	p := ipv4.NewPacketConn(c)
	for _, err := range []error{p.SetMulticastInterface(lo), p.SetMulticastTTL(1), p.SetMulticastLoopback(true)} {
		if err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// read parses observer i's answers.
func (o *observers) read(i int, sc *bufio.Scanner) {
	for sc.Scan() {
		kind, rest, _ := strings.Cut(sc.Text(), " ")
		m := msg{obs: i, kind: kind}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		m.id, _ = strconv.ParseUint(f[0], 10, 64)
		switch kind {
		case "mc":
			if len(f) == 2 {
				m.mono, _ = strconv.ParseInt(f[1], 10, 64)
				o.mc <- m
			}
			continue
		case "seen":
			if len(f) == 5 {
				m.mono, _ = strconv.ParseInt(f[1], 10, 64)
				m.wall, _ = strconv.ParseInt(f[2], 10, 64)
				m.stamp, _ = strconv.ParseInt(f[3], 10, 64)
				m.written, _ = strconv.ParseInt(f[4], 10, 64)
			}
		case "fail":
			_, m.text, _ = strings.Cut(rest, " ")
		}
		o.ctl <- m
	}
}

// send writes a command to observer i.
func (o *observers) send(i int, format string, args ...any) error {
	_, err := fmt.Fprintf(o.stdin[i], format+"\n", args...)
	return err
}

// await collects, from the observers in which, the answer kind to command
// id; fail answers and a timeout are errors (naming nodes by which[k]+1).
// An answer that comes early (a sighting while the others are still
// arming) is kept for the next await.
func (o *observers) await(which []int, id uint64, kind string, timeout time.Duration) ([]msg, error) {
	out := make([]msg, o.n)
	done := make([]bool, o.n)
	left := len(which)
	var errs []string
	consider := func(m msg) {
		switch {
		case m.id != id:
			// A late answer to an earlier command: dropped.
		case done[m.obs] || (m.kind != kind && m.kind != "fail"):
			o.pending = append(o.pending, m)
		default:
			done[m.obs] = true
			left--
			if m.kind == "fail" {
				errs = append(errs, fmt.Sprintf("node %d: %s", m.obs+1, m.text))
			} else {
				out[m.obs] = m
			}
		}
	}
	pending := o.pending
	o.pending = nil
	for _, m := range pending {
		consider(m)
	}
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for left > 0 {
		select {
		case m := <-o.ctl:
			consider(m)
		case <-tm.C:
			for _, i := range which {
				if !done[i] {
					errs = append(errs, fmt.Sprintf("node %d: no %q within %v", i+1, kind, timeout))
				}
			}
			left = 0
		}
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	res := make([]msg, 0, len(which))
	for _, i := range which {
		res = append(res, out[i])
	}
	return res, nil
}

// open has the observers of nodes ids (1-based) open their node's segment
// as published by the agent with pid pids[k].
func (o *observers) open(ids []int, paths []string, pids []int, timeout time.Duration) error {
	return o.openSlot(0, ids, paths, pids, timeout)
}

// openSlot is open into reader slot (0: the agents', 1: the relays').
func (o *observers) openSlot(slot int, ids []int, paths []string, pids []int, timeout time.Duration) error {
	o.id++
	which := make([]int, len(ids))
	for k, i := range ids {
		which[k] = i - 1
		if err := o.send(i-1, "open %d %s %d %d %d", o.id, paths[k], pids[k], int64(timeout), slot); err != nil {
			return err
		}
	}
	_, err := o.await(which, o.id, "opened", timeout+time.Second)
	return err
}

// armed is a watch every observer of which has armed.
type armed struct {
	o       *observers
	id      uint64
	which   []int
	timeout time.Duration
}

// watch has the observers of nodes ids (1-based) wait for cond (see the
// protocol) on the entity name, and returns once every one has armed: no
// commit after watch returns can be missed.
func (o *observers) watch(ids []int, cond, name, arg string, timeout time.Duration) (*armed, error) {
	return o.watchSlot(0, ids, cond, name, arg, timeout)
}

// watchSlot is watch on the segments of reader slot.
func (o *observers) watchSlot(slot int, ids []int, cond, name, arg string, timeout time.Duration) (*armed, error) {
	if arg == "" {
		arg = "-"
	}
	o.id++
	which := make([]int, len(ids))
	for k, i := range ids {
		which[k] = i - 1
		if err := o.send(i-1, "watch %d %s %s %s %d %d", o.id, cond, name, arg, int64(timeout), slot); err != nil {
			return nil, err
		}
	}
	if _, err := o.await(which, o.id, "armed", timeout); err != nil {
		return nil, err
	}
	return &armed{o: o, id: o.id, which: which, timeout: timeout}, nil
}

// wait returns every observer's sighting (in the order of ids), or an
// error naming the nodes where the condition was not seen.
func (a *armed) wait() ([]msg, error) {
	return a.o.await(a.which, a.id, "seen", a.timeout+time.Second)
}

// span returns the first and the last sighting's monotonic stamp.
func span(ms []msg) (first, last int64) {
	for k, m := range ms {
		if k == 0 || m.mono < first {
			first = m.mono
		}
		if k == 0 || m.mono > last {
			last = m.mono
		}
	}
	return first, last
}

// extreme returns the least (later false) or the greatest (later true) of
// a stamp of the sightings.
func extreme(ms []msg, later bool, stamp func(msg) int64) int64 {
	var w int64
	for k, m := range ms {
		if v := stamp(m); k == 0 || later && v > w || !later && v < w {
			w = v
		}
	}
	return w
}

// firstWall returns the earliest wall-clock stamp of the sightings.
func firstWall(ms []msg) int64 { return extreme(ms, false, func(m msg) int64 { return m.wall }) }

// lastWall returns the latest wall-clock stamp of the sightings.
func lastWall(ms []msg) int64 { return extreme(ms, true, func(m msg) int64 { return m.wall }) }

// lastWritten returns the latest written_at of the sightings: when the
// last table had the row (wall clock).
func lastWritten(ms []msg) int64 { return extreme(ms, true, func(m msg) int64 { return m.written }) }

// writtenMono is a sighting's written_at on the monotonic clock, through
// the pair of readings the observer took when it saw the row.
func writtenMono(m msg) int64 { return m.mono - (m.wall - m.written) }

// sample sends one baseline datagram and waits until every observer has
// it. It returns the time to the first and to the last.
func (o *observers) sample(timeout time.Duration) (first, last time.Duration, err error) {
	o.seq++
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], o.seq)
	for i := range o.got {
		o.got[i] = 0
	}
	t0 := monoNow()
	if _, err := o.conn.WriteToUDP(b[:], o.dst); err != nil {
		return 0, 0, err
	}
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for k := 0; k < o.n; {
		select {
		case m := <-o.mc:
			if m.id != o.seq || o.got[m.obs] != 0 {
				continue // a late answer to an earlier datagram
			}
			o.got[m.obs] = m.mono
			k++
		case <-tm.C:
			var missing []int
			for i, t := range o.got {
				if t == 0 {
					missing = append(missing, i+1)
				}
			}
			return 0, 0, fmt.Errorf("baseline datagram %d not received by the observers of nodes %v within %v", o.seq, missing, timeout)
		}
	}
	lo, hi := o.got[0], o.got[0]
	for _, t := range o.got[1:] {
		lo, hi = min(lo, t), max(hi, t)
	}
	return time.Duration(lo - t0), time.Duration(hi - t0), nil
}

// stop closes the observers' stdin (they exit) and waits for them.
func (o *observers) stop() {
	if o.conn != nil {
		o.conn.Close()
	}
	stopHelpers(o.stdin, o.procs)
}

// startHelper starts this program again as a helper with env added, and
// waits for its "ready" (startReady).
func startHelper(self string, env ...string) (*exec.Cmd, io.WriteCloser, *bufio.Scanner, error) {
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), env...)
	return startReady(cmd)
}

// startReady starts cmd, a helper that says "ready" on its stdout and ends
// when its stdin closes, killed if this process dies, and waits for its
// "ready". A helper that started is returned (with its stdin and the
// scanner of its stdout) even with an error, for the caller to stop.
func startReady(cmd *exec.Cmd) (*exec.Cmd, io.WriteCloser, *bufio.Scanner, error) {
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, fmt.Errorf("starting: %w", err)
	}
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "ready" {
		return cmd, in, nil, errors.New("did not start")
	}
	return cmd, in, sc, nil
}

// stopHelpers closes the helpers' stdin (they end) and waits for them,
// killing any that takes over 2 s.
func stopHelpers(stdin []io.WriteCloser, procs []*exec.Cmd) {
	for _, in := range stdin {
		in.Close()
	}
	for _, p := range procs {
		done := make(chan struct{})
		go func() {
			p.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			p.Process.Kill()
			<-done
		}
	}
}

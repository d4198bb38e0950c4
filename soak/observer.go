package soak

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/wire"
)

// observer timestamps every multicast datagram of the cluster with the
// time the kernel received it (SO_TIMESTAMPNS, as the agents judge their
// peers' heartbeats), read every observerPace on a locked thread at
// SCHED_FIFO (when permitted), so that its own delays in reading do not
// shift the times it keeps; and it keeps the gap between consecutive
// datagrams of each source (an agent on one network): heartbeats are the
// periodic traffic, so the gaps are the heartbeat gaps as a real-time
// receiver sees them. Other packets only shorten a gap, never lengthen it.
type observer struct {
	fd      int
	stopped atomic.Bool
	done    chan struct{}
	mu      sync.Mutex
	last    map[netip.AddrPort]time.Time
	gaps    []time.Duration
	// bound is the detection bound: a gap longer is a silence, kept
	// with its times (the first and the last datagram around it) and its
	// sender, read from the header (wire.Codec.Peek: not authenticated,
	// which a harness that wrote the agents' configurations can afford).
	bound    time.Duration
	silences []silence
	codec    *wire.Codec
}

// span is a stretch of time.
type span struct{ from, to time.Time }

// silence is a span in which the observer heard nothing from one agent on
// one network (node: its ID; 0 when its datagrams had no header).
type silence struct {
	span
	node int
}

func newObserver(groupA, groupB string, port int, cluster uint32) (*observer, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("soak: observer socket: %w", err)
	}
	o := &observer{fd: fd, last: make(map[netip.AddrPort]time.Time), codec: wire.NewCodec(cluster, nil)}
	fail := func(what string, err error) (*observer, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("soak: observer %s: %w", what, err)
	}
	for _, opt := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT, unix.SO_TIMESTAMPNS} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 1); err != nil {
			return fail("setsockopt", err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20); err != nil {
		return fail("SO_RCVBUF", err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000}); err != nil {
		return fail("SO_RCVTIMEO", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port}); err != nil {
		return fail("bind", err)
	}
	for _, g := range []string{groupA, groupB} {
		ga := netip.MustParseAddr(g).As4()
		mreq := &unix.IPMreqn{Multiaddr: ga, Address: [4]byte{127, 0, 0, 1}}
		if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq); err != nil {
			return fail("joining "+g, err)
		}
	}
	return o, nil
}

// reset forgets what was seen (the gaps start at the next datagram) and
// keeps every gap longer than bound from then on as a silence. What the
// socket queued meanwhile (the cluster's forming, the idle window) is
// discarded unread: with the kernel's times, a queue that overflowed
// while no one read it would read as a silence as long as the wait.
func (o *observer) reset(bound time.Duration) {
	buf := make([]byte, 2048)
	for range 1 << 20 {
		if _, _, err := unix.Recvfrom(o.fd, buf, unix.MSG_DONTWAIT); err != nil {
			break
		}
	}
	o.mu.Lock()
	clear(o.last)
	o.gaps = o.gaps[:0]
	o.bound, o.silences = bound, o.silences[:0]
	o.mu.Unlock()
}

// start runs the observer (run) until stop.
func (o *observer) start() {
	o.done = make(chan struct{})
	go o.run()
}

// observerPace is how often the observer reads what its socket queued.
// It keeps the kernel's receive times, so a later read shifts nothing; and
// every wake-up of its thread is a context switch at SCHED_FIFO, which
// takes the CPU from the agents' own threads at the normal policy (the
// very threads whose late wake-ups stretch a real-time loop's yield:
// DESIGN §8). Woken by every datagram, as it was, the observer woke 5,000
// times a second at the 10 ms profile (five agents, two networks); paced,
// 250. The socket's queue (4 MiB) holds more than half a second of them.
const observerPace = 4 * time.Millisecond

// run reads until stop, on its own locked thread, everything queued once
// every observerPace.
func (o *observer) run() {
	defer close(o.done)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Best effort: its own delays no longer shift the times it keeps (the
	// kernel's), but one longer than its socket can queue would lose
	// datagrams and read as silences.
	_ = unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 10, Flags: unix.SCHED_FLAG_RESET_ON_FORK}, 0)
	buf, oob := make([]byte, 2048), make([]byte, 64)
	var next unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &next)
	for !o.stopped.Load() {
		for {
			n, oobn, _, from, err := unix.Recvmsg(o.fd, buf, oob, unix.MSG_DONTWAIT)
			if err != nil {
				break // EAGAIN: all read
			}
			o.note(buf[:n], oob[:oobn], from)
		}
		next = unix.NsecToTimespec(next.Nano() + int64(observerPace))
		var now unix.Timespec
		if unix.ClockGettime(unix.CLOCK_MONOTONIC, &now) == nil && now.Nano() > next.Nano() {
			next = now // behind (a stall of the machine's): no catching up
		}
		for unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &next, nil) == unix.EINTR {
		}
	}
}

// note keeps the gap since the last datagram of pkt's source, at the
// kernel's receive time in oob.
func (o *observer) note(pkt, oob []byte, from unix.Sockaddr) {
	now, ok := kernelStamp(oob)
	if !ok {
		now = time.Now()
	}
	sa, ok := from.(*unix.SockaddrInet4)
	if !ok {
		return
	}
	src := netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	o.mu.Lock()
	defer o.mu.Unlock()
	if t, ok := o.last[src]; ok {
		gap := now.Sub(t)
		o.gaps = append(o.gaps, gap)
		if o.bound > 0 && gap > o.bound {
			node := 0
			if h, err := o.codec.Peek(pkt); err == nil {
				node = int(h.Sender)
			}
			o.silences = append(o.silences, silence{span{t, now}, node})
		}
	}
	o.last[src] = now
}

// stop ends run and returns the gaps, sorted, and the silences.
func (o *observer) stop() ([]time.Duration, []silence) {
	o.stopped.Store(true)
	if o.done != nil {
		<-o.done
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	g := slices.Clone(o.gaps)
	slices.Sort(g)
	return g, slices.Clone(o.silences)
}

// lateTick is a late tick an agent logged (agent/rtlate.go): from the
// deadline it was due at to when it came, on node, and what held it most
// (yield, lock_wait, wake).
type lateTick struct {
	span
	node  int
	cause string
}

// attribution of the silences of a soak.
type attribution struct {
	merged  int            // silences, overlapping ones merged
	inStall int            // of them, overlapping a stall of the machine's own
	ownLate map[string]int // of the others, in a late tick of a silent agent's own, by its cause
}

// attribute merges overlapping silences (one agent silent on both
// networks, or several agents at once, is one) and counts how many of
// them overlap a stall of the machine (widened by stallTol either side:
// the probe's clock starts a little after the harness's), and how many of
// the others overlap a late tick that one of the silent agents logged
// itself (widened by lateTol: its heartbeat went out as it ticked), by the
// tick's cause.
func attribute(silences []silence, stalls []span, late []lateTick, stallTol, lateTol time.Duration) attribution {
	slices.SortFunc(silences, func(a, b silence) int { return a.from.Compare(b.from) })
	var groups [][]silence
	var cur span
	for _, s := range silences {
		if n := len(groups); n > 0 && !s.from.After(cur.to) {
			groups[n-1] = append(groups[n-1], s)
			if s.to.After(cur.to) {
				cur.to = s.to
			}
			continue
		}
		groups, cur = append(groups, []silence{s}), s.span
	}
	overlaps := func(a, b span, tol time.Duration) bool {
		return !a.from.After(b.to.Add(tol)) && !b.from.Add(-tol).After(a.to)
	}
	at := attribution{merged: len(groups), ownLate: map[string]int{}}
group:
	for _, g := range groups {
		whole := g[0].span
		for _, s := range g {
			if s.to.After(whole.to) {
				whole.to = s.to
			}
		}
		for _, m := range stalls {
			if overlaps(whole, m, stallTol) {
				at.inStall++
				continue group
			}
		}
		for _, s := range g {
			for _, l := range late {
				if l.node == s.node && overlaps(s.span, l.span, lateTol) {
					at.ownLate[l.cause]++
					continue group
				}
			}
		}
	}
	return at
}

func (o *observer) close() { unix.Close(o.fd) }

// kernelStamp is the SO_TIMESTAMPNS time in a datagram's control messages.
func kernelStamp(oob []byte) (time.Time, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16 {
			sec, nsec := binary.NativeEndian.Uint64(m.Data[0:8]), binary.NativeEndian.Uint64(m.Data[8:16])
			return time.Unix(int64(sec), int64(nsec)), true
		}
	}
	return time.Time{}, false
}

// quantile of sorted durations (q = 1: the maximum).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

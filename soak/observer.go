package soak

import (
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/transport"
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
//
// What it does for a datagram allocates nothing (drain, tested by
// TestObserverDrainAllocs): an observer that allocates sets Go's collector
// going in the harness, whose mark assists and workers then hold CPUs
// beside the agents' own loops (a trace showed the observer's goroutine on
// a CPU for 163 ms straight as an agent collapsed), which a real node does
// not run beside them.
type observer struct {
	fd      int
	stopped atomic.Bool
	done    chan struct{}
	mu      sync.Mutex
	// last is the kernel's time of the last datagram of each source since
	// reset: a slice searched in order, not a map, as there are a few
	// sources (an agent on one network each) and no insertion may allocate
	// (its capacity, observerSources, is set once).
	last []lastSeen
	// gaps is allocated once with room for a soak's (observerGaps), so that
	// keeping one does not allocate (only a longer soak's would grow it).
	gaps []time.Duration
	// bound is the detection bound: a gap longer is a silence, kept
	// with its times (the first and the last datagram around it) and its
	// sender, read from the header (wire.Codec.Peek: not authenticated,
	// which a harness that wrote the agents' configurations can afford).
	bound    time.Duration
	silences []silence
	codec    *wire.Codec
	rx       rxBatch // what drain reads into, under mu
}

// lastSeen is the kernel's time of a source's last datagram.
type lastSeen struct {
	src netip.AddrPort
	at  time.Time
}

// observerBatch is how many datagrams one system call reads (recvmmsg): a
// wake-up finds about 4 ms of the cluster's traffic queued (some twenty
// heartbeats at the 10 ms profile, five agents, two networks), so usually
// one call reads them all.
const observerBatch = 64

// observerSources is the capacity last is allocated with: a source is an
// agent on one network, ten in a soak of five agents.
const observerSources = 64

// observerGaps is the capacity gaps is allocated with: a 60 s hog of five
// agents on two networks at 100 Hz is 60,000 heartbeats, and other traffic
// (elections, the flood's alarms) some more; 1<<20 (8 MiB) is ample.
const observerGaps = 1 << 20

// rxBatch is what one recvmmsg reads into, set up once (newObserver) so
// that reading allocates nothing: a header per datagram (unix.Mmsghdr,
// struct mmsghdr), each pointing at its own buffer, address and control
// buffer. It holds pointers into itself, so it lives where it was set up
// (in the observer, never copied).
type rxBatch struct {
	msgs  [observerBatch]unix.Mmsghdr
	iovs  [observerBatch]unix.Iovec
	names [observerBatch]unix.RawSockaddrInet4
	ctls  [observerBatch]cmsgBuf
	bufs  [observerBatch][2048]byte // more than a datagram of the cluster's (wire.MaxDatagram)
}

// cmsgBuf is a control buffer, aligned as the kernel's control messages
// are (their headers are read in place: kernelStamp). The SO_TIMESTAMPNS
// message it is for takes 32 bytes.
type cmsgBuf struct {
	_ [0]uint64
	b [64]byte
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
	o := &observer{
		fd:    fd,
		last:  make([]lastSeen, 0, observerSources),
		gaps:  make([]time.Duration, 0, observerGaps),
		codec: wire.NewCodec(cluster, nil),
	}
	rx := &o.rx
	for i := range rx.msgs {
		rx.iovs[i].Base = &rx.bufs[i][0]
		rx.iovs[i].SetLen(len(rx.bufs[i]))
		h := &rx.msgs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&rx.names[i]))
		h.Iov = &rx.iovs[i]
		h.SetIovlen(1)
		h.Control = &rx.ctls[i].b[0]
	}
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
	o.mu.Lock()
	for range (1 << 20) / observerBatch {
		if o.recv() < observerBatch {
			break
		}
	}
	o.last = o.last[:0]
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
	// Best effort, at SCHED_FIFO 1: below the agents' loops (10). It keeps
	// the kernel's times, so its own delays shift nothing it reports; it
	// only must not lose datagrams, which takes a delay longer than its
	// socket can queue (4 MiB, more than half a second of them; they would
	// read as silences), and above the normal policy (the burners') it is
	// not delayed that long. And it must never take a CPU from an agent's
	// loop, whose lateness is what the soak measures.
	_ = unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 1, Flags: unix.SCHED_FLAG_RESET_ON_FORK}, 0)
	var next unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &next)
	for !o.stopped.Load() {
		o.drain()
		next = unix.NsecToTimespec(next.Nano() + int64(observerPace))
		var now unix.Timespec
		if unix.ClockGettime(unix.CLOCK_MONOTONIC, &now) == nil && now.Nano() > next.Nano() {
			next = now // behind (a stall of the machine's): no catching up
		}
		for unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &next, nil) == unix.EINTR {
		}
	}
}

// drain reads everything its socket queued, observerBatch datagrams a
// system call, and keeps their gaps (note); it returns how many datagrams
// it read. It allocates nothing (TestObserverDrainAllocs): the datagrams,
// their senders and their times are read in place (rxBatch, kernelStamp),
// and the mutex is taken once for all of them, not once a datagram.
func (o *observer) drain() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	read := 0
	for {
		n := o.recv()
		for i := range n {
			m, name := &o.rx.msgs[i], &o.rx.names[i]
			if m.Hdr.Namelen < unix.SizeofSockaddrInet4 || name.Family != unix.AF_INET {
				continue // not from an IPv4 sender: none of the cluster's
			}
			now, ok := kernelStamp(o.rx.ctls[i].b[:min(int(m.Hdr.Controllen), len(o.rx.ctls[i].b))])
			if !ok {
				now = time.Now()
			}
			port := (*[2]byte)(unsafe.Pointer(&name.Port)) // network byte order
			src := netip.AddrPortFrom(netip.AddrFrom4(name.Addr), uint16(port[0])<<8|uint16(port[1]))
			o.note(o.rx.bufs[i][:min(int(m.Len), len(o.rx.bufs[i]))], src, now)
		}
		read += n
		if n < observerBatch {
			return read // all read (or an error: EAGAIN, none queued)
		}
	}
}

// recv reads up to observerBatch queued datagrams into o.rx without
// waiting, and returns how many (0 on an error: EAGAIN, none queued).
// o.mu is held.
func (o *observer) recv() int {
	for i := range o.rx.msgs {
		// The kernel writes back the lengths it used.
		o.rx.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
		o.rx.msgs[i].Hdr.SetControllen(len(o.rx.ctls[i].b))
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(o.fd), uintptr(unsafe.Pointer(&o.rx.msgs[0])), observerBatch, unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0
	}
	return int(n)
}

// note keeps the gap since the last datagram of src, received (the
// kernel's time) at now. o.mu is held.
func (o *observer) note(pkt []byte, src netip.AddrPort, now time.Time) {
	i := 0
	for i < len(o.last) && o.last[i].src != src {
		i++
	}
	if i == len(o.last) {
		o.last = append(o.last, lastSeen{src, now})
		return
	}
	t := o.last[i].at
	gap := now.Sub(t)
	o.gaps = append(o.gaps, gap)
	if o.bound > 0 && gap > o.bound {
		// Rare: Peek allocates nothing, the append may.
		node := 0
		if h, err := o.codec.Peek(pkt); err == nil {
			node = int(h.Sender)
		}
		o.silences = append(o.silences, silence{span{t, now}, node})
	}
	o.last[i].at = now
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
// (yield, lock_wait, wake, work).
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

// kernelStamp is the SO_TIMESTAMPNS time in a datagram's control messages
// (transport.KernelStamp: read in place, where unix.ParseSocketControlMessage
// would allocate a slice of them for every datagram).
func kernelStamp(oob []byte) (time.Time, bool) {
	ns := transport.KernelStamp(oob)
	if ns == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

// quantile of sorted durations (q = 1: the maximum).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

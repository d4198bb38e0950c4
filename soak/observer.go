package soak

import (
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// observer timestamps every multicast datagram of the cluster on a locked
// thread at SCHED_FIFO (when permitted) with blocking reads, and keeps the
// gap between consecutive datagrams of each source (an agent on one
// network): heartbeats are the periodic traffic, so the gaps are the
// heartbeat gaps as a real-time receiver sees them. Other packets only
// shorten a gap, never lengthen it.
type observer struct {
	fd      int
	stopped atomic.Bool
	done    chan struct{}
	mu      sync.Mutex
	last    map[netip.AddrPort]time.Time
	gaps    []time.Duration
	// bound is the detection bound: a gap longer is a silence, kept
	// with its times (the first and the last datagram around it).
	bound    time.Duration
	silences []span
}

// span is a stretch of time.
type span struct{ from, to time.Time }

func newObserver(groupA, groupB string, port int) (*observer, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("soak: observer socket: %w", err)
	}
	o := &observer{fd: fd, last: make(map[netip.AddrPort]time.Time)}
	fail := func(what string, err error) (*observer, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("soak: observer %s: %w", what, err)
	}
	for _, opt := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT} {
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
// keeps every gap longer than bound from then on as a silence.
func (o *observer) reset(bound time.Duration) {
	o.mu.Lock()
	clear(o.last)
	o.gaps = o.gaps[:0]
	o.bound, o.silences = bound, o.silences[:0]
	o.mu.Unlock()
}

// run reads until stop, on its own locked thread.
func (o *observer) run() {
	o.done = make(chan struct{})
	defer close(o.done)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Best effort: without SCHED_FIFO the observer's own delays add to the
	// gaps it reports (said in the results: realtime false).
	_ = unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 10, Flags: unix.SCHED_FLAG_RESET_ON_FORK}, 0)
	buf := make([]byte, 2048)
	for !o.stopped.Load() {
		_, from, err := unix.Recvfrom(o.fd, buf, 0)
		now := time.Now()
		if err != nil {
			continue // EAGAIN after the receive timeout: check stop
		}
		sa, ok := from.(*unix.SockaddrInet4)
		if !ok {
			continue
		}
		src := netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
		o.mu.Lock()
		if t, ok := o.last[src]; ok {
			gap := now.Sub(t)
			o.gaps = append(o.gaps, gap)
			if o.bound > 0 && gap > o.bound {
				o.silences = append(o.silences, span{t, now})
			}
		}
		o.last[src] = now
		o.mu.Unlock()
	}
}

// stop ends run and returns the gaps, sorted, and the silences.
func (o *observer) stop() ([]time.Duration, []span) {
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

// attribute merges overlapping silences (one agent silent on both
// networks, or several agents at once, is one) and counts how many of
// them overlap a stall of the machine (widened by tol either side: the
// probe's clock starts a little after the harness's).
func attribute(silences, stalls []span, tol time.Duration) (merged, inStall int) {
	slices.SortFunc(silences, func(a, b span) int { return a.from.Compare(b.from) })
	var cur []span
	for _, s := range silences {
		if n := len(cur); n > 0 && !s.from.After(cur[n-1].to) {
			if s.to.After(cur[n-1].to) {
				cur[n-1].to = s.to
			}
			continue
		}
		cur = append(cur, s)
	}
	for _, s := range cur {
		for _, m := range stalls {
			if !s.from.After(m.to.Add(tol)) && !m.from.Add(-tol).After(s.to) {
				inStall++
				break
			}
		}
	}
	return len(cur), inStall
}

func (o *observer) close() { unix.Close(o.fd) }

// quantile of sorted durations (q = 1: the maximum).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

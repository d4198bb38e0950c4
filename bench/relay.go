package bench

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/transport"
	"github.com/fmagent/fmagent/wire"
)

// The two-hop floor. Down propagation goes through two hops — the master's
// datagram to N real-time loops, then each loop's commit to its readers'
// futex — while the baseline (observers.go) is one: a datagram to N
// readers. The floor measures the two hops with nothing else: N relay
// processes, each a thread at SCHED_FIFO (the agents' default priority)
// blocked in recvfrom on a multicast group, which on each datagram puts one
// entity into a shared-memory segment of its own and commits (which wakes
// the futex); observer i watches relay i's segment as it watches node i's.
// Send to seen by all, as for the baseline. What the agents add to it is
// their protocol and bookkeeping; what it adds to the baseline is the
// second hop, which no design that publishes through shared memory avoids.

const (
	helperRelay  = "relay"
	helperShmEnv = "FMAGENT_BENCH_SHM" // the relay's segment path
	relayEntity  = "svc/bench-relay"
)

// relayMain is a relay process: it says "ready" once its segment is
// published and its socket joined, relays until its stdin closes, and
// removes its segment.
func relayMain(group, path string, in io.Reader, out io.Writer) int {
	ap, err := netip.ParseAddrPort(group)
	if err != nil || !ap.Addr().Is4() {
		fmt.Fprintf(os.Stderr, "bench relay: group %q: %v\n", group, err)
		return 2
	}
	w, err := shmem.Create(path, shmem.Options{Capacity: 16, EventRingSize: 64})
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench relay: %v\n", err)
		return 1
	}
	defer func() {
		w.Close()
		w.Unlink()
	}()
	var e shmem.Entity
	_ = e.SetName(relayEntity)
	e.Kind, e.State = wire.KindService, wire.StateUp
	w.Begin()
	if err := w.Put(&e); err != nil {
		fmt.Fprintf(os.Stderr, "bench relay: %v\n", err)
		return 1
	}
	w.Commit()

	fd, err := relaySocket(ap)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench relay: %v\n", err)
		return 1
	}
	started := make(chan struct{})
	done := make(chan struct{})
	var stopping atomic.Bool
	go func() {
		defer close(done)
		_ = transport.RunLocked(transport.ThreadOptions{Realtime: true, Logf: func(f string, a ...any) {
			fmt.Fprintf(os.Stderr, "bench relay: "+f+"\n", a...)
		}}, func() {
			close(started)
			buf := make([]byte, 64)
			for {
				n, _, err := unix.Recvfrom(fd, buf, 0)
				if stopping.Load() {
					return
				}
				switch {
				case err == unix.EAGAIN || err == unix.EINTR:
					w.Beat() // the receive timeout: nothing sent for a while
					continue
				case err != nil:
					fmt.Fprintf(os.Stderr, "bench relay: recvfrom: %v\n", err)
					return
				case n < 8:
					continue
				}
				e.Incarnation = binary.LittleEndian.Uint64(buf)
				e.ChangedAt = time.Now().UnixNano()
				w.Begin()
				if w.Put(&e) == nil {
					w.Commit()
				} else {
					w.Abort()
				}
				w.Beat() // after the commit (off the readers' path): a busy relay is alive too
			}
		})
	}()
	<-started
	fmt.Fprintln(out, "ready")
	io.Copy(io.Discard, in) // until the harness closes stdin
	stopping.Store(true)    // seen within the receive timeout
	<-done
	unix.Close(fd)
	return 0
}

// relaySocket is a blocking UDP socket joined to group on lo, with a receive
// timeout (so the relay beats its segment's heartbeat while idle).
func relaySocket(group netip.AddrPort) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	mreq := &unix.IPMreq{Multiaddr: group.Addr().As4(), Interface: [4]byte{127, 0, 0, 1}}
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	for _, step := range []func() error{
		func() error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) },
		func() error {
			return unix.Bind(fd, &unix.SockaddrInet4{Port: int(group.Port()), Addr: group.Addr().As4()})
		},
		func() error { return unix.SetsockoptIPMreq(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq) },
		func() error { return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv) },
	} {
		if err := step(); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	return fd, nil
}

// relays is this process's side of the floor: the relay processes and the
// socket that sends to them.
type relays struct {
	n     int
	procs []*exec.Cmd
	stdin []io.WriteCloser
	paths []string
	conn  *net.UDPConn
	dst   *net.UDPAddr
	seq   uint64
}

// startRelays starts n relay processes (self re-executed) on a fresh group
// and port, relay i publishing its segment at prefix-i.
func startRelays(self, prefix string, n int) (*relays, error) {
	group := netip.AddrPortFrom(netip.AddrFrom4([4]byte{239, 255, byte(20 + rand.IntN(200)), byte(1 + rand.IntN(250))}),
		uint16(40000+rand.IntN(20000)))
	r := &relays{n: n, dst: net.UDPAddrFromAddrPort(group)}
	for i := 0; i < n; i++ {
		path := fmt.Sprintf("%s-%d", prefix, i+1)
		cmd, in, _, err := startHelper(self, helperEnv+"="+helperRelay, helperGroupEnv+"="+group.String(), helperShmEnv+"="+path)
		if cmd != nil {
			r.procs, r.stdin, r.paths = append(r.procs, cmd), append(r.stdin, in), append(r.paths, path)
		}
		if err != nil {
			r.stop()
			return nil, fmt.Errorf("bench: relay %d: %w", i+1, err)
		}
	}
	var err error
	if r.conn, err = multicastSender(); err != nil {
		r.stop()
		return nil, err
	}
	return r, nil
}

// pids returns the relays' process IDs, in order.
func (r *relays) pids() []int {
	out := make([]int, len(r.procs))
	for i, p := range r.procs {
		out[i] = p.Process.Pid
	}
	return out
}

// sample sends one datagram to the relays and waits until every observer
// (which has relay i's segment open in slot 1) has seen it there. It
// returns the time to the first and to the last sighting, and to the
// last relay's write of it (its row's written_at: one real-time hop).
func (r *relays) sample(o *observers, timeout time.Duration) (refTimes, error) {
	return r.sampleWith(o, timeout, func(b []byte) error {
		_, err := r.conn.WriteToUDP(b, r.dst)
		return err
	})
}

// sampleWith is sample with the 8 bytes sent by send (the report's floor
// sends them through two more hops: reportfloor.go).
func (r *relays) sampleWith(o *observers, timeout time.Duration, send func([]byte) error) (refTimes, error) {
	r.seq++
	ids := make([]int, r.n)
	for i := range ids {
		ids[i] = i + 1
	}
	a, err := o.watchSlot(1, ids, "seq", relayEntity, fmt.Sprint(r.seq), timeout)
	if err != nil {
		return refTimes{}, err
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], r.seq)
	t0 := monoNow()
	if err := send(b[:]); err != nil {
		return refTimes{}, err
	}
	ss, err := a.wait()
	if err != nil {
		return refTimes{}, fmt.Errorf("relay datagram %d: %w", r.seq, err)
	}
	lo, hi := span(ss)
	written := extreme(ss, true, writtenMono)
	return refTimes{first: time.Duration(lo - t0), last: time.Duration(hi - t0), written: time.Duration(written - t0)}, nil
}

// stop closes the relays' stdin (they remove their segments and exit) and
// waits for them.
func (r *relays) stop() {
	if r.conn != nil {
		r.conn.Close()
	}
	stopHelpers(r.stdin, r.procs)
}

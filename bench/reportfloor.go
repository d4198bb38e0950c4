package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/transport"
)

// The report's floor. A fault report reaches every table in three hops:
// the client's frame to its node's agent (a Unix socket), that agent's
// datagram to the master, and the master's datagram to every node, which
// writes its table. The baseline (observers.go) is one hop, the two-hop
// floor (relay.go) the last two. The report's floor is the three with
// nothing else: the harness writes 8 bytes on a Unix socket to a forwarder
// process, whose thread at SCHED_FIFO, blocked in read, sends them to a
// hub process, whose thread at SCHED_FIFO, blocked in recvfrom, sends them
// to the relays' group; the relays write them as for the two-hop floor.
// Report → written in every table is compared with the last relay's write
// of the same run (ReportFloorWritten): what the agents add is their
// protocol, the API's goroutines and the plugins, not the hops.

const (
	helperHop       = "hop"
	helperHopInEnv  = "FMAGENT_BENCH_HOP_IN"  // "unix:PATH", or "udp": a port on 127.0.0.1, said after "ready"
	helperHopOutEnv = "FMAGENT_BENCH_HOP_OUT" // ip:port it sends what it reads to (a group: on lo)
)

// hopMain is a forwarder (in "unix:PATH": it accepts one connection) or
// a hub (in "udp"): it says "ready" (a hub then its port), sends every 8
// bytes it reads to out until its stdin closes.
func hopMain(in, out string, stdin io.Reader, stdout io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "bench hop: %v\n", err)
		return 1
	}
	dst, err := netip.ParseAddrPort(out)
	if err != nil || !dst.Addr().Is4() {
		return fail(fmt.Errorf("out %q: %v", out, err))
	}
	sfd, err := hopSender(dst.Addr())
	if err != nil {
		return fail(err)
	}
	defer unix.Close(sfd)
	to := &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}

	// rfd: what the thread reads; ln: the forwarder's listener.
	rfd, ln, port := -1, -1, 0
	switch {
	case in == "udp":
		if rfd, port, err = hopUDP(); err != nil {
			return fail(err)
		}
	case strings.HasPrefix(in, "unix:"):
		if ln, err = hopListen(strings.TrimPrefix(in, "unix:")); err != nil {
			return fail(err)
		}
		defer unix.Close(ln)
	default:
		return fail(fmt.Errorf("in %q: neither udp nor unix:PATH", in))
	}

	var stopping atomic.Bool
	var conn atomic.Int64 // the forwarder's accepted connection (-1: none yet)
	conn.Store(-1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = transport.RunLocked(transport.ThreadOptions{Realtime: true, Logf: func(f string, a ...any) {
			fmt.Fprintf(os.Stderr, "bench hop: "+f+"\n", a...)
		}}, func() {
			fd := rfd
			if ln >= 0 {
				c, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
				if err != nil {
					if !stopping.Load() {
						fmt.Fprintf(os.Stderr, "bench hop: accept: %v\n", err)
					}
					return
				}
				conn.Store(int64(c))
				fd = c
			}
			var buf [64]byte
			have := 0 // a stream may cut the 8 bytes
			for {
				n, err := unix.Read(fd, buf[have:])
				if stopping.Load() {
					return
				}
				switch {
				case err == unix.EAGAIN || err == unix.EINTR:
					continue // the hub's receive timeout
				case err != nil:
					fmt.Fprintf(os.Stderr, "bench hop: read: %v\n", err)
					return
				case n == 0 && ln >= 0:
					return // the harness closed its connection
				}
				if ln < 0 {
					have = 0 // a datagram: whole or nothing
					if n != 8 {
						continue
					}
					n = 8
				} else {
					have += n
					if have < 8 {
						continue
					}
					n, have = 8, 0
				}
				if err := unix.Sendto(sfd, buf[:n], 0, to); err != nil {
					fmt.Fprintf(os.Stderr, "bench hop: sendto: %v\n", err)
				}
			}
		})
	}()
	fmt.Fprintln(stdout, "ready")
	if port != 0 {
		fmt.Fprintln(stdout, port)
	}
	io.Copy(io.Discard, stdin) // until the harness closes stdin
	stopping.Store(true)
	if ln >= 0 {
		unix.Shutdown(ln, unix.SHUT_RDWR) // ends an accept still waiting
		if c := conn.Load(); c >= 0 {
			unix.Shutdown(int(c), unix.SHUT_RDWR)
		}
	}
	<-done // the hub: within its receive timeout
	if c := conn.Load(); c >= 0 {
		unix.Close(int(c))
	}
	if rfd >= 0 {
		unix.Close(rfd)
	}
	return 0
}

// hopSender is a UDP socket on 127.0.0.1 that sends to dst (a multicast
// group on lo, looped back to this machine's members).
func hopSender(dst netip.Addr) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	steps := []func() error{func() error { return unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}) }}
	if dst.IsMulticast() {
		steps = append(steps,
			func() error {
				return unix.SetsockoptInet4Addr(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, [4]byte{127, 0, 0, 1})
			},
			func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 1) },
			func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 1) })
	}
	for _, step := range steps {
		if err := step(); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	return fd, nil
}

// hopUDP is the hub's blocking socket on 127.0.0.1 at a port the kernel
// chooses, with a receive timeout (so that the thread sees its stop).
func hopUDP() (fd, port int, err error) {
	if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
		return -1, 0, os.NewSyscallError("socket", err)
	}
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err = unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err == nil {
		err = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	}
	var sa unix.Sockaddr
	if err == nil {
		sa, err = unix.Getsockname(fd)
	}
	if err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	return fd, sa.(*unix.SockaddrInet4).Port, nil
}

// hopListen is the forwarder's listening Unix socket at path.
func hopListen(path string) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind %s: %w", path, err)
	}
	if err := unix.Listen(fd, 1); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// reportFloor is this process's side of the report's floor: the hub, the
// forwarder and the connection to it; the relays are the two-hop floor's.
type reportFloor struct {
	procs []*exec.Cmd
	stdin []io.WriteCloser
	dir   string
	conn  net.Conn
}

// startReportFloor starts the hub (sending to r's group) and the
// forwarder (sending to the hub), and connects to the forwarder.
func startReportFloor(self string, r *relays) (*reportFloor, error) {
	f := &reportFloor{}
	var err error
	if f.dir, err = os.MkdirTemp("", "fmbench-hop"); err != nil {
		return nil, err
	}
	start := func(in, out string) (*bufio.Scanner, error) {
		cmd, stdin, sc, err := startHelper(self, helperEnv+"="+helperHop, helperHopInEnv+"="+in, helperHopOutEnv+"="+out)
		if cmd != nil {
			f.procs, f.stdin = append(f.procs, cmd), append(f.stdin, stdin)
		}
		return sc, err
	}
	sc, err := start("udp", r.dst.String())
	if err != nil {
		f.stop()
		return nil, fmt.Errorf("bench: the report floor's hub: %w", err)
	}
	if !sc.Scan() {
		f.stop()
		return nil, errors.New("bench: the report floor's hub said no port")
	}
	port, err := strconv.Atoi(sc.Text())
	if err != nil {
		f.stop()
		return nil, fmt.Errorf("bench: the report floor's hub's port %q: %w", sc.Text(), err)
	}
	path := filepath.Join(f.dir, "forwarder.sock")
	if _, err := start("unix:"+path, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port)).String()); err != nil {
		f.stop()
		return nil, fmt.Errorf("bench: the report floor's forwarder: %w", err)
	}
	if f.conn, err = net.Dial("unix", path); err != nil {
		f.stop()
		return nil, err
	}
	return f, nil
}

// sample sends one sequence number through the three hops (r's relays
// at the end) and times it as the relays' own samples.
func (f *reportFloor) sample(r *relays, o *observers, timeout time.Duration) (refTimes, error) {
	return r.sampleWith(o, timeout, func(b []byte) error {
		_, err := f.conn.Write(b)
		return err
	})
}

// stop closes the connection and the helpers' stdin (they end), waits for
// them and removes the socket's directory.
func (f *reportFloor) stop() {
	if f.conn != nil {
		f.conn.Close()
	}
	stopHelpers(f.stdin, f.procs)
	if f.dir != "" {
		os.RemoveAll(f.dir)
	}
}

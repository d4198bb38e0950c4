package transport

import (
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/wire"
)

// Sender holds preallocated sendmmsg state. It is not safe for concurrent
// use: a goroutine that sends on a hot path (the heartbeat thread, the
// master's change fan-out) owns one Sender and sends without any lock;
// Transport.Send and the other Transport send methods share one Sender
// under a mutex.
type Sender struct {
	t       *Transport
	hdrs    [MaxBatch]unix.Mmsghdr
	iovs    [MaxBatch]unix.Iovec
	to      unix.RawSockaddrInet4
	oob     []byte // IP_TOS cmsg, then SO_PRIORITY cmsg
	tosOnly int    // length of the IP_TOS cmsg alone
	n       int
	sent    int
	errno   syscall.Errno
	pfd     [1]unix.PollFd // waiting for room in the socket's buffer
}

// NewSender returns a Sender for one goroutine's use.
func (t *Transport) NewSender() *Sender {
	s := &Sender{t: t}
	one := unix.CmsgSpace(4)
	s.oob = make([]byte, 2*one) // heap-allocated, so 8-aligned
	putCmsg(s.oob[:one], unix.IPPROTO_IP, unix.IP_TOS, PriorityTOS)
	putCmsg(s.oob[one:], unix.SOL_SOCKET, unix.SO_PRIORITY, PrioritySO)
	s.tosOnly = one
	for i := range s.hdrs {
		h := &s.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&s.to))
		h.Namelen = unix.SizeofSockaddrInet4
		h.Iov = &s.iovs[i]
		h.SetIovlen(1)
	}
	return s
}

func putCmsg(b []byte, level, typ int32, val int32) {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(4))
	*(*int32)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = val
}

// send makes sendmmsg calls until hdrs[:n] are sent (true), the socket's
// buffer is full (false) or an error (true, errno set). The socket is
// non-blocking: RawSyscall6 (see reader.recv).
func (s *Sender) send(fd int) bool {
	for s.sent < s.n {
		n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&s.hdrs[s.sent])), uintptr(s.n-s.sent), 0, 0, 0)
		switch e {
		case 0:
			s.sent += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			s.errno = e
			return true
		}
	}
	return true
}

// Send sends pkt to network n's group. prio marks it a priority packet
// (TOS EF, SO_PRIORITY 6).
func (s *Sender) Send(n wire.Net, pkt []byte, prio bool) error {
	return s.sendGroup(n, false, pkt, prio)
}

// SendHeartbeat sends a heartbeat to network n's group on its heartbeat
// port (see the package doc). Nothing but heartbeats may go there: a
// receiver accepts only heartbeats from that socket.
func (s *Sender) SendHeartbeat(n wire.Net, pkt []byte) error {
	return s.sendGroup(n, true, pkt, false)
}

// sendGroup sends pkt to network n's group port, or its heartbeat port.
func (s *Sender) sendGroup(n wire.Net, heartbeat bool, pkt []byte, prio bool) error {
	ns, err := s.t.netState(n)
	if err != nil {
		return err
	}
	s.to = ns.groupSA
	if heartbeat {
		s.to = ns.hbSA
	}
	if err := s.set(0, pkt); err != nil {
		return err
	}
	_, err = s.flush(ns, 1, prio)
	return err
}

// SendTo sends pkt by unicast to one peer on network n (its LocalAddr there).
func (s *Sender) SendTo(n wire.Net, to netip.AddrPort, pkt []byte, prio bool) error {
	ns, err := s.t.netState(n)
	if err != nil {
		return err
	}
	if err := s.setTo(to); err != nil {
		return err
	}
	if err := s.set(0, pkt); err != nil {
		return err
	}
	_, err = s.flush(ns, 1, prio)
	return err
}

// WriteBatchTo sends pkts by unicast to one peer on network n with as few
// sendmmsg calls as MaxBatch allows, and returns how many were sent. The
// agent's bulk sender sends snapshots and resend bursts with it.
func (s *Sender) WriteBatchTo(n wire.Net, to netip.AddrPort, pkts [][]byte, prio bool) (int, error) {
	ns, err := s.t.netState(n)
	if err != nil {
		return 0, err
	}
	if err := s.setTo(to); err != nil {
		return 0, err
	}
	return s.batch(ns, pkts, prio)
}

func (s *Sender) batch(ns *netState, pkts [][]byte, prio bool) (int, error) {
	total := 0
	for len(pkts) > 0 {
		k := min(len(pkts), MaxBatch)
		for i := 0; i < k; i++ {
			if err := s.set(i, pkts[i]); err != nil {
				return total, err
			}
		}
		sent, err := s.flush(ns, k, prio)
		total += sent
		if err != nil {
			return total, err
		}
		pkts = pkts[k:]
	}
	return total, nil
}

func (s *Sender) setTo(to netip.AddrPort) error {
	a := to.Addr().Unmap()
	if !a.Is4() {
		return ErrNotIPv4
	}
	s.to = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
	setPort(&s.to, to.Port())
	return nil
}

func (s *Sender) set(i int, pkt []byte) error {
	if len(pkt) > wire.MaxDatagram {
		return ErrTooLarge
	}
	if len(pkt) == 0 {
		s.iovs[i].Base = nil
	} else {
		s.iovs[i].Base = &pkt[0]
	}
	s.iovs[i].SetLen(len(pkt))
	return nil
}

// flush sends hdrs[:n] on ns's unicast socket and counts them.
func (s *Sender) flush(ns *netState, n int, prio bool) (int, error) {
	for {
		var ctl *byte
		ctlLen := 0
		if prio {
			ctl = &s.oob[0]
			ctlLen = len(s.oob)
			if s.t.noPrioCmsg.Load() {
				ctlLen = s.tosOnly
			}
		}
		for i := 0; i < n; i++ {
			h := &s.hdrs[i].Hdr
			h.Control = ctl
			h.SetControllen(ctlLen)
		}
		s.n, s.sent, s.errno = n, 0, 0
		err := s.write(ns.uni)
		if s.sent > 0 {
			bytes := 0
			for i := 0; i < s.sent; i++ {
				bytes += int(s.iovs[i].Len)
			}
			ns.st.sentPackets.Add(uint64(s.sent))
			ns.st.sentBytes.Add(uint64(bytes))
			if prio {
				ns.st.prioPackets.Add(uint64(s.sent))
			}
		}
		if err == nil && s.errno == unix.EINVAL && prio && ctlLen > s.tosOnly {
			// A kernel before 6.14: no SO_PRIORITY cmsg. Use IP_TOS alone
			// from now on and send what is left.
			s.t.noPrioCmsg.Store(true)
			done := s.sent
			if done > 0 {
				copy(s.iovs[:], s.iovs[done:n])
				n -= done
			}
			continue
		}
		if err != nil {
			ns.st.sendErrors.Add(1)
			return s.sent, err
		}
		if s.errno != 0 {
			ns.st.sendErrors.Add(1)
			return s.sent, os.NewSyscallError("sendmmsg", s.errno)
		}
		return s.sent, nil
	}
}

// sendWait is the longest a send waits for room in a full socket buffer
// before it gives up with EAGAIN: the sender may be the real-time loop, and
// every datagram here is one the protocol can lose (it retransmits what
// matters).
const sendWait = 5 * time.Millisecond

// write sends hdrs[:s.n] on sock, waiting at most sendWait for room.
func (s *Sender) write(sk *sock) error {
	t := s.t
	t.life.RLock()
	defer t.life.RUnlock()
	if t.closed.Load() || sk.fd < 0 {
		return net.ErrClosed
	}
	if s.send(sk.fd) {
		return nil
	}
	s.pfd[0] = unix.PollFd{Fd: int32(sk.fd), Events: unix.POLLOUT}
	ts := unix.NsecToTimespec(int64(sendWait))
	if n, err := unix.Ppoll(s.pfd[:], &ts, nil); err == nil && n > 0 && s.send(sk.fd) {
		return nil
	}
	if s.errno == 0 {
		s.errno = unix.EAGAIN
	}
	return nil
}

// Send sends pkt to network n's group through the transport's shared Sender.
func (t *Transport) Send(n wire.Net, pkt []byte, prio bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.def.Send(n, pkt, prio)
}

// SendTo sends pkt by unicast to one peer on network n.
func (t *Transport) SendTo(n wire.Net, to netip.AddrPort, pkt []byte, prio bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.def.SendTo(n, to, pkt, prio)
}

// SendHeartbeat sends a heartbeat to network n's heartbeat port through
// the transport's shared Sender.
func (t *Transport) SendHeartbeat(n wire.Net, pkt []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.def.SendHeartbeat(n, pkt)
}

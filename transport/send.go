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
//
// Datagrams are queued (Queue) and sent by Flush, those for one network
// in one sendmmsg (up to MaxBatch), each with its own destination and
// priority: a Ready of the real-time loop (a change to the group, answers
// to reporters, a heartbeat) costs one system call per network, not one
// per datagram and network. Send, SendHeartbeat and SendTo are a Queue and
// a Flush.
type Sender struct {
	t     *Transport
	hdrs  [MaxBatch]unix.Mmsghdr
	iovs  [MaxBatch]unix.Iovec
	addrs [MaxBatch]unix.RawSockaddrInet4 // hdrs[i]'s destination
	prios [MaxBatch]bool                  // hdrs[i] is a priority datagram
	oob   []byte                          // IP_TOS cmsg, then SO_PRIORITY cmsg
	// tosOnly is the length of the IP_TOS cmsg alone.
	tosOnly int
	qnet    wire.Net // the network of the n datagrams queued
	n       int
	sent    int
	errno   syscall.Errno
	pfd     [1]unix.PollFd // waiting for room in the socket's buffer
}

// SendKind is where on its network a queued datagram goes.
type SendKind uint8

const (
	ToGroup     SendKind = iota // the network's group port
	ToHeartbeat                 // the group's heartbeat port (heartbeats only: see the package doc)
	ToPeer                      // one peer's unicast address (its LocalAddr there)
)

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
		h.Name = (*byte)(unsafe.Pointer(&s.addrs[i]))
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

// Queue adds pkt, for network n, to the datagrams Flush sends: to the
// group (kind ToGroup), its heartbeat port (ToHeartbeat) or the peer at to
// (ToPeer; to is ignored otherwise). prio marks it a priority datagram
// (TOS EF, SO_PRIORITY 6). pkt must stay as it is until Flush. What was
// queued for another network, or MaxBatch datagrams, are sent first (their
// error, if any, is returned and pkt is queued all the same).
func (s *Sender) Queue(n wire.Net, kind SendKind, to netip.AddrPort, pkt []byte, prio bool) error {
	ns, err := s.t.netState(n)
	if err != nil {
		return err
	}
	if len(pkt) > wire.MaxDatagram {
		return ErrTooLarge
	}
	var sa unix.RawSockaddrInet4
	switch kind {
	case ToGroup:
		sa = ns.groupSA
	case ToHeartbeat:
		sa = ns.hbSA
	default:
		if sa, err = sockaddr(to); err != nil {
			return err
		}
	}
	var ferr error
	if s.n > 0 && (n != s.qnet || s.n == MaxBatch) {
		ferr = s.Flush()
	}
	i := s.n
	s.addrs[i], s.prios[i] = sa, prio
	s.set(i, pkt)
	s.qnet = n
	s.n++
	return ferr
}

// Flush sends the queued datagrams, in one sendmmsg unless the socket's
// buffer fills (then it waits up to sendWait for room).
func (s *Sender) Flush() error {
	if s.n == 0 {
		return nil
	}
	k := s.n
	s.n = 0
	ns, err := s.t.netState(s.qnet)
	if err != nil {
		return err
	}
	_, err = s.flush(ns, k)
	return err
}

// Send sends pkt to network n's group. prio marks it a priority packet
// (TOS EF, SO_PRIORITY 6).
func (s *Sender) Send(n wire.Net, pkt []byte, prio bool) error {
	return s.queueFlush(n, ToGroup, netip.AddrPort{}, pkt, prio)
}

// SendHeartbeat sends a heartbeat to network n's group on its heartbeat
// port (see the package doc). Nothing but heartbeats may go there: a
// receiver accepts only heartbeats from that socket.
func (s *Sender) SendHeartbeat(n wire.Net, pkt []byte) error {
	return s.queueFlush(n, ToHeartbeat, netip.AddrPort{}, pkt, false)
}

// SendTo sends pkt by unicast to one peer on network n (its LocalAddr there).
func (s *Sender) SendTo(n wire.Net, to netip.AddrPort, pkt []byte, prio bool) error {
	return s.queueFlush(n, ToPeer, to, pkt, prio)
}

func (s *Sender) queueFlush(n wire.Net, kind SendKind, to netip.AddrPort, pkt []byte, prio bool) error {
	qerr := s.Queue(n, kind, to, pkt, prio)
	if err := s.Flush(); err != nil {
		return err
	}
	return qerr
}

// WriteBatchTo sends pkts by unicast to one peer on network n with as few
// sendmmsg calls as MaxBatch allows, and returns how many were sent. The
// agent's bulk sender sends snapshots and resend bursts with it. What was
// queued before is sent first.
func (s *Sender) WriteBatchTo(n wire.Net, to netip.AddrPort, pkts [][]byte, prio bool) (int, error) {
	ns, err := s.t.netState(n)
	if err != nil {
		return 0, err
	}
	sa, err := sockaddr(to)
	if err != nil {
		return 0, err
	}
	for _, p := range pkts {
		if len(p) > wire.MaxDatagram {
			return 0, ErrTooLarge
		}
	}
	if err := s.Flush(); err != nil {
		return 0, err
	}
	total := 0
	for len(pkts) > 0 {
		k := min(len(pkts), MaxBatch)
		for i := 0; i < k; i++ {
			s.addrs[i], s.prios[i] = sa, prio
			s.set(i, pkts[i])
		}
		sent, err := s.flush(ns, k)
		total += sent
		if err != nil {
			return total, err
		}
		pkts = pkts[k:]
	}
	return total, nil
}

// sockaddr is to for sendmmsg (IPv4 only).
func sockaddr(to netip.AddrPort) (unix.RawSockaddrInet4, error) {
	a := to.Addr().Unmap()
	if !a.Is4() {
		return unix.RawSockaddrInet4{}, ErrNotIPv4
	}
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
	setPort(&sa, to.Port())
	return sa, nil
}

// set points iovs[i] at pkt (its length checked by the caller).
func (s *Sender) set(i int, pkt []byte) {
	if len(pkt) == 0 {
		s.iovs[i].Base = nil
	} else {
		s.iovs[i].Base = &pkt[0]
	}
	s.iovs[i].SetLen(len(pkt))
}

// flush sends hdrs[:n] (addrs, iovs and prios set) on ns's unicast socket
// and counts them.
func (s *Sender) flush(ns *netState, n int) (int, error) {
	for {
		noPrio := s.t.noPrioCmsg.Load()
		for i := 0; i < n; i++ {
			h := &s.hdrs[i].Hdr
			h.Control = nil
			h.SetControllen(0)
			if s.prios[i] {
				h.Control = &s.oob[0]
				if noPrio {
					h.SetControllen(s.tosOnly)
				} else {
					h.SetControllen(len(s.oob))
				}
			}
		}
		s.n, s.sent, s.errno = n, 0, 0
		err := s.write(ns.uni)
		s.n = 0
		if s.sent > 0 {
			bytes, prios := 0, 0
			for i := 0; i < s.sent; i++ {
				bytes += int(s.iovs[i].Len)
				if s.prios[i] {
					prios++
				}
			}
			ns.st.sentPackets.Add(uint64(s.sent))
			ns.st.sentBytes.Add(uint64(bytes))
			ns.st.prioPackets.Add(uint64(prios))
		}
		if err == nil && s.errno == unix.EINVAL && !noPrio && s.sent < n && s.prios[s.sent] {
			// A kernel before 6.14: no SO_PRIORITY cmsg. Use IP_TOS alone
			// from now on and send what is left.
			s.t.noPrioCmsg.Store(true)
			done := s.sent
			if done > 0 {
				copy(s.iovs[:], s.iovs[done:n])
				copy(s.addrs[:], s.addrs[done:n])
				copy(s.prios[:], s.prios[done:n])
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

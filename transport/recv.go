package transport

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/wire"
)

// reader is one socket's preallocated recvmmsg state.
type reader struct {
	mu    sync.Mutex
	hdrs  [MaxBatch]unix.Mmsghdr
	iovs  [MaxBatch]unix.Iovec
	names [MaxBatch]unix.RawSockaddrInet4
	oob   [MaxBatch * oobSize]byte
	want  int            // messages asked for
	n     int            // messages received
	errno syscall.Errno  // recvmmsg's error, 0 if none
	pfd   [2]unix.PollFd // a waiting read's ppoll: the socket, the close eventfd
}

func newReader() *reader {
	r := &reader{}
	for i := range r.hdrs {
		h := &r.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
		h.Control = &r.oob[i*oobSize]
	}
	return r
}

// recv makes one recvmmsg: false means "would block", true means done (r.n
// or r.errno is set). The socket is non-blocking, so the system call never
// waits: RawSyscall6, not Syscall6, whose entersyscall/exitsyscall would
// let Go's scheduler hand this thread's P away for nothing.
func (r *reader) recv(fd int) bool {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(r.want), 0, 0, 0)
		switch e {
		case 0:
			r.n, r.errno = int(n), 0
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			r.n, r.errno = 0, e
			return true
		}
	}
}

// ReadBatch reads at least one datagram of network n's multicast group into
// msgs (as many as are queued, up to len(msgs) and MaxBatch) and returns how
// many it filled. Each msgs[i].Buf must be non-empty (wire.MaxDatagram bytes
// are enough; a longer datagram is dropped and counted). Dropped datagrams
// (wrong interface or group, our own, truncated) are not returned; the Bufs
// of msgs may be swapped among the entries to fill them in order. It blocks
// until a datagram is accepted, the read deadline passes or the transport is
// closed. It allocates nothing.
func (t *Transport) ReadBatch(n wire.Net, msgs []Message) (int, error) {
	ns, err := t.netState(n)
	if err != nil {
		return 0, err
	}
	return t.read(ns, ns.grp, false, msgs, true)
}

// ReadUnicastBatch is ReadBatch for the unicast datagrams addressed to this
// node on network n (nacks, snapshots): run one receive loop for each of
// the four sockets (two networks × group, unicast).
func (t *Transport) ReadUnicastBatch(n wire.Net, msgs []Message) (int, error) {
	ns, err := t.netState(n)
	if err != nil {
		return 0, err
	}
	return t.read(ns, ns.uni, true, msgs, true)
}

// TryReadHeartbeats reads what is queued on network n's heartbeat socket
// (see the package doc), without blocking: 0 when nothing. Each message's
// At is when the kernel received it. It allocates nothing.
func (t *Transport) TryReadHeartbeats(n wire.Net, msgs []Message) (int, error) {
	ns, err := t.netState(n)
	if err != nil {
		return 0, err
	}
	return t.read(ns, ns.hb, false, msgs, false)
}

// TryReadBatch is ReadBatch (unicast false) or ReadUnicastBatch (unicast
// true) that never waits: with nothing queued (or only datagrams it drops)
// it returns 0 and no error. It is the read of the real-time loop, which
// waits for every socket at once in Waiter.Wait on its own locked thread
// rather than in Go's netpoller.
func (t *Transport) TryReadBatch(n wire.Net, unicast bool, msgs []Message) (int, error) {
	ns, err := t.netState(n)
	if err != nil {
		return 0, err
	}
	s := ns.grp
	if unicast {
		s = ns.uni
	}
	return t.read(ns, s, unicast, msgs, false)
}

func (t *Transport) read(ns *netState, s *sock, unicast bool, msgs []Message, wait bool) (int, error) {
	if s == nil {
		return 0, net.ErrClosed
	}
	want := min(len(msgs), MaxBatch)
	if want == 0 {
		return 0, nil
	}
	r := s.r
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 0; i < want; i++ {
		if len(msgs[i].Buf) == 0 {
			return 0, ErrEmptyBuffer
		}
	}
	t.life.RLock()
	defer t.life.RUnlock()
	for {
		if t.closed.Load() {
			return 0, net.ErrClosed
		}
		for i := 0; i < want; i++ {
			b := msgs[i].Buf
			r.iovs[i].Base = &b[0]
			r.iovs[i].SetLen(len(b))
			h := &r.hdrs[i]
			h.Hdr.Namelen = unix.SizeofSockaddrInet4
			h.Hdr.SetControllen(oobSize)
			h.Hdr.Flags = 0
			h.Len = 0
		}
		r.want = want
		if !r.recv(s.fd) {
			if !wait {
				return 0, nil // nothing queued
			}
			if err := t.waitReadable(s); err != nil {
				return 0, err
			}
			continue
		}
		if r.errno != 0 {
			ns.st.readErrors.Add(1)
			return 0, os.NewSyscallError("recvmmsg", r.errno)
		}
		k, bytes := 0, 0
		var now time.Time // read once a batch, for the stamps
		for i := 0; i < r.n; i++ {
			h := &r.hdrs[i]
			if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
				ns.st.trunc.Add(1)
				continue
			}
			ifindex, dst, tos, stamp := parseOOB(r.oob[i*oobSize : i*oobSize+int(h.Hdr.Controllen)])
			from := netip.AddrPortFrom(netip.AddrFrom4(r.names[i].Addr), getPort(&r.names[i]))
			if unicast {
				if ifindex != ns.ifindex && ifindex != t.loIndex {
					ns.st.wrongIface.Add(1)
					continue
				}
			} else {
				if ifindex != ns.ifindex {
					ns.st.wrongIface.Add(1)
					continue
				}
				if dst != ns.group4 {
					ns.st.wrongGroup.Add(1)
					continue
				}
				if from == ns.local {
					ns.st.self.Add(1)
					continue
				}
			}
			if k != i {
				msgs[k], msgs[i] = msgs[i], msgs[k]
			}
			m := &msgs[k]
			m.N = int(h.Len)
			m.From = from
			m.IfIndex = ifindex
			m.Net = ns.net
			m.Unicast = unicast
			m.TOS = tos
			m.At = time.Time{}
			if stamp != 0 {
				if now.IsZero() {
					now = time.Now()
				}
				m.At = stampTime(now, stamp)
			}
			bytes += m.N
			k++
		}
		if k > 0 {
			ns.st.recvPackets.Add(uint64(k))
			ns.st.recvBytes.Add(uint64(bytes))
			return k, nil
		}
		// Everything was dropped (nothing was swapped): wait for more.
	}
}

// readSlice is the longest a waiting read sleeps before it looks at the
// deadline again (SetReadDeadline may have moved it).
const readSlice = 50 * time.Millisecond

// waitReadable waits until s is readable, the transport is closed
// (net.ErrClosed) or the read deadline passes (os.ErrDeadlineExceeded).
// The caller holds life for reading and s.r.mu.
func (t *Transport) waitReadable(s *sock) error {
	r := s.r
	for {
		slice := readSlice
		if d := t.deadline.Load(); d != 0 {
			left := time.Duration(d - time.Now().UnixNano())
			if left <= 0 {
				return fmt.Errorf("transport: read: %w", os.ErrDeadlineExceeded)
			}
			slice = min(slice, left)
		}
		r.pfd = [2]unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}, {Fd: int32(t.closeFD), Events: unix.POLLIN}}
		ts := unix.NsecToTimespec(int64(slice))
		n, err := unix.Ppoll(r.pfd[:], &ts, nil)
		if err != nil && err != unix.EINTR {
			return os.NewSyscallError("ppoll", err)
		}
		if t.closed.Load() || r.pfd[1].Revents != 0 {
			return net.ErrClosed
		}
		if n > 0 && r.pfd[0].Revents != 0 {
			return nil
		}
	}
}

// stampTime turns a kernel receive time (SO_TIMESTAMPNS: CLOCK_REALTIME, in
// ns) into a time.Time on Go's monotonic clock, which the core's deadlines
// use: now minus the datagram's age by the wall clock. An age below zero
// or above a second (the wall clock was stepped between the two readings)
// is taken as zero: "now", what the stamp would be without SO_TIMESTAMPNS.
func stampTime(now time.Time, realNs int64) time.Time {
	age := time.Duration(now.UnixNano() - realNs)
	if age < 0 || age > time.Second {
		return now
	}
	return now.Add(-age)
}

// KernelStamp is the SO_TIMESTAMPNS time (ns since the epoch, 0 if absent)
// in a datagram's control messages, for a reader of a socket of its own
// (the soak's observer): the transport's own parser, read in place,
// allocating nothing.
func KernelStamp(oob []byte) int64 {
	_, _, _, stamp := parseOOB(oob)
	return stamp
}

// parseOOB reads IP_PKTINFO (arrival interface, header destination),
// IP_TOS and SO_TIMESTAMPNS (ns since the epoch; 0 if absent) from a
// datagram's control messages.
func parseOOB(b []byte) (ifindex int, dst [4]byte, tos uint8, stamp int64) {
	const hdrLen = unix.SizeofCmsghdr
	for len(b) >= hdrLen {
		var l int
		if unix.SizeofCmsghdr == 16 {
			l = int(binary.NativeEndian.Uint64(b[0:8]))
		} else {
			l = int(binary.NativeEndian.Uint32(b[0:4]))
		}
		lvlOff := unix.SizeofCmsghdr - 8
		level := int32(binary.NativeEndian.Uint32(b[lvlOff:]))
		typ := int32(binary.NativeEndian.Uint32(b[lvlOff+4:]))
		if l < hdrLen || l > len(b) {
			return
		}
		data := b[hdrLen:l]
		if level == unix.SOL_SOCKET && typ == unix.SO_TIMESTAMPNS && len(data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(data[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(data[8:16]))
			stamp = sec*1e9 + nsec
		}
		if level == unix.IPPROTO_IP {
			switch typ {
			case unix.IP_PKTINFO:
				if len(data) >= unix.SizeofInet4Pktinfo {
					ifindex = int(int32(binary.NativeEndian.Uint32(data[0:4])))
					copy(dst[:], data[8:12]) // ipi_addr: the header's destination
				}
			case unix.IP_TOS:
				if len(data) >= 1 {
					tos = data[0]
				}
			}
		}
		adv := unix.CmsgSpace(l - hdrLen)
		if adv >= len(b) {
			return
		}
		b = b[adv:]
	}
	return
}

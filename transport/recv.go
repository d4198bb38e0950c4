package transport

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
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
	want  int           // messages asked for
	n     int           // messages received
	errno syscall.Errno // recvmmsg's error, 0 if none
	fn    func(fd uintptr) bool
	try   func(fd uintptr) // fn for RawConn.Control: one attempt, never waits
	got   bool             // try's verdict: false means it would block
}

func newReader() *reader {
	r := &reader{}
	r.fn = r.recv // bound once: passing a method value per call would allocate
	r.try = func(fd uintptr) { r.got = r.recv(fd) }
	for i := range r.hdrs {
		h := &r.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
		h.Control = &r.oob[i*oobSize]
	}
	return r
}

// recv runs inside RawConn.Read: false means "would block, wait for the
// netpoller", true means done (r.n or r.errno is set).
func (r *reader) recv(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(r.want), 0, 0, 0)
		switch e {
		case 0:
			r.n, r.errno = int(n), 0
			return true
		case unix.EINTR:
			continue // the netpoller is edge-triggered: retry now, do not wait
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
	for {
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
		var err error
		if wait {
			err = s.rc.Read(r.fn)
		} else if err = s.rc.Control(r.try); err == nil && !r.got {
			return 0, nil // nothing queued
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
				ns.st.readErrors.Add(1)
			}
			return 0, err
		}
		if r.errno != 0 {
			ns.st.readErrors.Add(1)
			return 0, os.NewSyscallError("recvmmsg", r.errno)
		}
		k, bytes := 0, 0
		for i := 0; i < r.n; i++ {
			h := &r.hdrs[i]
			if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
				ns.st.trunc.Add(1)
				continue
			}
			ifindex, dst, tos := parseOOB(r.oob[i*oobSize : i*oobSize+int(h.Hdr.Controllen)])
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

// parseOOB reads IP_PKTINFO (arrival interface, header destination) and
// IP_TOS from a datagram's control messages.
func parseOOB(b []byte) (ifindex int, dst [4]byte, tos uint8) {
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

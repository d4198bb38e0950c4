// Package transport is fmagent's two-network UDP transport: every node has
// one multicast group per network (DESIGN §4) and talks to one peer at a time
// (nacks, snapshots) by unicast on the same network. Linux only.
//
// # Sockets
//
// Per network the transport opens three sockets:
//
//   - the group socket receives the network's multicast group. It is bound to
//     group:port (not 0.0.0.0:port, which Go's net package would pick for a
//     multicast address — it is created with x/sys/unix and handed to
//     net.FilePacketConn), has SO_REUSEADDR and SO_REUSEPORT so several
//     agents on one host share the group port (every one of them gets a copy
//     of each multicast datagram; reuseport load balancing applies to unicast
//     only), IP_MULTICAST_ALL off so it never sees a group that another
//     socket on the host joined, and is joined to the group on the network's
//     interface only. Unicast can never reach it.
//   - the heartbeat socket is a second group socket, bound to group and the
//     heartbeat port (NetConfig.HeartbeatPort, by default the group port +
//     1). Heartbeats, and nothing else, are sent there. The real-time loop
//     does not wait for it: it reads it each time it wakes (at the latest at
//     its next heartbeat, one interval away), and judges each heartbeat by
//     the time the kernel received it (SO_TIMESTAMPNS), not the time it was
//     read. So a peer's heartbeat costs no wake-up of its own: at 10 ms × 5
//     with five nodes the loop woke ~1,000 times a second, once per
//     datagram, and a wake-up (two context switches) was most of an idle
//     agent's CPU. What does wake the loop at once is the other group
//     socket's traffic: changes, elections, everything whose latency is the
//     product.
//   - the unicast socket sends everything (multicast to the group and
//     unicast to one peer) and receives the unicast addressed to this node on
//     this network. It is bound to the network's address (NetConfig.Source,
//     else the interface's first IPv4 address) and an ephemeral port (or
//     NetConfig.UnicastPort), with IP_MULTICAST_IF set to the network's
//     interface. Because every packet the node sends leaves from this socket,
//     the source address a peer sees on any of them is LocalAddr(net), and a
//     unicast reply to it reaches this socket. It deliberately has neither
//     SO_REUSEADDR nor SO_REUSEPORT: Linux hands out an ephemeral port that is
//     already bound by another socket when both carry the same reuse flag
//     (and, for SO_REUSEPORT, the same uid), so two agents on one host could
//     end up sharing — and load-balancing — their unicast port.
//
// Keeping the two apart is what lets several agents share a host: the group
// port is shared, the unicast port is private to one agent. (Linux lets only
// sockets of the same effective uid share a port with SO_REUSEPORT: agents
// on one host run as the same user.)
//
// # Which network a packet came from
//
// The arrival interface is read from the IP_PKTINFO control message
// (x/net/ipv4 FlagInterface|FlagDst), not guessed. A group packet that arrived
// on another interface than its network's is dropped and counted
// (DroppedWrongIface). When both networks use the same interface (on `lo`
// in tests, both groups on one interface) the interface cannot tell them
// apart; the network is then the socket the packet was read from — each
// group socket is bound to its own group address with IP_MULTICAST_ALL off —
// and, as a second check, the destination address in IP_PKTINFO must be the
// network's group (DroppedWrongGroup otherwise). Unicast is accepted on the
// network's interface and on the loopback interface: a datagram from another
// agent on the same host to one of this host's addresses is routed over `lo`
// whatever interface carries the address.
//
// Our own multicast comes back to the group socket (IP_MULTICAST_LOOP, and on
// `lo` always); such a packet, whose source is our own LocalAddr, is dropped
// and counted (DroppedSelf).
//
// # Priority
//
// Priority packets (down notifications, elections) carry TOS 0xb8 (DSCP EF)
// and socket priority 6 (the highest an unprivileged socket may use; band 0
// of pfifo_fast), set per packet as IP_TOS and SO_PRIORITY ancillary data on
// the one unicast socket, so they share its source address and no send path
// toggles socket state or takes a lock. Kernels before 6.14 (where
// SO_PRIORITY became valid ancillary data) do not accept
// SO_PRIORITY as ancillary data (EINVAL); the transport then falls back, once
// and for good, to IP_TOS alone, from which those kernels derive the packet's
// priority themselves (Stats.PrioCmsgFallback reports it).
//
// # Not in Go's netpoller
//
// The sockets are plain descriptors, never handed to package net: a socket
// registered with Go's netpoller (epoll, edge-triggered) wakes the
// runtime's poller thread for every datagram that arrives and for the send
// buffer space every sent datagram frees, although nothing reads or writes
// through the netpoller here (the real-time loop waits in its own ppoll,
// Waiter). Five idle agents on lo at 10 ms × 5 measured ~800 such thread
// wake-ups a second each, half of an idle agent's CPU on this
// paravirtualised VM, where a context switch costs tens of µs. Reads that
// wait (ReadBatch, for tests and tools) wait in ppoll on the socket and the
// transport's close eventfd; a send finding the socket's buffer full waits
// for room at most sendWait. Transport.life (a read lock per read or send)
// keeps a descriptor from being closed and reused under a call.
//
// # Allocation
//
// x/net's ipv4.PacketConn.ReadBatch allocates a net.UDPAddr per datagram
// (and ControlMessage.Parse a net.IP), so receiving and sending use
// recvmmsg/sendmmsg from x/sys/unix directly on the raw fd, with message
// headers, iovecs, sockaddrs and control buffers allocated once per socket
// (receive) or per Sender (send). Nothing is allocated per packet;
// transport_test.go proves it with AllocsPerRun.
package transport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/wire"
)

const (
	// DefaultPort is the group port when neither NetConfig.Port nor
	// Config.Port is set.
	DefaultPort = 7410
	// DefaultTTL is the multicast TTL when NetConfig.TTL is 0: the networks
	// are single L2 segments.
	DefaultTTL = 1
	// MaxBatch is the most datagrams one ReadBatch or one sendmmsg handles.
	MaxBatch = 64
	// PriorityTOS is the IP TOS byte of priority packets: DSCP EF (46) << 2.
	PriorityTOS = 0xb8
	// PrioritySO is the SO_PRIORITY of priority packets.
	PrioritySO = 6

	oobSize = 96 // per datagram: IP_PKTINFO (32) + IP_TOS (24) + SO_TIMESTAMPNS (32), 8-aligned
)

// NetConfig describes one network.
type NetConfig struct {
	// Interface is the network's NIC, e.g. "eth1" (or "lo" for tests).
	Interface string
	// Group is the network's IPv4 multicast group, e.g. 239.192.77.1.
	Group netip.Addr
	// Port is the group port; 0 means Config.Port.
	Port int
	// HeartbeatPort is the heartbeat socket's port; 0 means Port + 1.
	HeartbeatPort int
	// TTL is the multicast TTL; 0 means DefaultTTL.
	TTL int
	// Loopback sets IP_MULTICAST_LOOP, needed when several agents share a
	// host on a real interface. (On `lo` every multicast datagram comes back
	// through the device anyway.)
	Loopback bool
	// Source is the local address to send from and receive unicast on; the
	// zero Addr means the interface's first IPv4 address.
	Source netip.Addr
	// UnicastPort is the unicast socket's port; 0 picks an ephemeral port
	// (what several agents on one host need).
	UnicastPort int
	// ListenTCP also listens on TCP at the unicast socket's address and
	// port (the agent's exit watch). With UnicastPort 0 the port is chosen
	// so that both are free: an ephemeral UDP port's number may be a TCP
	// connection's source port on the same address (another agent's exit
	// watch on one host: the listener then failed, and that node's exit
	// was seen only at the heartbeats' bound). A listener that cannot be
	// opened does not fail Open: TakeTCPListener says why.
	ListenTCP bool
}

// tcpAttempts bounds the ephemeral unicast ports Open tries for one whose
// TCP port is free too (NetConfig.ListenTCP).
const tcpAttempts = 16

// listenTCP is net.ListenTCP (a test makes it fail).
var listenTCP = net.ListenTCP

// Config is the transport's configuration.
type Config struct {
	Nets [wire.NumNets]NetConfig
	// Port is the group port of networks whose NetConfig.Port is 0.
	Port int
	// RecvBuffer sets SO_RCVBUF on every socket when positive.
	RecvBuffer int
}

// Message is one received datagram. Buf is caller-owned; the transport fills
// the rest.
type Message struct {
	Buf     []byte         // receive buffer (caller's); the datagram is Buf[:N]
	N       int            // datagram length
	From    netip.AddrPort // source address: the sender's LocalAddr on this net
	IfIndex int            // arrival interface, from IP_PKTINFO
	Net     wire.Net       // the network it was received on
	Unicast bool           // read from the unicast socket (else a group's)
	TOS     uint8          // IP TOS byte (PriorityTOS on priority packets)
	// At is when the kernel received it (SO_TIMESTAMPNS), on the heartbeat
	// socket; the zero Time on the others (read at once, so "now").
	At time.Time
}

// NetStats are one network's counters.
type NetStats struct {
	SentPackets       uint64
	SentBytes         uint64
	PriorityPackets   uint64 // of SentPackets, sent with PriorityTOS
	RecvPackets       uint64
	RecvBytes         uint64
	DroppedWrongIface uint64 // arrived on another interface than the network's
	DroppedWrongGroup uint64 // group socket: destination is not the network's group
	DroppedSelf       uint64 // our own multicast, looped back
	DroppedTruncated  uint64 // longer than the caller's buffer
	ReadErrors        uint64
	SendErrors        uint64
}

// Stats is a snapshot of the transport's counters.
type Stats struct {
	Nets [wire.NumNets]NetStats
	// PrioCmsgFallback is set once the kernel refused SO_PRIORITY as
	// ancillary data and priority packets carry IP_TOS alone.
	PrioCmsgFallback bool
}

type counters struct {
	sentPackets, sentBytes, prioPackets atomic.Uint64
	recvPackets, recvBytes              atomic.Uint64
	wrongIface, wrongGroup, self, trunc atomic.Uint64
	readErrors, sendErrors              atomic.Uint64
}

func (c *counters) snapshot() NetStats {
	return NetStats{
		SentPackets:       c.sentPackets.Load(),
		SentBytes:         c.sentBytes.Load(),
		PriorityPackets:   c.prioPackets.Load(),
		RecvPackets:       c.recvPackets.Load(),
		RecvBytes:         c.recvBytes.Load(),
		DroppedWrongIface: c.wrongIface.Load(),
		DroppedWrongGroup: c.wrongGroup.Load(),
		DroppedSelf:       c.self.Load(),
		DroppedTruncated:  c.trunc.Load(),
		ReadErrors:        c.readErrors.Load(),
		SendErrors:        c.sendErrors.Load(),
	}
}

// Errors returned by the transport.
var (
	ErrBadNet      = errors.New("transport: no such network")
	ErrNotIPv4     = errors.New("transport: destination is not an IPv4 address")
	ErrEmptyBuffer = errors.New("transport: message with an empty buffer")
	ErrTooLarge    = fmt.Errorf("transport: datagram longer than %d bytes", wire.MaxDatagram)
)

// Transport is the open sockets of both networks. Its methods are safe for
// concurrent use; each receive socket is read by one ReadBatch at a time.
type Transport struct {
	nets    [wire.NumNets]netState
	loIndex int // the loopback interface's index

	mu  sync.Mutex // guards def
	def *Sender    // used by Transport.Send & co.

	noPrioCmsg atomic.Bool

	// life: every read and send holds it for reading while it uses a
	// descriptor; Close takes it for writing, after waking waiting reads
	// through closeFD, so no call uses a descriptor closed (and perhaps
	// reused) under it.
	life      sync.RWMutex
	closed    atomic.Bool
	closeFD   int          // eventfd, readable once Close began
	deadline  atomic.Int64 // ReadBatch's deadline, Unix ns; 0: none
	closeOnce sync.Once
	closeErr  error
}

type netState struct {
	net     wire.Net
	cfg     NetConfig // resolved: Port and TTL set
	ifindex int
	groupSA unix.RawSockaddrInet4 // the group, preresolved for sendmmsg
	hbSA    unix.RawSockaddrInet4 // the group's heartbeat port
	group4  [4]byte
	local   netip.AddrPort   // the unicast socket's address
	tcp     *net.TCPListener // NetConfig.ListenTCP's (nil: taken, or not opened: tcpErr)
	tcpErr  error
	grp     *sock
	hb      *sock
	uni     *sock
	st      counters
}

type sock struct {
	r  *reader
	fd int // the descriptor (valid until Close)
}

// Open opens both networks' sockets. On error nothing stays open.
func Open(cfg Config) (*Transport, error) {
	t := &Transport{closeFD: -1}
	lo, err := loopbackIndex()
	if err != nil {
		return nil, err
	}
	t.loIndex = lo
	for i := range cfg.Nets {
		nc := cfg.Nets[i]
		if nc.Port == 0 {
			nc.Port = cfg.Port
		}
		if nc.Port == 0 {
			nc.Port = DefaultPort
		}
		if nc.HeartbeatPort == 0 {
			nc.HeartbeatPort = nc.Port + 1
		}
		if nc.TTL == 0 {
			nc.TTL = DefaultTTL
		}
		if err := checkNet(wire.Net(i), nc); err != nil {
			return nil, err
		}
		t.nets[i].net = wire.Net(i)
		t.nets[i].cfg = nc
	}
	a, b := t.nets[0].cfg, t.nets[1].cfg
	if a.Group == b.Group {
		for _, pa := range []int{a.Port, a.HeartbeatPort} {
			for _, pb := range []int{b.Port, b.HeartbeatPort} {
				if pa == pb {
					return nil, fmt.Errorf("transport: networks a and b use the same group %v and port %d: they could not be told apart", a.Group, pa)
				}
			}
		}
	}
	if t.closeFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, os.NewSyscallError("eventfd", err)
	}
	for i := range t.nets {
		if err := t.open(&t.nets[i], cfg.RecvBuffer); err != nil {
			t.Close()
			return nil, err
		}
	}
	t.def = t.NewSender()
	return t, nil
}

func checkNet(n wire.Net, nc NetConfig) error {
	name := netName(n)
	switch {
	case nc.Interface == "":
		return fmt.Errorf("transport: network %s: no interface", name)
	case !nc.Group.Is4() || !nc.Group.IsMulticast():
		return fmt.Errorf("transport: network %s: group %v is not an IPv4 multicast address", name, nc.Group)
	case nc.Port < 1 || nc.Port > 65535:
		return fmt.Errorf("transport: network %s: port %d out of range", name, nc.Port)
	case nc.HeartbeatPort < 1 || nc.HeartbeatPort > 65535:
		return fmt.Errorf("transport: network %s: heartbeat port %d out of range (by default the port + 1)", name, nc.HeartbeatPort)
	case nc.HeartbeatPort == nc.Port:
		return fmt.Errorf("transport: network %s: the heartbeat port is the group port %d", name, nc.Port)
	case nc.TTL < 1 || nc.TTL > 255:
		return fmt.Errorf("transport: network %s: TTL %d out of range", name, nc.TTL)
	case nc.UnicastPort < 0 || nc.UnicastPort > 65535:
		return fmt.Errorf("transport: network %s: unicast port %d out of range", name, nc.UnicastPort)
	case nc.Source.IsValid() && !nc.Source.Is4():
		return fmt.Errorf("transport: network %s: source %v is not an IPv4 address", name, nc.Source)
	}
	return nil
}

func netName(n wire.Net) string {
	if n < wire.NumNets {
		return string(rune('a' + n))
	}
	return fmt.Sprintf("#%d", n)
}

func loopbackIndex() (int, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return 0, fmt.Errorf("transport: listing interfaces: %w", err)
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback != 0 {
			return ifi.Index, nil
		}
	}
	return 0, errors.New("transport: no loopback interface")
}

func (t *Transport) open(ns *netState, rcvbuf int) error {
	nc := ns.cfg
	name := netName(ns.net)
	ifi, err := net.InterfaceByName(nc.Interface)
	if err != nil {
		return fmt.Errorf("transport: network %s: interface %q: %w", name, nc.Interface, err)
	}
	if ifi.Flags&net.FlagUp == 0 {
		return fmt.Errorf("transport: network %s: interface %s is down", name, ifi.Name)
	}
	// Linux delivers multicast on the loopback device without IFF_MULTICAST
	// (checked on 6.x); a real NIC without it does not program its filters.
	if ifi.Flags&net.FlagMulticast == 0 && ifi.Flags&net.FlagLoopback == 0 {
		return fmt.Errorf("transport: network %s: interface %s lacks the MULTICAST flag (ip link set %s multicast on)", name, ifi.Name, ifi.Name)
	}
	ns.ifindex = ifi.Index
	src := nc.Source
	if !src.IsValid() {
		if src, err = firstIPv4(ifi); err != nil {
			return fmt.Errorf("transport: network %s: %w", name, err)
		}
	}
	ns.group4 = nc.Group.As4()
	ns.groupSA = rawSockaddr(netip.AddrPortFrom(nc.Group, uint16(nc.Port)))

	ns.hbSA = rawSockaddr(netip.AddrPortFrom(nc.Group, uint16(nc.HeartbeatPort)))

	// Group sockets: bound to group:port (and group:heartbeat port),
	// shared ports, joined on ifi only.
	for _, g := range []struct {
		s     **sock
		port  int
		stamp bool
		what  string
	}{{&ns.grp, nc.Port, false, "group"}, {&ns.hb, nc.HeartbeatPort, true, "heartbeat"}} {
		*g.s, err = newSock(netip.AddrPortFrom(nc.Group, uint16(g.port)), true, g.stamp, rcvbuf)
		if err != nil {
			return fmt.Errorf("transport: network %s: %s socket %v:%d: %w", name, g.what, nc.Group, g.port, err)
		}
		if err := unix.SetsockoptIPMreqn((*g.s).fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP,
			&unix.IPMreqn{Multiaddr: ns.group4, Ifindex: int32(ifi.Index)}); err != nil {
			hint := ""
			if ifi.Flags&net.FlagMulticast == 0 {
				hint = fmt.Sprintf(" (interface %s lacks the MULTICAST flag: ip link set %s multicast on)", ifi.Name, ifi.Name)
			}
			return fmt.Errorf("transport: network %s: joining %v on %s: %w%s", name, nc.Group, ifi.Name, os.NewSyscallError("setsockopt IP_ADD_MEMBERSHIP", err), hint)
		}
	}

	// Unicast socket: sends everything, receives unicast for this node;
	// and the TCP listener beside it, if asked for.
	for attempt := 1; ; attempt++ {
		ns.uni, err = newSock(netip.AddrPortFrom(src, uint16(nc.UnicastPort)), false, false, rcvbuf)
		if err != nil {
			return fmt.Errorf("transport: network %s: unicast socket %v:%d: %w", name, src, nc.UnicastPort, err)
		}
		if !nc.ListenTCP {
			break
		}
		sa, err := unix.Getsockname(ns.uni.fd)
		if err != nil {
			return fmt.Errorf("transport: network %s: getsockname: %w", name, err)
		}
		at := &net.TCPAddr{IP: src.AsSlice(), Port: sa.(*unix.SockaddrInet4).Port}
		ln, err := listenTCP("tcp4", at)
		if err == nil {
			ns.tcp, ns.tcpErr = ln, nil
			break
		}
		ns.tcpErr = fmt.Errorf("transport: network %s: TCP listener %v: %w", name, at, err)
		if nc.UnicastPort != 0 || !errors.Is(err, unix.EADDRINUSE) || attempt == tcpAttempts {
			break
		}
		unix.Close(ns.uni.fd) // another ephemeral port
		ns.uni = nil
	}
	// IP_MULTICAST_IF by index and address (ip_mreqn): the group is reached
	// through this interface whatever the routing table says (a default
	// route would otherwise take 239/8 to another NIC).
	if err := unix.SetsockoptIPMreqn(ns.uni.fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF,
		&unix.IPMreqn{Address: src.As4(), Ifindex: int32(ifi.Index)}); err != nil {
		return fmt.Errorf("transport: network %s: IP_MULTICAST_IF %s: %w", name, ifi.Name, err)
	}
	loop := 0
	if nc.Loopback {
		loop = 1
	}
	for _, o := range []struct {
		opt, val int
		what     string
	}{{unix.IP_MULTICAST_TTL, nc.TTL, "IP_MULTICAST_TTL"}, {unix.IP_MULTICAST_LOOP, loop, "IP_MULTICAST_LOOP"}} {
		if err := unix.SetsockoptInt(ns.uni.fd, unix.IPPROTO_IP, o.opt, o.val); err != nil {
			return fmt.Errorf("transport: network %s: %s: %w", name, o.what, err)
		}
	}
	sa, err := unix.Getsockname(ns.uni.fd)
	if err != nil {
		return fmt.Errorf("transport: network %s: getsockname: %w", name, err)
	}
	la, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return fmt.Errorf("transport: network %s: unexpected local address %T", name, sa)
	}
	ap := netip.AddrPortFrom(netip.AddrFrom4(la.Addr), uint16(la.Port))
	ns.local = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	return nil
}

func firstIPv4(ifi *net.Interface) (netip.Addr, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("addresses of %s: %w", ifi.Name, err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok && ip.Unmap().Is4() {
				return ip.Unmap(), nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("interface %s has no IPv4 address: set the network's source address", ifi.Name)
}

// newSock creates a non-blocking UDP socket bound to addr, with IP_PKTINFO
// and IP_RECVTOS on. shared sets SO_REUSEADDR and SO_REUSEPORT and turns
// IP_MULTICAST_ALL off (the group socket); the unicast socket gets neither
// (see the package doc). stamp sets SO_TIMESTAMPNS (the heartbeat socket).
func newSock(addr netip.AddrPort, shared, stamp bool, rcvbuf int) (_ *sock, err error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	type opt struct {
		level, name, val int
		what             string
	}
	opts := []opt{{unix.IPPROTO_IP, unix.IP_RECVTOS, 1, "IP_RECVTOS"}, {unix.IPPROTO_IP, unix.IP_PKTINFO, 1, "IP_PKTINFO"}}
	if shared {
		opts = append(opts,
			opt{unix.SOL_SOCKET, unix.SO_REUSEADDR, 1, "SO_REUSEADDR"},
			opt{unix.SOL_SOCKET, unix.SO_REUSEPORT, 1, "SO_REUSEPORT"},
			opt{unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0, "IP_MULTICAST_ALL"})
	}
	if stamp {
		opts = append(opts, opt{unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1, "SO_TIMESTAMPNS"})
	}
	if rcvbuf > 0 {
		opts = append(opts, opt{unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf, "SO_RCVBUF"})
	}
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, o.level, o.name, o.val); err != nil {
			return nil, fmt.Errorf("setsockopt %s: %w", o.what, err)
		}
	}
	sa := &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, os.NewSyscallError("bind", err)
	}
	return &sock{r: newReader(), fd: fd}, nil
}

func rawSockaddr(ap netip.AddrPort) unix.RawSockaddrInet4 {
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ap.Addr().As4()}
	setPort(&sa, ap.Port())
	return sa
}

// setPort stores p in network byte order, whatever the host's order.
func setPort(sa *unix.RawSockaddrInet4, p uint16) {
	b := (*[2]byte)(unsafe.Pointer(&sa.Port))
	b[0], b[1] = byte(p>>8), byte(p)
}

func getPort(sa *unix.RawSockaddrInet4) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&sa.Port))
	return uint16(b[0])<<8 | uint16(b[1])
}

func (t *Transport) netState(n wire.Net) (*netState, error) {
	if n >= wire.NumNets {
		return nil, ErrBadNet
	}
	return &t.nets[n], nil
}

// LocalAddr is the unicast address of this node on network n: the source
// address of everything it sends there, and where peers send it unicast.
func (t *Transport) LocalAddr(n wire.Net) netip.AddrPort {
	if n >= wire.NumNets {
		return netip.AddrPort{}
	}
	return t.nets[n].local
}

// TakeTCPListener hands over network n's TCP listener (NetConfig.ListenTCP)
// to the caller, who closes it; or says why there is none. A second call
// returns nil and the same error as the first, or an error if the first
// took the listener.
func (t *Transport) TakeTCPListener(n wire.Net) (*net.TCPListener, error) {
	if n >= wire.NumNets {
		return nil, fmt.Errorf("transport: no network %d", n)
	}
	t.life.Lock()
	defer t.life.Unlock()
	ns := &t.nets[n]
	ln := ns.tcp
	if ln == nil {
		if ns.tcpErr == nil {
			return nil, fmt.Errorf("transport: network %s: no TCP listener (not asked for, or already taken)", netName(n))
		}
		return nil, ns.tcpErr
	}
	ns.tcp = nil
	return ln, nil
}

// HeartbeatGroup is network n's multicast group and heartbeat port.
func (t *Transport) HeartbeatGroup(n wire.Net) netip.AddrPort {
	if n >= wire.NumNets {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(t.nets[n].cfg.Group, uint16(t.nets[n].cfg.HeartbeatPort))
}

// Group is network n's multicast group and port.
func (t *Transport) Group(n wire.Net) netip.AddrPort {
	if n >= wire.NumNets {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(t.nets[n].cfg.Group, uint16(t.nets[n].cfg.Port))
}

// IfIndex is the index of network n's interface.
func (t *Transport) IfIndex(n wire.Net) int {
	if n >= wire.NumNets {
		return 0
	}
	return t.nets[n].ifindex
}

// SetReadDeadline sets the deadline of ReadBatch and ReadUnicastBatch: a
// call waiting past it returns an error wrapping os.ErrDeadlineExceeded.
// The zero time means no deadline. A call already waiting sees a new
// deadline within readSlice.
func (t *Transport) SetReadDeadline(d time.Time) error {
	if d.IsZero() {
		t.deadline.Store(0)
	} else {
		t.deadline.Store(max(d.UnixNano(), 1))
	}
	return nil
}

// Stats returns a snapshot of the counters.
func (t *Transport) Stats() Stats {
	var s Stats
	for i := range t.nets {
		s.Nets[i] = t.nets[i].st.snapshot()
	}
	s.PrioCmsgFallback = t.noPrioCmsg.Load()
	return s
}

// Close closes every socket; waiting ReadBatch calls return net.ErrClosed,
// and so does every call after it.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.closed.Store(true)
		if t.closeFD >= 0 {
			one := [8]byte{1}
			_, _ = unix.Write(t.closeFD, one[:]) // wakes the waiting reads
		}
		t.life.Lock()
		defer t.life.Unlock()
		var errs []error
		for i := range t.nets {
			if ln := t.nets[i].tcp; ln != nil {
				t.nets[i].tcp = nil
				if err := ln.Close(); err != nil {
					errs = append(errs, err)
				}
			}
			for _, s := range []*sock{t.nets[i].grp, t.nets[i].hb, t.nets[i].uni} {
				if s != nil && s.fd >= 0 {
					if err := unix.Close(s.fd); err != nil {
						errs = append(errs, os.NewSyscallError("close", err))
					}
					s.fd = -1
				}
			}
		}
		if t.closeFD >= 0 {
			unix.Close(t.closeFD)
			t.closeFD = -1
		}
		t.closeErr = errors.Join(errs...)
	})
	return t.closeErr
}

package transport

import (
	"net/netip"
	"time"

	"github.com/fmagent/fmagent/wire"
)

// Bind is what the agent needs of its two networks, as wireguard-go's
// conn.Bind is what its device needs of UDP: send to a network's group or
// to one peer, wait for the sockets, a deadline or a wake-up, read what
// arrived. The multicast Transport is the real one (OpenBind); the channel
// network of package transport/bindtest is a fake for agent tests that are
// not about sockets, so they need no multicast.
//
// A Bind's methods are safe for concurrent use, except that each
// BindSender and BindWaiter belongs to one goroutine (as Sender and Waiter
// do), and TryReadBatch is called by the goroutine that waits.
type Bind interface {
	// NewSender returns a sender for one goroutine's use.
	NewSender() BindSender
	// NewWaiter returns the receiving goroutine's one blocking point.
	NewWaiter() (BindWaiter, error)
	// TryReadBatch reads what is queued on network n's group socket
	// (unicast false) or unicast socket, without blocking: 0 when nothing.
	TryReadBatch(n wire.Net, unicast bool, msgs []Message) (int, error)
	// TryReadHeartbeats reads what is queued on network n's heartbeat
	// socket, without blocking; Message.At is when each arrived. The
	// waiter does not wait for it: read it at every wake-up.
	TryReadHeartbeats(n wire.Net, msgs []Message) (int, error)
	// LocalAddr is this node's unicast address on network n: the source of
	// everything it sends there.
	LocalAddr(n wire.Net) netip.AddrPort
	// Group is network n's group address.
	Group(n wire.Net) netip.AddrPort
	// Stats are the counters; Drops the datagrams lost for want of buffer.
	Stats() Stats
	Drops() uint64
	// Close closes the networks: reads fail with net.ErrClosed.
	Close() error
}

// BindSender sends datagrams; see Sender, the real one.
type BindSender interface {
	// Queue adds a datagram to those Flush sends (pkt unchanged until
	// then); Flush sends them, one system call per network.
	Queue(n wire.Net, kind SendKind, to netip.AddrPort, pkt []byte, prio bool) error
	Flush() error
	Send(n wire.Net, pkt []byte, prio bool) error
	SendHeartbeat(n wire.Net, pkt []byte) error
	SendTo(n wire.Net, to netip.AddrPort, pkt []byte, prio bool) error
	WriteBatchTo(n wire.Net, to netip.AddrPort, pkts [][]byte, prio bool) (int, error)
}

// BindWaiter blocks until something is ready; see Waiter, the real one.
type BindWaiter interface {
	// Wait returns what is ready: readable sockets (Readable), EvTimer once
	// deadline has passed, EvWoken after Wake, ErrStopped after Stop.
	Wait(deadline time.Time) (Events, error)
	Wake()
	Stop()
	Close()
}

// OpenBind opens the multicast transport as a Bind.
func OpenBind(cfg Config) (Bind, error) {
	t, err := Open(cfg)
	if err != nil {
		return nil, err // not a Bind holding a nil *Transport
	}
	return multicastBind{t}, nil
}

// multicastBind is the Transport as a Bind (its NewSender and NewWaiter
// return the concrete types).
type multicastBind struct{ *Transport }

func (b multicastBind) NewSender() BindSender { return b.Transport.NewSender() }

func (b multicastBind) NewWaiter() (BindWaiter, error) {
	w, err := b.Transport.NewWaiter()
	if err != nil {
		return nil, err
	}
	return w, nil
}

var (
	_ Bind       = multicastBind{}
	_ BindSender = (*Sender)(nil)
	_ BindWaiter = (*Waiter)(nil)
)

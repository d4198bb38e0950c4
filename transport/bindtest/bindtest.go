// Package bindtest is a fake transport.Bind: a network of Go channels and
// queues between the Binds opened on one Network, in the manner of
// wireguard-go's conn/bindtest. Agent tests that are about the protocol,
// the API or shared memory, not about sockets, run real agents on it with
// no multicast socket, no free port to find and no kernel in the way.
//
// It keeps the real transport's observable rules: a datagram sent to a
// network's group reaches every other Bind on that network (never the
// sender itself, as the real one drops its own looped-back multicast), one
// sent to a LocalAddr reaches that Bind's unicast queue, the source of
// either is the sender's LocalAddr there, priority datagrams carry
// transport.PriorityTOS, and a datagram longer than the reader's buffer is
// dropped and counted. A network or a node's link on it can be cut.
package bindtest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fmagent/fmagent/transport"
	"github.com/fmagent/fmagent/wire"
)

// QueueLen is how many datagrams one socket's queue holds; more are
// dropped and counted in Drops, as a full socket buffer's would be.
const QueueLen = 4096

// Network is the medium: both networks of a cluster.
type Network struct {
	mu    sync.Mutex
	binds map[uint32]*Bind
	cut   map[cutKey]bool

	delivered atomic.Uint64
	onSend    atomic.Pointer[func(node uint32, n wire.Net, pkt []byte)]
}

// OnSend makes every Bind of the network call f, on the sender's goroutine,
// with each datagram it is about to send (nil: none). For tests about who
// sends what: f must not keep pkt.
func (nw *Network) OnSend(f func(node uint32, n wire.Net, pkt []byte)) {
	if f == nil {
		nw.onSend.Store(nil)
		return
	}
	nw.onSend.Store(&f)
}

type cutKey struct {
	n    wire.Net
	node uint32
}

// NewNetwork returns an empty network.
func NewNetwork() *Network {
	return &Network{binds: map[uint32]*Bind{}, cut: map[cutKey]bool{}}
}

// Addr is node's unicast address on network n in every Network.
func Addr(n wire.Net, node uint32) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(201 + n), byte(node >> 8), byte(node)}), 7411)
}

// Group is network n's group address in every Network.
func Group(n wire.Net) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{239, 192, 77, byte(1 + n)}), 7410)
}

// Open attaches node to both networks. A node opened again (a restarted
// agent) replaces its previous Bind, which is closed.
func (nw *Network) Open(node uint32) *Bind {
	b := &Bind{nw: nw, node: node, notify: make(chan struct{}, 1)}
	nw.mu.Lock()
	old := nw.binds[node]
	nw.binds[node] = b
	nw.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return b
}

// Cut cuts (or, with cut false, restores) node's link on network n: what
// it sends there and what is sent to it there is lost.
func (nw *Network) Cut(n wire.Net, node uint32, cut bool) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.cut[cutKey{n, node}] = cut
}

// Delivered is how many datagrams the network has queued for a reader.
func (nw *Network) Delivered() uint64 { return nw.delivered.Load() }

// Bind is one node's attachment: a transport.Bind.
type Bind struct {
	nw     *Network
	node   uint32
	notify chan struct{} // one token: something was queued (the waiter looks)
	closed atomic.Bool

	mu    sync.Mutex
	q     [wire.NumNets][3][]datagram // [net][qGroup, qUnicast, qHeartbeat]
	stats transport.Stats
	drops uint64
}

type datagram struct {
	data []byte
	from netip.AddrPort
	tos  uint8
	at   time.Time // queued (the heartbeat socket's Message.At)
}

// The queues of one network: the group socket, the unicast socket and the
// heartbeat socket (which, as the real one, the waiter does not wait for).
const (
	qGroup = iota
	qUnicast
	qHeartbeat
)

var _ transport.Bind = (*Bind)(nil)

// NewSender returns a sender; the fake's is safe for concurrent use.
func (b *Bind) NewSender() transport.BindSender { return sender{b} }

// NewWaiter returns the waiter of the goroutine that reads b.
func (b *Bind) NewWaiter() (transport.BindWaiter, error) {
	return &waiter{b: b, wake: make(chan struct{}, 1), stop: make(chan struct{}), timer: time.NewTimer(time.Hour)}, nil
}

// LocalAddr is Addr(n, node).
func (b *Bind) LocalAddr(n wire.Net) netip.AddrPort { return Addr(n, b.node) }

// Group is Group(n).
func (b *Bind) Group(n wire.Net) netip.AddrPort { return Group(n) }

// Stats returns the counters.
func (b *Bind) Stats() transport.Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats
}

// Drops is how many datagrams a full queue refused.
func (b *Bind) Drops() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.drops
}

// Close detaches b: what was queued is dropped, reads fail with
// net.ErrClosed, sends with it too.
func (b *Bind) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	b.nw.mu.Lock()
	if b.nw.binds[b.node] == b {
		delete(b.nw.binds, b.node)
	}
	b.nw.mu.Unlock()
	b.mu.Lock()
	b.q = [wire.NumNets][3][]datagram{}
	b.mu.Unlock()
	b.poke()
	return nil
}

// TryReadBatch reads what is queued on one of b's sockets.
func (b *Bind) TryReadBatch(n wire.Net, unicast bool, msgs []transport.Message) (int, error) {
	u := qGroup
	if unicast {
		u = qUnicast
	}
	return b.read(n, u, msgs)
}

// TryReadHeartbeats reads what is queued on b's heartbeat socket of n.
func (b *Bind) TryReadHeartbeats(n wire.Net, msgs []transport.Message) (int, error) {
	return b.read(n, qHeartbeat, msgs)
}

func (b *Bind) read(n wire.Net, u int, msgs []transport.Message) (int, error) {
	if n >= wire.NumNets {
		return 0, transport.ErrBadNet
	}
	if b.closed.Load() {
		return 0, net.ErrClosed
	}
	unicast := u == qUnicast
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.q[n][u]
	st := &b.stats.Nets[n]
	k := 0
	for len(q) > 0 && k < len(msgs) {
		d := q[0]
		q[0] = datagram{}
		q = q[1:]
		if len(d.data) > len(msgs[k].Buf) {
			st.DroppedTruncated++
			continue
		}
		m := &msgs[k]
		m.N = copy(m.Buf, d.data)
		m.From, m.Net, m.Unicast, m.TOS = d.from, n, unicast, d.tos
		m.At = time.Time{}
		if u == qHeartbeat {
			m.At = d.at
		}
		m.IfIndex = 1 // lo, where the real one runs in tests
		st.RecvPackets++
		st.RecvBytes += uint64(m.N)
		k++
	}
	if len(q) == 0 {
		q = nil // let the backing array go
	}
	b.q[n][u] = q
	return k, nil
}

// readable is the Readable bits of b's non-empty queues.
func (b *Bind) readable() transport.Events {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ev transport.Events
	for n := wire.Net(0); n < wire.NumNets; n++ {
		for _, u := range []int{qGroup, qUnicast} {
			if len(b.q[n][u]) > 0 {
				ev |= transport.Readable(n, u == qUnicast)
			}
		}
	}
	return ev
}

func (b *Bind) poke() {
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

// deliver queues a copy of pkt on to's socket u (qGroup, qUnicast,
// qHeartbeat) of network n. Called without any lock held.
func (b *Bind) deliver(n wire.Net, u int, d datagram) {
	b.mu.Lock()
	if len(b.q[n][u]) >= QueueLen {
		b.drops++
		b.mu.Unlock()
		return
	}
	b.q[n][u] = append(b.q[n][u], d)
	b.mu.Unlock()
	b.nw.delivered.Add(1)
	b.poke()
}

// ErrNoRoute is returned for a unicast to an address no open Bind has.
var ErrNoRoute = errors.New("bindtest: no such address")

type sender struct{ b *Bind }

// Queue delivers at once: the fake network has no system calls to save.
func (s sender) Queue(n wire.Net, kind transport.SendKind, to netip.AddrPort, pkt []byte, prio bool) error {
	switch kind {
	case transport.ToGroup:
		return s.Send(n, pkt, prio)
	case transport.ToHeartbeat:
		return s.SendHeartbeat(n, pkt)
	default:
		return s.SendTo(n, to, pkt, prio)
	}
}

func (s sender) Flush() error { return nil }

func (s sender) Send(n wire.Net, pkt []byte, prio bool) error {
	return s.send(n, netip.AddrPort{}, pkt, prio, qGroup)
}

func (s sender) SendHeartbeat(n wire.Net, pkt []byte) error {
	return s.send(n, netip.AddrPort{}, pkt, false, qHeartbeat)
}

func (s sender) SendTo(n wire.Net, to netip.AddrPort, pkt []byte, prio bool) error {
	if !to.IsValid() {
		return fmt.Errorf("bindtest: unicast to %v: %w", to, ErrNoRoute)
	}
	return s.send(n, to, pkt, prio, qUnicast)
}

func (s sender) WriteBatchTo(n wire.Net, to netip.AddrPort, pkts [][]byte, prio bool) (int, error) {
	for i, p := range pkts {
		if err := s.SendTo(n, to, p, prio); err != nil {
			return i, err
		}
	}
	return len(pkts), nil
}

// send delivers pkt to network n's group (to invalid; queue u: qGroup or
// qHeartbeat) or to the Bind whose LocalAddr on n is to (qUnicast).
func (s sender) send(n wire.Net, to netip.AddrPort, pkt []byte, prio bool, u int) error {
	b := s.b
	if n >= wire.NumNets {
		return transport.ErrBadNet
	}
	if len(pkt) > wire.MaxDatagram {
		return transport.ErrTooLarge
	}
	if b.closed.Load() {
		return net.ErrClosed
	}
	if f := b.nw.onSend.Load(); f != nil {
		(*f)(b.node, n, pkt)
	}
	d := datagram{data: append([]byte(nil), pkt...), from: b.LocalAddr(n), at: time.Now()}
	if prio {
		d.tos = transport.PriorityTOS
	}
	b.mu.Lock()
	st := &b.stats.Nets[n]
	st.SentPackets++
	st.SentBytes += uint64(len(pkt))
	if prio {
		st.PriorityPackets++
	}
	b.mu.Unlock()

	nw := b.nw
	nw.mu.Lock()
	if nw.cut[cutKey{n, b.node}] {
		nw.mu.Unlock()
		return nil // lost on the wire, as a cut cable loses it
	}
	var dst []*Bind
	for node, o := range nw.binds {
		if o == b || nw.cut[cutKey{n, node}] {
			continue
		}
		if !to.IsValid() || o.LocalAddr(n) == to {
			dst = append(dst, o)
		}
	}
	nw.mu.Unlock()
	if to.IsValid() && len(dst) == 0 {
		// The real transport's sendmsg succeeds and the datagram is lost.
		return nil
	}
	for _, o := range dst {
		o.deliver(n, u, d)
	}
	return nil
}

// waiter is the fake's transport.BindWaiter: a select on the Bind's
// notification channel, a timer and its own wake and stop channels.
type waiter struct {
	b        *Bind
	wake     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	timer    *time.Timer
}

func (w *waiter) Wait(deadline time.Time) (transport.Events, error) {
	select {
	case <-w.stop:
		return transport.EvStopped, transport.ErrStopped
	default:
	}
	var ev transport.Events
	if ev = w.b.readable(); ev == 0 {
		d := time.Until(deadline)
		if d <= 0 {
			ev |= transport.EvTimer
		} else {
			w.timer.Reset(d)
			select {
			case <-w.b.notify:
				ev = w.b.readable()
			case <-w.timer.C:
				ev |= transport.EvTimer
			case <-w.wake:
				ev |= transport.EvWoken
			case <-w.stop:
				w.timer.Stop()
				return transport.EvStopped, transport.ErrStopped
			}
			w.timer.Stop()
		}
	}
	select {
	case <-w.wake:
		ev |= transport.EvWoken
	default:
	}
	if !time.Now().Before(deadline) {
		ev |= transport.EvTimer
	}
	return ev, nil
}

func (w *waiter) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *waiter) Stop() { w.stopOnce.Do(func() { close(w.stop) }) }

func (w *waiter) Close() { w.Stop() }

package agent

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/internal/connhold"
	"github.com/fmagent/fmagent/transport"
	"github.com/fmagent/fmagent/wire"
)

// The exit watch: a TCP connection between each follower and its master,
// over network A, from the follower's agent to the master's unicast
// address and port, authenticated by both processes with the cluster's key,
// over which nothing flows but one goodbye byte before a close of the
// agent's own. When a process ends (kill -9, a crash, an exit) its kernel
// closes its sockets, and the other end reads the end of the stream (or a
// reset) within a round trip, where its heartbeats would take the detection
// time to fall silent. That end takes it as the process's goodbye
// (core.Node.PeerExited): a follower killed is down in every table within a
// millisecond or so; a master killed, every follower elects at once. A
// paused process, a dead host or a cut network closes nothing: they are
// left to the detector, as before.
//
// An authenticated connection is handed to a connhold.Holder: a thread
// with a file table of its own, which holds it, reads it and reports its
// end (exitEvent). A killed agent's kernel then closes it in that thread's
// exit, before the process's memory is freed, not after (about 3 ms for an
// agent: connhold's package comment says why).
//
// Nothing here decides: the core takes an exit only from a peer it heard at
// that incarnation, and the connection proves the incarnation (the
// handshake binds it to fresh nonces of both sides). A connection the
// agent closes itself (its master changed, a newer connection replaced
// it) is closed after the goodbye byte, so that the other end does not
// take it as an exit.

const (
	exitMagic   = "FMX1"
	exitBye     = 'B'
	exitNonce   = 16
	exitHelloSz = 4 + 4 + 4 + 8 + exitNonce // magic, cluster, node, incarnation, nonce
	exitMACSz   = sha256.Size
	// exitHandshake bounds a handshake: the peer is a live agent on the
	// cluster's network, or nobody worth waiting for.
	exitHandshake = time.Second
	// A failed dial is retried after exitRetryMin, doubling to
	// exitRetryMax; the dialer also looks again every exitRecheck (an
	// address learned, a reincarnation) without being woken.
	exitRetryMin = 50 * time.Millisecond
	exitRetryMax = time.Second
	exitRecheck  = time.Second
	// exitMaxHandshakes bounds the handshakes in progress on the listener:
	// strangers connecting cost at most that many goroutines.
	exitMaxHandshakes = 16
)

// exitWatch is the agent's side of the exit watch.
type exitWatch struct {
	ln      *net.TCPListener // nil: not listening (see openExitWatch)
	hold    *connhold.Holder // holds every connection once authenticated; nil with ln
	key     []byte
	accept  [][]byte
	cluster uint32
	nudge   chan struct{} // the master or an incarnation changed (cap 1)

	mu         sync.Mutex
	in         map[wire.NodeID]*exitConn // accepted, by peer
	out        *exitConn                 // dialled to the master
	held       map[uint64]*exitConn      // every connection the holder holds, by its ID
	lastID     uint64
	handshakes int
	closed     bool // the agent is shutting down (closeExitWatch)
	goodbye    bool // and said goodbye: close with the goodbye byte (finish)

	taken, ignored, refused, dialFailures atomic.Uint64
}

// exitConn is one authenticated connection, held by the holder.
type exitConn struct {
	x    *exitWatch
	id   uint64      // the holder's
	node wire.NodeID // the peer
	inc  uint64      // its incarnation, proven by the handshake
	self uint64      // ours when it was opened
	// ours: this side closes it (after the goodbye byte, or at shutdown):
	// the end of the stream that follows is not the peer's exit.
	ours atomic.Bool
	// closing is how ours closes it (closeBye, closeDrop; 0: not yet):
	// adopt gives the command again once the holder has it, as one given
	// meanwhile reached the holder before the connection did.
	closing atomic.Uint32
	done    chan struct{} // closed at its last event (exitEvent)
}

const (
	closeBye = iota + 1
	closeDrop
)

// bye closes c after the goodbye byte: the peer will not take it as an
// exit.
func (c *exitConn) bye() {
	if c.ours.Swap(true) {
		return
	}
	c.closing.Store(closeBye)
	c.x.hold.Send(c.id, exitBye)
}

// drop closes c without a goodbye: the peer takes it as this process's
// end (a shutdown that could send nothing, closeExitWatch).
func (c *exitConn) drop() {
	c.ours.Store(true)
	c.closing.CompareAndSwap(0, closeDrop)
	c.x.hold.Drop(c.id)
}

// reclose gives c's closing command again (adopt).
func (c *exitConn) reclose() {
	switch c.closing.Load() {
	case closeBye:
		c.x.hold.Send(c.id, exitBye)
	case closeDrop:
		c.x.hold.Drop(c.id)
	}
}

// sayGoodbye closes c, not held, after the goodbye byte.
func sayGoodbye(c *net.TCPConn) {
	_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = c.Write([]byte{exitBye})
	_ = c.Close()
}

// adopt hands c, whose handshake made conn, to the holder. An accepted
// connection (in) replaces the peer's older one, which it returns. Not
// adopted (false): the watch was closed meanwhile (c is closed as
// closeExitWatch says) or the holder refused it (c is closed after the goodbye byte: ours).
func (x *exitWatch) adopt(conn *exitConn, c *net.TCPConn, in bool) (old *exitConn, ok bool) {
	x.mu.Lock()
	if x.closed {
		goodbye := x.goodbye
		x.mu.Unlock()
		if goodbye {
			sayGoodbye(c)
		} else {
			_ = c.Close()
		}
		return nil, false
	}
	x.lastID++
	conn.x, conn.id = x, x.lastID
	x.held[conn.id] = conn
	if in {
		old = x.in[conn.node]
		x.in[conn.node] = conn
	} else {
		x.out = conn
	}
	x.mu.Unlock()
	// After the maps: its end may be reported before Hold returns.
	if err := x.hold.Hold(conn.id, c); err != nil {
		x.mu.Lock()
		x.forget(conn)
		x.mu.Unlock()
		// Closed by us, not ended: the peer must not take it as an exit.
		sayGoodbye(c)
		return nil, false
	}
	conn.reclose()
	return old, true
}

// forget removes conn from the maps. mu held.
func (x *exitWatch) forget(conn *exitConn) {
	delete(x.held, conn.id)
	if x.in[conn.node] == conn {
		delete(x.in, conn.node)
	}
	if x.out == conn {
		x.out = nil
	}
}

// openExitWatch listens on network A's unicast address and port, TCP: the
// listener the transport opened beside its unicast socket, on a port
// free for both (transport.NetConfig.ListenTCP), or, for a Bind without
// one (the tests' fake network), its own. A failure is not fatal: exits
// are then seen by the detector alone, and the agent says so.
func (a *agent) openExitWatch(key []byte, accept [][]byte) {
	x := &exitWatch{key: key, accept: accept, cluster: a.cfg.ClusterID, nudge: make(chan struct{}, 1),
		in: make(map[wire.NodeID]*exitConn), held: make(map[uint64]*exitConn)}
	a.exit = x
	at := a.tr.LocalAddr(wire.NetA)
	var ln *net.TCPListener
	var err error
	if tl, ok := a.tr.(interface {
		TakeTCPListener(wire.Net) (*net.TCPListener, error)
	}); ok {
		ln, err = tl.TakeTCPListener(wire.NetA)
	} else {
		ln, err = net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(at))
	}
	if err != nil {
		a.log.Warn("exit watch off: a killed agent is seen only when its heartbeats stop (the detection time), not at once", "listen", at.String(), "err", err)
		return
	}
	h, err := connhold.Start(connhold.Options{Priority: a.rtPrio, Events: a.exitEvent, IdleLast: true})
	if err != nil {
		ln.Close()
		a.log.Warn("exit watch off: a killed agent is seen only when its heartbeats stop (the detection time), not at once", "err", err)
		return
	}
	if own, why := h.Private(); !own {
		a.log.Warn("exit watch: its connections are in the process's file table, not a thread's own: a kill -9 of this agent is seen after its memory is freed (about 3 ms), not at once",
			"err", why)
	} else {
		// ss -p and lsof look in /proc/PID/fd, the main thread's table:
		// they show these connections without their process.
		a.log.Info("exit watch: connections held by a thread with a file table of its own",
			"tid", h.Tid(), "fds", fmt.Sprintf("/proc/%d/task/%d/fd", os.Getpid(), h.Tid()))
	}
	if err := h.RealtimeErr(); err != nil {
		a.log.Debug("exit watch: its holder's thread runs at the normal policy", "err", err)
	}
	if err := h.IdleErr(); err != nil {
		a.log.Debug("exit watch: the thread meant to free the memory of a killed agent last is not at SCHED_IDLE", "err", err)
	}
	x.ln, x.hold = ln, h
}

// nudgeExit tells the dialer to look again (the master changed).
func (a *agent) nudgeExit() {
	if a.exit == nil {
		return
	}
	select {
	case a.exit.nudge <- struct{}{}:
	default:
	}
}

// exitListen accepts followers' connections until done.
func (a *agent) exitListen(done <-chan struct{}) {
	x := a.exit
	if x.ln == nil {
		return
	}
	go func() {
		<-done
		_ = x.ln.Close()
	}()
	for {
		c, err := x.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like
			continue
		}
		x.mu.Lock()
		full := x.handshakes >= exitMaxHandshakes || x.closed
		if !full {
			x.handshakes++
		}
		x.mu.Unlock()
		if full {
			x.refused.Add(1)
			_ = c.Close()
			continue
		}
		go a.exitAccept(c)
	}
}

// exitAccept runs the listener's side of a handshake, then hands the
// connection to the holder.
func (a *agent) exitAccept(c *net.TCPConn) {
	x := a.exit
	conn, err := a.exitAnswer(c)
	x.mu.Lock()
	x.handshakes--
	x.mu.Unlock()
	if err != nil {
		x.refused.Add(1)
		a.log.Debug("exit watch: connection refused", "from", c.RemoteAddr().String(), "err", err)
		_ = c.Close()
		return
	}
	if old, ok := x.adopt(conn, c, true); ok && old != nil {
		old.bye() // the same peer again: its newer connection replaces it
	}
}

// exitAnswer: the dialer's hello, our reply and proof, the dialer's proof.
func (a *agent) exitAnswer(c *net.TCPConn) (*exitConn, error) {
	x := a.exit
	_ = c.SetDeadline(time.Now().Add(exitHandshake))
	var hello [exitHelloSz]byte
	if _, err := io.ReadFull(c, hello[:]); err != nil {
		return nil, fmt.Errorf("reading the hello: %w", err)
	}
	node, inc, err := x.parseHello(hello[:])
	if err != nil {
		return nil, err
	}
	if node == wire.NodeID(a.cfg.NodeID) {
		return nil, errors.New("a hello in our own name")
	}
	reply := make([]byte, exitHelloSz, exitHelloSz+exitMACSz)
	a.mu.Lock()
	self, selfInc := a.core.ID(), a.core.Incarnation()
	a.mu.Unlock()
	if err := x.putHello(reply, self, selfInc); err != nil {
		return nil, err
	}
	reply = append(reply, x.mac(x.key, 'M', hello[:], reply[:exitHelloSz])...)
	if _, err := c.Write(reply); err != nil {
		return nil, fmt.Errorf("writing the reply: %w", err)
	}
	var proof [exitMACSz]byte
	if _, err := io.ReadFull(c, proof[:]); err != nil {
		return nil, fmt.Errorf("reading the proof: %w", err)
	}
	if !x.verify(proof[:], 'F', hello[:], reply[:exitHelloSz]) {
		return nil, errors.New("not authenticated")
	}
	_ = c.SetDeadline(time.Time{})
	return &exitConn{node: node, inc: inc, self: selfInc, done: make(chan struct{})}, nil
}

// exitDial opens the connection to master (at incarnation inc, address
// at): our hello, its reply and proof, our proof.
func (a *agent) exitDial(master wire.NodeID, inc uint64, at netip.AddrPort, self wire.NodeID, selfInc uint64) (*exitConn, *net.TCPConn, error) {
	x := a.exit
	d := net.Dialer{Timeout: exitHandshake}
	if l := a.tr.LocalAddr(wire.NetA); l.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: l.Addr().AsSlice()} // network A's source address, any port
	}
	nc, err := d.Dial("tcp4", at.String())
	if err != nil {
		return nil, nil, err
	}
	c := nc.(*net.TCPConn)
	fail := func(err error) (*exitConn, *net.TCPConn, error) {
		_ = c.Close()
		return nil, nil, err
	}
	_ = c.SetDeadline(time.Now().Add(exitHandshake))
	var hello [exitHelloSz]byte
	if err := x.putHello(hello[:], self, selfInc); err != nil {
		return fail(err)
	}
	if _, err := c.Write(hello[:]); err != nil {
		return fail(fmt.Errorf("writing the hello: %w", err))
	}
	var reply [exitHelloSz + exitMACSz]byte
	if _, err := io.ReadFull(c, reply[:]); err != nil {
		return fail(fmt.Errorf("reading the reply: %w", err))
	}
	node, minc, err := x.parseHello(reply[:exitHelloSz])
	if err != nil {
		return fail(err)
	}
	if !x.verify(reply[exitHelloSz:], 'M', hello[:], reply[:exitHelloSz]) {
		return fail(errors.New("the master's reply is not authenticated"))
	}
	if node != master || minc != inc {
		return fail(fmt.Errorf("answered by node %d incarnation %d, not the master %d incarnation %d", node, minc, master, inc))
	}
	if _, err := c.Write(x.mac(x.key, 'F', hello[:], reply[:exitHelloSz])); err != nil {
		return fail(fmt.Errorf("writing the proof: %w", err))
	}
	_ = c.SetDeadline(time.Time{})
	return &exitConn{node: master, inc: inc, self: selfInc, done: make(chan struct{})}, c, nil
}

// exitDialLoop keeps one connection open to the master this node follows,
// at the master's and this node's current incarnations, until done.
func (a *agent) exitDialLoop(done <-chan struct{}) {
	x := a.exit
	if x.ln == nil {
		return // the watch is off (openExitWatch said why)
	}
	retry := exitRetryMin
	t := time.NewTimer(0)
	defer t.Stop()
	var cur *exitConn
	var warned wire.NodeID // the master a failed connection was logged for
	for {
		var curDone chan struct{}
		if cur != nil {
			curDone = cur.done
		}
		wait := exitRecheck
		select {
		case <-done:
			if cur != nil {
				x.finish(cur) // closeExitWatch has (or a dial since it)
			}
			return
		case <-x.nudge:
		case <-t.C:
		case <-curDone:
			// The master closed it: its goodbye, or its exit (taken by
			// exitRead). Look again after a pause: a reply to a closed
			// connection is not worth a busy loop.
			cur = nil
			wait = exitRetryMin
		}
		a.mu.Lock()
		st := a.core.Role()
		master, self, selfInc := st.Master, a.core.ID(), a.core.Incarnation()
		inc := a.core.PeerIncarnation(master)
		at, known := a.addrs[wire.NetA][master]
		stopping := a.stopping
		a.mu.Unlock()
		if stopping {
			wait = exitRecheck
		}
		if cur != nil && (cur.node != master || cur.inc != inc || cur.self != selfInc) {
			cur.bye()
			cur = nil
		}
		if cur == nil && master != 0 && master != self && (inc == 0 || !known) && !stopping {
			// Following a master not yet heard on network A (its address)
			// or at all (its incarnation): look again soon, not in a
			// second; a kill meanwhile would be left to the detector.
			wait = exitRetryMin
		}
		if cur == nil && master != 0 && master != self && inc != 0 && known && !stopping {
			conn, c, err := a.exitDial(master, inc, at, self, selfInc)
			if err != nil {
				x.dialFailures.Add(1)
				if warned != master {
					// Once a master: a firewall that lets the datagrams
					// through and not the connection costs the fast
					// exit, not the cluster, and says so once.
					warned = master
					a.log.Warn("exit watch: cannot connect to the master (retrying); until it can, this node's kill -9 is seen only at the detection time",
						"master", master, "at", at.String(), "err", err)
				} else {
					a.log.Debug("exit watch: connecting to the master", "master", master, "at", at.String(), "err", err)
				}
				wait = retry
				retry = min(2*retry, exitRetryMax)
			} else {
				if warned == master {
					a.log.Info("exit watch: connected to the master", "master", master)
					warned = 0
				}
				retry = exitRetryMin
				if _, ok := x.adopt(conn, c, false); ok {
					cur = conn
				}
			}
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(wait)
	}
}

// exitEvent is what the holder reports of a connection (on its events'
// thread, at the real-time loop's priority). The peer's goodbye byte: the
// holder closes it, and its end is nothing. The end of the stream or a
// reset without it, or before it: the peer's process ended
// (core.Node.PeerExited). Anything else (a keepalive time-out: the host or
// the network, not the process): nothing either; the detector judges. A
// close of ours (bye, drop): nothing.
func (a *agent) exitEvent(ev connhold.Event) {
	x := a.exit
	x.mu.Lock()
	conn := x.held[ev.ID]
	if conn != nil && ev.Kind != connhold.Data {
		x.forget(conn)
	}
	x.mu.Unlock()
	if conn == nil {
		return
	}
	switch ev.Kind {
	case connhold.Data:
		if ev.Byte == exitBye && !conn.ours.Swap(true) {
			x.hold.Drop(ev.ID)
		}
		return
	case connhold.PeerEnded:
		if !conn.ours.Load() {
			a.peerExited(conn.node, conn.inc)
		}
	}
	close(conn.done)
}

// peerExited hands the core a peer's exit and carries out the Ready, at
// the real-time loop's priority (submitOffLoop says why).
func (a *agent) peerExited(node wire.NodeID, inc uint64) {
	var b transport.Boost
	b.Enter(a.rtPrio)
	a.mu.Lock()
	taken := false
	if !a.stopping {
		taken = a.core.PeerExited(time.Now(), node, inc)
		a.handleReady()
		if a.core.NextDeadline().Before(a.rtNext) {
			a.poke()
		}
	}
	a.mu.Unlock()
	b.Exit()
	if taken {
		a.exit.taken.Add(1)
		a.log.Info("exit watch: a peer's process ended (its connection closed without a goodbye): gone", "peer", node, "incarnation", inc)
	} else {
		a.exit.ignored.Add(1)
		a.log.Debug("exit watch: a peer's connection closed without a goodbye, not taken (another incarnation, or already gone)", "peer", node, "incarnation", inc)
	}
}

// closeExitWatch closes every connection at shutdown: with the goodbye
// byte when the goodbye datagram has gone (saidGoodbye), so that a peer
// that reads the connection's end before the datagram does not take a
// planned stop for a failure (node-unreachable, not node-left); without
// it when nothing could be sent (failStop), so that the end of the
// connections says that this node is gone.
func (a *agent) closeExitWatch(saidGoodbye bool) {
	x := a.exit
	if x == nil {
		return
	}
	x.mu.Lock()
	x.closed, x.goodbye = true, saidGoodbye
	conns := make([]*exitConn, 0, len(x.held))
	for _, c := range x.held {
		conns = append(conns, c)
	}
	x.mu.Unlock()
	for _, c := range conns {
		x.finish(c)
	}
}

// finish closes c at shutdown, as closeExitWatch says (x.goodbye).
func (x *exitWatch) finish(c *exitConn) {
	x.mu.Lock()
	goodbye := x.goodbye
	x.mu.Unlock()
	if goodbye {
		c.bye()
	} else {
		c.drop()
	}
}

func (x *exitWatch) putHello(b []byte, node wire.NodeID, inc uint64) error {
	copy(b, exitMagic)
	binary.BigEndian.PutUint32(b[4:], x.cluster)
	binary.BigEndian.PutUint32(b[8:], uint32(node))
	binary.BigEndian.PutUint64(b[12:], inc)
	if _, err := rand.Read(b[20 : 20+exitNonce]); err != nil {
		return fmt.Errorf("a nonce: %w", err)
	}
	return nil
}

func (x *exitWatch) parseHello(b []byte) (wire.NodeID, uint64, error) {
	if string(b[:4]) != exitMagic {
		return 0, 0, errors.New("not an exit-watch hello")
	}
	if c := binary.BigEndian.Uint32(b[4:]); c != x.cluster {
		return 0, 0, fmt.Errorf("cluster %d, not ours (%d)", c, x.cluster)
	}
	node, inc := wire.NodeID(binary.BigEndian.Uint32(b[8:])), binary.BigEndian.Uint64(b[12:])
	if node == 0 || inc == 0 {
		return 0, 0, errors.New("no node or incarnation")
	}
	return node, inc, nil
}

// mac binds both hellos (each with its side's fresh nonce) and the role of
// its writer ('M' the listener, 'F' the dialer) under key.
func (x *exitWatch) mac(key []byte, role byte, dialer, listener []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("fmagent exit watch"))
	h.Write([]byte{role})
	h.Write(dialer)
	h.Write(listener)
	return h.Sum(nil)
}

// verify checks mac under the key or any key still accepted (a key
// change-over).
func (x *exitWatch) verify(mac []byte, role byte, dialer, listener []byte) bool {
	if hmac.Equal(mac, x.mac(x.key, role, dialer, listener)) {
		return true
	}
	for _, k := range x.accept {
		if hmac.Equal(mac, x.mac(k, role, dialer, listener)) {
			return true
		}
	}
	return false
}

// exitStatus is the watch for the API's status (fmctl status): nil when
// the agent has none.
func (a *agent) exitStatus() *api.ExitWatchStatus {
	x := a.exit
	if x == nil {
		return nil
	}
	st := &api.ExitWatchStatus{Listening: x.ln != nil, Followers: []wire.NodeID{},
		Taken: x.taken.Load(), Ignored: x.ignored.Load(), Refused: x.refused.Load(), DialFailures: x.dialFailures.Load()}
	x.mu.Lock()
	defer x.mu.Unlock()
	for id := range x.in {
		st.Followers = append(st.Followers, id)
	}
	slices.Sort(st.Followers)
	if x.hold != nil {
		own, _ := x.hold.Private()
		st.OwnTable = &own
	}
	if c := x.out; c != nil && !c.ours.Load() && !isClosed(c.done) {
		st.Master = c.node
	}
	return st
}

// isClosed reports whether ch is closed (never blocks).
func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// exitStats is the watch's counters (fmctl status, metrics).
func (a *agent) exitStats() (taken, ignored, refused uint64) {
	if a.exit == nil {
		return 0, 0, 0
	}
	return a.exit.taken.Load(), a.exit.ignored.Load(), a.exit.refused.Load()
}

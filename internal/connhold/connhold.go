// Package connhold holds connected sockets on a thread with a file table of
// its own, so that when the process is killed the kernel closes them first,
// not last.
//
// Why: a process killed with SIGKILL has every thread go through do_exit,
// which drops the thread's memory (exit_mm) before its files (exit_files).
// The thread that drops the last reference to the shared address space
// tears it down there, unmapping every page (about 0.2 ms per MiB of
// resident memory on the machines measured; 3 ms for an agent), and only
// then, as the last holder of the shared file table, closes the sockets.
// The other end of a connection learns of the kill that late. A thread
// that unshared its file table (unshare(CLONE_FILES)) closes its own table
// in its own exit, after an exit_mm that only drops a reference: the
// connections it alone holds end within a hundred or so microseconds of
// the kill, whatever the process's size. The holder's thread runs at
// SCHED_FIFO when permitted, so that it is among the first threads to run
// its exit.
//
// The held sockets must then be in that table alone: Hold sends one over a
// socketpair (SCM_RIGHTS) and closes the caller's copy. From then on only
// the holder's thread touches it: it polls every held socket, reads what
// arrives and reports it (Event), writes a last byte and closes on Send,
// closes on Drop. The events are read on a second locked thread (also at
// SCHED_FIFO when permitted) in the shared table, which calls the user's
// function.
//
// The holder's thread runs Go code with a file table the rest of the
// process does not see, so it must never use a descriptor of the shared
// table by number: it makes raw system calls on its own descriptors only,
// and never opens a file through os or net. Right after the unshare it
// closes its copies of every descriptor but the standard three and the
// anonymous inodes (among them the Go runtime's epoll instance and the
// eventfd that wakes it, which the runtime may use from any thread, by
// number): a copy of a socket or a file kept there would keep it open after
// the rest of the process closed it. Threads Go creates from it are cloned
// by the runtime's template thread, not from it (runtime.LockOSThread), and
// its goroutine ends locked, so the thread ends with it.
package connhold

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/transport"
)

// ErrClosed is returned by Hold after Close.
var ErrClosed = errors.New("connhold: closed")

// Kind is what an Event reports.
type Kind uint8

const (
	// Data: the peer sent Byte.
	Data Kind = iota + 1
	// PeerEnded: the connection ended from the peer's side (the end of
	// the stream, or a reset): the peer's process ended, or it closed the
	// connection. The holder closed it.
	PeerEnded
	// Failed: reading it failed otherwise (Errno: a keepalive time-out,
	// an unreachable host): the host or the network, not the process. The
	// holder closed it.
	Failed
	// Closed: closed by Send or Drop. The last event of a connection
	// that did not end first.
	Closed
)

func (k Kind) String() string {
	switch k {
	case Data:
		return "data"
	case PeerEnded:
		return "peer-ended"
	case Failed:
		return "failed"
	case Closed:
		return "closed"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Event is what happened to held connection ID. Every connection given to
// Hold has exactly one last event (PeerEnded, Failed or Closed), after
// which its ID is unknown to the holder, unless Close came first. Data
// events are dropped while the events' thread is more than a socket
// buffer behind (a peer that floods): a protocol over a held connection
// must not depend on every byte, only on its end and on a byte that comes
// before it.
type Event struct {
	ID    uint64
	Kind  Kind
	Byte  byte          // Data
	Errno syscall.Errno // Failed
}

// Options say how Start sets the holder up.
type Options struct {
	// Priority is the SCHED_FIFO priority of the holder's thread and of
	// the events' thread (1..99); 0 leaves them at the normal policy.
	Priority int
	// Events is called for each event, one at a time, on the events'
	// thread, in the order the holder saw them. It may call Send and
	// Drop.
	Events func(Event)
	// IdleLast also keeps a thread at SCHED_IDLE asleep, with every
	// signal blocked, until Close. When the process is killed, every
	// thread runs its exit in the order the scheduler picks them, and
	// the last one frees the process's memory (3–5 ms of CPU for an
	// agent) before it closes the shared table's files. Without it that
	// is one of the agent's threads at nice -20, which takes a CPU from
	// every nice-0 process of the host meanwhile (in the benchmark, the
	// survivors' readers, woken by the verdict the holder let through at
	// once). The idle thread is picked last most of the time (23 exits
	// of 30 traced: sched_process_exit with group_dead), and its
	// teardown then takes CPU time no one else wants. Its signals are
	// blocked so that it never runs Go code again: at SCHED_IDLE it
	// could hold a P that a stop-the-world waits for.
	IdleLast bool
}

// Holder is the two threads and the socketpair between them.
type Holder struct {
	mu     sync.RWMutex // the commands (read) against Close (write): no write to a reused descriptor
	ctl    int          // the shared table's end of the socketpair
	closed bool

	private   bool  // the holder's thread has a table of its own
	notOwn    error // why not, when not
	tid       int   // the holder's thread
	rtErr     error // SCHED_FIFO refused to the holder's thread (nil: granted, or not asked)
	heldDone  chan struct{}
	eventDone chan struct{}
	idle      *idleThread // IdleLast's, nil without
}

// The messages on the socketpair, both ways: 16 bytes.
const (
	msgSize = 16

	opHold = 'H' // with the socket (SCM_RIGHTS)
	opSend = 'S' // write msg[1], then close
	opDrop = 'D'
	evMsg  = 'E' // an event: msg[1] its Kind, msg[2] the byte, msg[4:8] the errno
)

func putMsg(b *[msgSize]byte, op, arg byte, id uint64) {
	*b = [msgSize]byte{op, arg}
	for i := range 8 {
		b[8+i] = byte(id >> (8 * i))
	}
}

func msgID(b []byte) uint64 {
	var id uint64
	for i := range 8 {
		id |= uint64(b[8+i]) << (8 * i)
	}
	return id
}

// Start starts the holder's thread and the events' thread. When the
// holder's thread cannot have a table of its own (Private says why), it
// holds the sockets in the shared table: everything works the same, and a
// kill closes them last, as without a holder.
func Start(opts Options) (*Holder, error) {
	if opts.Events == nil {
		return nil, errors.New("connhold: no Events function")
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	// The runtime's poller (an epoll instance and an eventfd it writes to
	// by number, from any thread, netpollBreak) must exist before the
	// unshare, so that the holder's table has them at the same numbers:
	// created after, those numbers would be nothing, or the holder's own
	// sockets, in its table. A pipe through os makes sure of it.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	} else {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, fmt.Errorf("connhold: starting Go's poller: %w", err)
	}
	h := &Holder{ctl: fds[0], heldDone: make(chan struct{}), eventDone: make(chan struct{})}
	started := make(chan struct{})
	h.startHolder(fds[1], opts.Priority, true, started)
	<-started
	// The holder's thread has its own copy of its end (or it is in the
	// shared table, not private): this one would keep the socketpair
	// open after the holder ended, and the events' thread would never
	// read its end.
	if h.private {
		unix.Close(fds[1])
	}
	evStarted := make(chan struct{})
	go h.readEvents(opts, evStarted)
	<-evStarted
	if opts.IdleLast {
		if h.idle, err = startIdle(); err != nil {
			h.Close()
			return nil, err
		}
	}
	return h, nil
}

// idleThread is Options.IdleLast's thread.
type idleThread struct {
	efd  int // written by Close: the thread's one way out
	tid  int
	done chan struct{}
	err  error // SCHED_IDLE refused (it then waits at the normal policy)
}

func startIdle() (*idleThread, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("eventfd", err)
	}
	t := &idleThread{efd: efd, done: make(chan struct{})}
	started := make(chan struct{})
	// Ends locked: the thread is discarded with the goroutine, not
	// returned to the pool at SCHED_IDLE.
	lockedOffMain(func() {
		defer close(t.done)
		t.tid = unix.Gettid()
		attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}
		t.err = unix.SchedSetAttr(0, &attr, 0)
		close(started)
		// The kernel's sigset_t: 64 signals. (x/sys's Ppoll passes a
		// sigsetsize of 0, which the kernel refuses with a mask.)
		all := ^uint64(0)
		fd := unix.PollFd{Fd: int32(efd), Events: unix.POLLIN}
		for {
			_, _, e := unix.Syscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fd)), 1, 0,
				uintptr(unsafe.Pointer(&all)), unsafe.Sizeof(all), 0)
			if e != unix.EINTR {
				return
			}
		}
	})
	<-started
	return t, nil
}

func (t *idleThread) close() {
	// At the normal policy first: woken, it runs Go code to end, and at
	// SCHED_IDLE on a busy host that could take long, holding a P.
	normal := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}
	_ = unix.SchedSetAttr(t.tid, &normal, 0)
	one := [8]byte{1}
	_, _ = unix.Write(t.efd, one[:])
	<-t.done
	unix.Close(t.efd)
}

// IdleErr is why the IdleLast thread is not at SCHED_IDLE (nil: it is, or
// there is none).
func (h *Holder) IdleErr() error {
	if h.idle == nil {
		return nil
	}
	return h.idle.err
}

// Private reports whether the held sockets are in a file table of the
// holder's thread alone (closed first on a kill), and if not, why.
func (h *Holder) Private() (bool, error) { return h.private, h.notOwn }

// Tid is the holder's thread.
func (h *Holder) Tid() int { return h.tid }

// RealtimeErr is why SCHED_FIFO was refused to the holder's thread (nil: granted, or
// not asked for).
func (h *Holder) RealtimeErr() error { return h.rtErr }

// lockedOffMain runs fn on a new goroutine locked to a thread that is not
// the process's main thread (whose table /proc/PID/fd shows, and which the
// runtime never ends), and ends it locked: the thread ends with it.
func lockedOffMain(fn func()) {
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// Keep this thread busy so that the next goroutine locks
			// another, then give it back unchanged.
			ok := make(chan struct{})
			lockedOffMain(func() {
				close(ok)
				fn()
			})
			<-ok
			runtime.UnlockOSThread()
			return
		}
		fn()
	}()
}

// startHolder starts the holder's thread: it unshares its table (own),
// closes the copies it must not keep, and holds.
func (h *Holder) startHolder(end, prio int, own bool, started chan struct{}) {
	lockedOffMain(func() {
		if own {
			var unshared bool
			h.private, unshared, h.notOwn = ownTable(end)
			if unshared && !h.private {
				// A table of its own that could not be cleared: this
				// thread ends with the copies, and another holds in
				// the shared table.
				h.startHolder(end, prio, false, started)
				return
			}
		}
		h.tid = unix.Gettid()
		if prio > 0 {
			attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: uint32(min(prio+1, 99)),
				Flags: unix.SCHED_FLAG_RESET_ON_FORK}
			if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
				h.rtErr = fmt.Errorf("SCHED_FIFO %d on the connection holder's thread %d: %w", prio+1, h.tid, err)
			}
		}
		close(started)
		hold(end)
		close(h.heldDone)
	})
}

// ownTable unshares the calling thread's file table and closes in it every
// copy but keep, the standard three and the anonymous inodes (the package
// comment says why). private: done. unshared without private: the copies
// could not be listed, and none was closed; the thread must end, and take
// them with it.
func ownTable(keep int) (private, unshared bool, err error) {
	const dir = "/proc/thread-self/fd"
	if _, err := os.Stat(dir); err != nil {
		return false, false, fmt.Errorf("cannot list a thread's descriptors: %w", err)
	}
	if err := unix.Unshare(unix.CLONE_FILES); err != nil {
		return false, false, os.NewSyscallError("unshare(CLONE_FILES)", err)
	}
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, true, fmt.Errorf("listing the holder's descriptors: %w", err)
	}
	var names []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.ReadDirent(dfd, buf)
		if err != nil {
			unix.Close(dfd)
			return false, true, fmt.Errorf("listing the holder's descriptors: %w", err)
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	unix.Close(dfd)
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd <= 2 || fd == keep || fd == dfd {
			continue
		}
		link, err := os.Readlink(dir + "/" + name)
		if err == nil && strings.HasPrefix(link, "anon_inode:") {
			continue
		}
		unix.Close(fd)
	}
	return true, true, nil
}

// held is one held connection.
type held struct {
	id uint64
	fd int
}

// hold is the holder's loop: commands on end, reads on the held sockets,
// until the other end of the socketpair is shut (Close). Raw system calls
// on its own descriptors only (the package comment says why).
func hold(end int) {
	var conns []held
	pfds := make([]unix.PollFd, 1, 16)
	var msg [msgSize]byte
	oob := make([]byte, unix.CmsgSpace(4*4))
	var rd [64]byte
	emit := func(id uint64, k Kind, b byte, errno syscall.Errno) {
		putMsg(&msg, evMsg, byte(k), id)
		msg[2] = b
		e := uint32(errno)
		msg[4], msg[5], msg[6], msg[7] = byte(e), byte(e>>8), byte(e>>16), byte(e>>24)
		// A connection's last event waits for room (there are at most as
		// many as connections); its data does not: a peer that floods
		// must not block the holder while the events' thread is blocked
		// in a command to it. What does not fit is dropped (Event says).
		flags := unix.MSG_NOSIGNAL
		if k == Data {
			flags |= unix.MSG_DONTWAIT
		}
		for {
			err := unix.Sendto(end, msg[:], flags, nil)
			if err != unix.EINTR {
				return // EPIPE: the events' thread is gone (Close)
			}
		}
	}
	remove := func(i int) {
		unix.Close(conns[i].fd)
		conns = append(conns[:i], conns[i+1:]...)
	}
	find := func(id uint64) int {
		for i := range conns {
			if conns[i].id == id {
				return i
			}
		}
		return -1
	}
	defer func() {
		for _, c := range conns {
			unix.Close(c.fd)
		}
		unix.Close(end)
	}()
	for {
		pfds = pfds[:1+len(conns)]
		pfds[0] = unix.PollFd{Fd: int32(end), Events: unix.POLLIN}
		for i, c := range conns {
			pfds[1+i] = unix.PollFd{Fd: int32(c.fd), Events: unix.POLLIN}
		}
		if _, err := unix.Ppoll(pfds, nil, nil); err != nil {
			if err == unix.EINTR {
				continue
			}
			return // EFAULT, EINVAL, ENOMEM: nothing to hold with
		}
		// The sockets first: their events were seen before the commands
		// read below change the list.
		ended := 0
		for i := range conns {
			if pfds[1+i].Revents == 0 {
				continue
			}
			j := i - ended
			c := conns[j]
			for {
				n, err := unix.Read(c.fd, rd[:])
				if n > 0 {
					for _, b := range rd[:n] {
						emit(c.id, Data, b, 0)
					}
					continue
				}
				switch {
				case err == unix.EINTR:
					continue
				case err == unix.EAGAIN:
				case err == nil || err == unix.ECONNRESET:
					emit(c.id, PeerEnded, 0, 0)
					remove(j)
					ended++
				default:
					errno, _ := err.(syscall.Errno)
					emit(c.id, Failed, 0, errno)
					remove(j)
					ended++
				}
				break
			}
		}
		if pfds[0].Revents == 0 {
			continue
		}
		for {
			n, oobn, _, _, err := unix.Recvmsg(end, msg[:], oob, unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
			if err == unix.EINTR {
				continue
			}
			if err == unix.EAGAIN {
				break
			}
			if err != nil || n == 0 {
				return // shut by Close (or broken): close everything, end
			}
			fd := oneFD(oob[:oobn])
			if n != msgSize {
				if fd >= 0 {
					unix.Close(fd)
				}
				continue
			}
			id := msgID(msg[:])
			switch msg[0] {
			case opHold:
				if fd >= 0 {
					conns = append(conns, held{id: id, fd: fd})
				}
			case opSend, opDrop:
				if i := find(id); i >= 0 {
					if msg[0] == opSend {
						// Non-blocking, into an empty send buffer in
						// practice: one byte.
						b := [1]byte{msg[1]}
						_ = unix.Sendto(conns[i].fd, b[:], unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT, nil)
					}
					remove(i)
					emit(id, Closed, 0, 0)
				}
			}
		}
	}
}

// oneFD is the descriptor a message's control data carries (-1: none);
// any more than one are closed (Hold sends one).
func oneFD(oob []byte) int {
	fd := -1
	cms, _ := unix.ParseSocketControlMessage(oob)
	for _, cm := range cms {
		fds, _ := unix.ParseUnixRights(&cm)
		for _, f := range fds {
			if fd < 0 {
				fd = f
			} else {
				unix.Close(f)
			}
		}
	}
	return fd
}

// readEvents runs the events' thread: locked, at SCHED_FIFO when asked and
// permitted (transport.Boost, which puts the thread back as it was at the
// end), in a blocking read of the shared end, until Close shuts it.
func (h *Holder) readEvents(opts Options, started chan struct{}) {
	defer close(h.eventDone)
	var b transport.Boost
	b.Enter(opts.Priority)
	defer b.Exit()
	close(started)
	var msg [msgSize]byte
	for {
		n, err := unix.Read(h.ctl, msg[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return // shut by Close
		}
		if n != msgSize || msg[0] != evMsg {
			continue
		}
		ev := Event{ID: msgID(msg[:]), Kind: Kind(msg[1]), Byte: msg[2],
			Errno: syscall.Errno(uint32(msg[4]) | uint32(msg[5])<<8 | uint32(msg[6])<<16 | uint32(msg[7])<<24)}
		opts.Events(ev)
	}
}

// Hold hands c over to the holder under id (unique among those held) and
// closes the caller's copy: from now on c's socket is the holder's, and its
// events are reported under id. On an error c is left to the caller, open
// (who may still say goodbye on it).
func (h *Holder) Hold(id uint64, c interface {
	syscall.Conn
	Close() error
}) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("connhold: %w", err)
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return ErrClosed
	}
	var msg [msgSize]byte
	putMsg(&msg, opHold, 0, id)
	var serr error
	if err := raw.Control(func(fd uintptr) {
		for {
			serr = unix.Sendmsg(h.ctl, msg[:], unix.UnixRights(int(fd)), nil, unix.MSG_NOSIGNAL)
			if serr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return fmt.Errorf("connhold: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("connhold: handing the socket over: %w", os.NewSyscallError("sendmsg", serr))
	}
	// In flight, the socket is the message's: this copy must go, or a
	// kill would close it last again.
	return c.Close()
}

// Send has the holder write b to connection id, then close it (an event
// Closed follows, unless it ended first).
func (h *Holder) Send(id uint64, b byte) { h.command(opSend, b, id) }

// Drop has the holder close connection id (an event Closed follows, unless
// it ended first).
func (h *Holder) Drop(id uint64) { h.command(opDrop, 0, id) }

func (h *Holder) command(op, arg byte, id uint64) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return
	}
	var msg [msgSize]byte
	putMsg(&msg, op, arg, id)
	for {
		if err := unix.Sendto(h.ctl, msg[:], unix.MSG_NOSIGNAL, nil); err != unix.EINTR {
			return
		}
	}
}

// Close ends both threads: the holder carries out the commands already
// given, then closes every connection it still holds, without a byte and
// without an event. It waits for both threads; it must not be called from
// Events.
func (h *Holder) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	// Shut, not closed: a close would wake neither the holder's poll nor
	// the events' thread's read.
	_ = unix.Shutdown(h.ctl, unix.SHUT_RDWR)
	h.mu.Unlock()
	<-h.heldDone
	<-h.eventDone
	unix.Close(h.ctl)
	if h.idle != nil {
		h.idle.close()
	}
}

// Package procwatch reports the exit of processes, by pidfd (Linux 5.3+).
//
// The agent uses it for process entities: when a client registers an entity
// tied to its process, the agent watches the client's PID and marks the
// entity down when the Exit arrives, whether the process exited, was killed
// (kill -9 included) or crashed.
//
// # Design
//
// Watch opens a pidfd for the process with pidfd_open(2). A pidfd refers to
// one process, not to a PID number, so a PID reused after the watch started
// cannot fool it; it becomes readable when the process exits (as soon as it
// is a zombie, before anyone reaps it). All pidfds are registered with one
// epoll instance, waited on by a single goroutine: one OS thread blocked in
// epoll_wait serves any number of processes, where a goroutine per pidfd
// blocked in poll(2) would pin one OS thread per watched process (poll is a
// blocking system call that Go's runtime does not multiplex). An eventfd in
// the same epoll set wakes the goroutine for Close.
//
// Exits are queued without bound and delivered in order on the Events
// channel by a second goroutine, so a slow consumer never makes the epoll
// goroutine drop or delay noticing an exit.
//
// The PID must be the one the process has in the watcher's PID namespace
// (SO_PEERCRED gives exactly that). Between the moment a PID is learned and
// Watch, the process may exit and the PID be reused; that window is the
// caller's (it is tiny for a PID read from a connected socket).
package procwatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// Exit reports that the process PID, watched under Key, has exited.
type Exit struct {
	PID int32
	Key uint64
}

// ErrClosed is returned by Watch after Close.
var ErrClosed = errors.New("procwatch: watcher closed")

// Watcher watches processes for exit. Its methods are safe for concurrent use.
type Watcher struct {
	epfd   int
	wakefd int // eventfd: wakes the epoll goroutine for Close
	events chan Exit

	mu      sync.Mutex
	closed  bool
	serial  uint64            // last watch serial handed out
	byKey   map[uint64]*watch // key -> the watch of its process
	byPID   map[int32]*watch  // pid -> watch: one pidfd per process, shared by its keys
	bySer   map[uint64]*watch // serial -> watch (epoll data)
	queue   []Exit            // exits not yet delivered
	pending chan struct{}     // signalled when queue grows

	// MaxProcs and MaxKeys bound the processes watched (one pidfd each)
	// and the keys; Watch beyond them fails with ErrLimit. Zero: no bound.
	// Set before the first Watch.
	MaxProcs, MaxKeys int

	quit chan struct{} // closed by Close
	wg   sync.WaitGroup
}

type watch struct {
	pid    int32
	keys   map[uint64]struct{}
	serial uint64
	fd     int
}

// ErrLimit is returned by Watch when MaxProcs or MaxKeys is reached.
var ErrLimit = errors.New("procwatch: limit reached")

// New starts a Watcher.
func New() (*Watcher, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("procwatch: epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("procwatch: eventfd: %w", err)
	}
	// Serial 0 is the wake eventfd.
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(wakefd)
		unix.Close(epfd)
		return nil, fmt.Errorf("procwatch: epoll_ctl: %w", err)
	}
	w := &Watcher{
		epfd:    epfd,
		wakefd:  wakefd,
		events:  make(chan Exit),
		byKey:   make(map[uint64]*watch),
		byPID:   make(map[int32]*watch),
		bySer:   make(map[uint64]*watch),
		pending: make(chan struct{}, 1),
		quit:    make(chan struct{}),
	}
	w.wg.Add(2)
	go w.poll()
	go w.deliver()
	return w, nil
}

// Events returns the channel on which exits are delivered, once each, in
// the order they were noticed. It is closed by Close.
func (w *Watcher) Events() <-chan Exit { return w.events }

// Watch starts watching process pid under key. If the process has already
// exited, its Exit is delivered at once. Watching under a key already in use
// replaces the previous watch of that key (which then produces no Exit).
// The same pid may be watched under several keys: they share one pidfd, and
// each gets its Exit. Beyond MaxProcs processes or MaxKeys keys Watch fails
// with ErrLimit and watches nothing new.
func (w *Watcher) Watch(pid int32, key uint64) error {
	if pid <= 0 {
		return fmt.Errorf("procwatch: invalid pid %d", pid)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if old, ok := w.byPID[pid]; ok && !exited(old.fd) {
		if cur := w.byKey[key]; cur == old {
			return nil
		}
		if w.MaxKeys > 0 && len(w.byKey) >= w.MaxKeys && w.byKey[key] == nil {
			return fmt.Errorf("%w: %d registrations watched", ErrLimit, len(w.byKey))
		}
		w.removeLocked(key)
		old.keys[key] = struct{}{}
		w.byKey[key] = old
		return nil
	}
	// A watch of this pid whose process has exited (its exit not handled
	// yet; the pid may be a new process now) is finished first.
	if old, ok := w.byPID[pid]; ok {
		w.exitLocked(old)
	}
	if w.byKey[key] == nil {
		if w.MaxKeys > 0 && len(w.byKey) >= w.MaxKeys {
			return fmt.Errorf("%w: %d registrations watched", ErrLimit, len(w.byKey))
		}
	}
	if w.MaxProcs > 0 && len(w.byPID) >= w.MaxProcs {
		return fmt.Errorf("%w: %d processes watched", ErrLimit, len(w.byPID))
	}
	fd, err := unix.PidfdOpen(int(pid), 0)
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("procwatch: pidfd_open(%d): %w", pid, err)
	}
	w.removeLocked(key)
	if err != nil { // ESRCH: no such process, it has exited already
		w.pushLocked(Exit{PID: pid, Key: key})
		return nil
	}
	unix.CloseOnExec(fd) // pidfd_open sets it already; be explicit
	w.serial++
	wt := &watch{pid: pid, keys: map[uint64]struct{}{key: {}}, serial: w.serial, fd: fd}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	putSerial(&ev, wt.serial)
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		return fmt.Errorf("procwatch: epoll_ctl: %w", err)
	}
	w.byKey[key] = wt
	w.byPID[pid] = wt
	w.bySer[wt.serial] = wt
	return nil
}

// exited reports whether the pidfd's process has exited (it is readable).
func exited(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}

// exitLocked ends wt: every key gets its Exit.
func (w *Watcher) exitLocked(wt *watch) {
	for key := range wt.keys {
		w.pushLocked(Exit{PID: wt.pid, Key: key})
	}
	for key := range wt.keys {
		w.removeLocked(key)
	}
}

// Procs returns the number of processes (pidfds) being watched.
func (w *Watcher) Procs() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.byPID)
}

// Unwatch stops watching key; it is not an error if key is not watched.
// After Unwatch returns, no Exit for that watch is delivered unless it was
// already queued.
func (w *Watcher) Unwatch(key uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.removeLocked(key)
}

// Len returns the number of keys being watched.
func (w *Watcher) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.byKey)
}

// removeLocked drops the watch of key, if any, and closes its process's
// pidfd when no key is left on it.
func (w *Watcher) removeLocked(key uint64) {
	wt, ok := w.byKey[key]
	if !ok {
		return
	}
	delete(w.byKey, key)
	delete(wt.keys, key)
	if len(wt.keys) > 0 {
		return
	}
	delete(w.bySer, wt.serial)
	if w.byPID[wt.pid] == wt {
		delete(w.byPID, wt.pid)
	}
	unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, wt.fd, nil)
	unix.Close(wt.fd)
}

func (w *Watcher) pushLocked(e Exit) {
	w.queue = append(w.queue, e)
	select {
	case w.pending <- struct{}{}:
	default:
	}
}

// Close stops the watcher, closes every pidfd and closes Events. Exits not
// yet received are dropped.
func (w *Watcher) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	close(w.quit)
	w.mu.Unlock()
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1) // eventfd takes a host-endian uint64
	unix.Write(w.wakefd, one[:])
	w.wg.Wait()
	w.mu.Lock()
	for key := range w.byKey {
		w.removeLocked(key)
	}
	w.queue = nil
	w.mu.Unlock()
	unix.Close(w.wakefd)
	unix.Close(w.epfd)
	return nil
}

// poll is the epoll goroutine.
func (w *Watcher) poll() {
	defer w.wg.Done()
	evs := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(w.epfd, evs, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			// Cannot happen with a valid epfd; do not spin.
			panic(fmt.Sprintf("procwatch: epoll_wait: %v", err))
		}
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return
		}
		for i := range evs[:n] {
			s := getSerial(&evs[i])
			if s == 0 {
				continue // the wake eventfd; closed is checked above
			}
			wt, ok := w.bySer[s]
			if !ok {
				continue // unwatched after epoll_wait returned
			}
			w.exitLocked(wt)
		}
		w.mu.Unlock()
	}
}

// deliver sends queued exits on the Events channel.
func (w *Watcher) deliver() {
	defer w.wg.Done()
	defer close(w.events)
	for {
		w.mu.Lock()
		var e Exit
		have := len(w.queue) > 0
		if have {
			e = w.queue[0]
			w.queue[0] = Exit{}
			w.queue = w.queue[1:]
			if len(w.queue) == 0 {
				w.queue = nil // let a grown backing array go
			}
		}
		w.mu.Unlock()
		if !have {
			select {
			case <-w.pending:
				continue
			case <-w.quit:
				return
			}
		}
		select {
		case w.events <- e:
		case <-w.quit:
			return
		}
	}
}

// The 64-bit epoll data carries the watch serial (x/sys/unix splits it into
// Fd and Pad).
func putSerial(ev *unix.EpollEvent, s uint64) {
	ev.Fd = int32(uint32(s))
	ev.Pad = int32(uint32(s >> 32))
}

func getSerial(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/api"
)

// The four fault writes (Report, Raise, Clear, SetState) go first to the
// agent's datagram socket (api.DatagramPath), which the agent's real-time
// loop reads itself: one datagram there, one back. The stream connection
// takes the write instead when there is no datagram socket (an agent that
// does not open one, or not yet), when the socket's queue is full, and when
// the agent answers use_stream (a caller it may only admit on its
// supplementary groups, or too many writes in flight); in each case nothing
// was written. Once a write is sent on the datagram socket it is never sent
// again: its outcome is the agent's reply, or unknown.
//
// A datagram socket has no end of connection to tell that the agent died
// with the write in hand. While it waits, the client sends an empty
// datagram every dgramProbeEvery (which the agent ignores): once the
// agent's socket is gone the kernel refuses it, and the write fails at once
// with api.ErrUnavailable, its outcome unknown. It waits at most
// dgramMaxWait in all (the agent answers every write within its own
// timeout, 5 s).

// At its first write, a client pings the datagram socket (api.AppendPing)
// and waits up to dgramPingWait for the answer: a client in another network
// namespace than its agent's (a container given the agent's socket by a
// bind mount) never gets one, as the agent's answers go to an address the
// kernel resolves in the agent's namespace; such a client keeps to the
// stream for its life. The first write pays for the ping (one round trip
// to the agent's real-time loop, or dgramPingWait in that case), not Dial:
// most clients never write (fmctl status, a watcher, the agent's own API
// probe every second), and a ping wakes the agent's real-time loop.

const (
	dgramPingWait   = 250 * time.Millisecond
	dgramProbeEvery = 250 * time.Millisecond
	dgramMaxWait    = 10 * time.Second
	// dgramRetry: after the agent's datagram socket was found missing, the
	// writes keep to the stream for this long before looking again.
	dgramRetry = time.Second
)

// dgramWriter sends the fault writes of one Client on the datagram socket.
type dgramWriter struct {
	path   string
	off    atomic.Bool  // UseDatagram(false)
	absent atomic.Int64 // unix ns until which the socket is taken as missing
	// pinged: 0 not yet; 1 answered; 2 not answered (the stream for good).
	pinged atomic.Int32
	id     atomic.Uint32

	mu     sync.Mutex
	free   []int // connected sockets not in use
	closed bool
}

// UseDatagram turns the datagram socket on (the default) or off for c's
// fault writes; off, they all go on the stream connection. For comparison
// (bench/cmd/e2e measures both in one run) and for a client that must not
// wait on a datagram reply.
func (c *Client) UseDatagram(on bool) { c.dg.off.Store(!on) }

// write sends the write op (req) on the datagram socket and waits for its
// reply. sent false: nothing was written, send it on the stream.
func (d *dgramWriter) write(ctx context.Context, op api.Op, req any) (res *api.ReportResult, sent bool, err error) {
	if d.off.Load() || d.pinged.Load() == 2 || time.Now().UnixNano() < d.absent.Load() {
		return nil, false, nil
	}
	body, ok := api.AppendRequestJSON(make([]byte, 0, 256), req)
	if !ok || api.HeaderSize+len(body) > api.MaxDatagram {
		return nil, false, nil // the stream says what is wrong with it
	}
	id := d.id.Add(1)
	frame := api.AppendFrame(make([]byte, 0, api.HeaderSize+len(body)), api.Header{Version: api.Version, Op: op, ID: id}, body)
	fd, err := d.get()
	if err != nil {
		d.absent.Store(time.Now().Add(dgramRetry).UnixNano())
		return nil, false, nil
	}
	if d.pinged.Load() == 0 && !d.ping(fd) {
		return nil, false, nil
	}
	for attempt := 0; ; attempt++ {
		err = unix.Send(fd, frame, unix.MSG_DONTWAIT)
		if err == nil {
			break
		}
		unix.Close(fd)
		if !errors.Is(err, unix.ECONNREFUSED) || attempt > 0 {
			// EAGAIN: the agent's queue is full; anything else: no
			// datagram socket to speak of. Not sent.
			if !errors.Is(err, unix.EAGAIN) {
				d.absent.Store(time.Now().Add(dgramRetry).UnixNano())
			}
			return nil, false, nil
		}
		// The agent restarted since this socket was connected: a fresh one.
		if fd, err = d.dial(); err != nil {
			d.absent.Store(time.Now().Add(dgramRetry).UnixNano())
			return nil, false, nil
		}
	}
	h, rbody, err := d.await(ctx, fd, op, id)
	if err != nil {
		unix.Close(fd) // a late reply must not reach the next write
		return nil, true, fmt.Errorf("fmagent %s: %w", op, err)
	}
	d.put(fd)
	if h.Flags&api.FlagError != 0 {
		err := decodeError(rbody)
		if errors.Is(err, api.ErrUseStream) {
			return nil, false, nil
		}
		return nil, true, fmt.Errorf("fmagent %s: %w", op, err)
	}
	var r api.ReportResult
	if err := json.Unmarshal(rbody, &r); err != nil {
		return nil, true, fmt.Errorf("fmagent %s: decoding the reply: %w", op, err)
	}
	return &r, true, nil
}

// ping sends a ping on fd and says whether its answer came within
// dgramPingWait; if not, fd is closed and the datagram socket is not used
// again (pinged 2). A socket the agent no longer has (ECONNREFUSED) or
// whose queue is full says nothing about the answers: fd is closed, and
// the next write pings again.
func (d *dgramWriter) ping(fd int) bool {
	id := d.id.Add(1)
	if err := unix.Send(fd, api.AppendPing(nil, id), unix.MSG_DONTWAIT); err != nil {
		unix.Close(fd)
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), dgramPingWait)
	defer cancel()
	if _, _, err := d.await(ctx, fd, api.OpStatus, id); err != nil {
		unix.Close(fd)
		if errors.Is(err, context.DeadlineExceeded) {
			d.pinged.Store(2)
		}
		return false
	}
	d.pinged.Store(1)
	return true
}

// await reads the reply to request id from fd.
func (d *dgramWriter) await(ctx context.Context, fd int, op api.Op, id uint32) (api.Header, []byte, error) {
	// A reply is a ReportResult or an error (its message at most 1 KiB):
	// a few hundred bytes. A longer datagram would be cut, fail the length
	// check and be waited past, so the buffer is generous all the same.
	buf := make([]byte, api.HeaderSize+api.MaxDatagram)
	start := time.Now()
	for {
		wait := dgramProbeEvery
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			wait = max(time.Until(dl), 0)
		}
		fds := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds[:], int(wait.Milliseconds())+1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return api.Header{}, nil, fmt.Errorf("waiting for the agent's reply: %w; the outcome is unknown: %w", err, api.ErrUnavailable)
		}
		if n > 0 {
			m, err := unix.Read(fd, buf)
			if err != nil && !errors.Is(err, unix.EAGAIN) {
				return api.Header{}, nil, fmt.Errorf("reading the agent's reply: %w; the outcome is unknown: %w", err, api.ErrUnavailable)
			}
			if m >= api.HeaderSize {
				h, herr := api.ParseHeader(buf[:m])
				if herr == nil && h.ID == id && h.Op == op|api.OpReply && int(h.Length) == m-api.HeaderSize {
					return h, buf[api.HeaderSize:m], nil
				}
			}
			continue // not this write's reply (none other is sent to this socket)
		}
		if err := ctx.Err(); err != nil {
			return api.Header{}, nil, err
		}
		if time.Since(start) >= dgramMaxWait {
			return api.Header{}, nil, fmt.Errorf("no reply from the agent in %v: %w; the outcome is unknown", dgramMaxWait, api.ErrTimeout)
		}
		if err := unix.Send(fd, nil, unix.MSG_DONTWAIT); errors.Is(err, unix.ECONNREFUSED) {
			return api.Header{}, nil, fmt.Errorf("the agent's datagram socket closed before it answered (the agent stopped); the outcome is unknown: %w", api.ErrUnavailable)
		}
	}
}

// get returns a connected socket: an idle one, or a new one.
func (d *dgramWriter) get() (int, error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return -1, ErrClosed
	}
	if n := len(d.free); n > 0 {
		fd := d.free[n-1]
		d.free = d.free[:n-1]
		d.mu.Unlock()
		return fd, nil
	}
	d.mu.Unlock()
	return d.dial()
}

// put keeps fd for the next write (a few at most).
func (d *dgramWriter) put(fd int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || len(d.free) >= 8 {
		unix.Close(fd)
		return
	}
	d.free = append(d.free, fd)
}

// dial makes a socket bound to an address of the kernel's choosing (so that
// the agent can answer) and connected to the agent's datagram socket: the
// kernel then takes datagrams from nobody else on it.
func (d *dgramWriter) dial() (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{}); err != nil { // autobind
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: d.path}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// close closes the idle sockets; a write in flight closes its own.
func (d *dgramWriter) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	for _, fd := range d.free {
		unix.Close(fd)
	}
	d.free = nil
}

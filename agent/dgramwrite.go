package agent

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/transport"
)

// The datagram socket (api/datagram.go): the four fault writes, one frame
// per datagram, read by the real-time loop itself. A write on the stream
// socket waits first for one of Go's normal threads to be woken by the
// netpoller and read the connection, then takes the loop's lock at the
// loop's priority (submitOffLoop); here the kernel wakes the loop's thread,
// at SCHED_FIFO, and the write is checked, submitted and sent to the master
// in that wake-up. Measured on five agents in the same runs as the stream
// (bench/cmd/e2e's report_stream), a report is written in every node's
// table 114–144 µs sooner at the median and 158–561 µs at p99 (bench.md,
// 4–5 December 2026).
//
// Only the part of a write that never waits runs on the loop: reading the
// datagram, the Authorizer on the kernel's credentials, the write rate
// (without waiting for its lock), the write's own check against this
// node's table, and core.Submit. Whatever would wait — no master yet, the
// result, this node's table and disk catching up, the audit log, the reply
// — is a goroutine's, as on the stream.
//
// The loop allocates here (the decoded request, the write's closures, its
// goroutine), a few hundred bytes a write, which a heartbeat's path never
// does; at GOGC 400 a collection is rare and its assist for so little is
// short. The goroutine starts on the loop's P once the wake-up's Ready is
// sent (startDgrams), and the loop's next yield may run it (until it
// blocks on its result, microseconds) unless an idle P's thread takes it
// first.

// dgramBatch bounds the datagrams one wake-up of the loop reads: a flood of
// writes waits in the socket's queue (whose limit, net.unix.max_dgram_qlen,
// then makes the clients' sends fail, and the client library turns to the
// stream) rather than hold a tick.
const dgramBatch = 16

// maxDgramInFlight bounds the datagram writes waiting for their answer;
// past it a write is answered ErrUseStream, and the stream's own limits
// (per connection, per uid) take it.
const maxDgramInFlight = 1024

// maxSunPath is the size of sockaddr_un.sun_path on Linux, NUL included.
const maxSunPath = 108

// dgramSock is the agent's datagram socket and what its reader keeps.
type dgramSock struct {
	fd   int // valid while cancel is not nil
	path string
	fi   os.FileInfo // the socket file this agent made (removed at stop if still it)

	buf [api.MaxDatagram + 1]byte // +1: a longer datagram is seen as such
	oob [64]byte

	ctx      context.Context // the writes' (cancelled at shutdown)
	cancel   context.CancelFunc
	wg       sync.WaitGroup // the writes' goroutines
	inFlight atomic.Int64
	// starts: the goroutines of the writes read in this wake-up, started
	// once their Ready is sent (startDgrams).
	starts []dgramStart

	// Counters (metrics.go): requests read, by how they ended on the loop.
	submitted, answered, toStream, malformed, repliesLost atomic.Uint64
}

// openDgram opens the datagram socket next to the API's stream socket,
// with its mode and owner, and gives it to the real-time loop's waiter. Not
// when the loop does not wait on the real transport (this package's tests
// on a fake network): nothing would read it, and a client finds no socket
// and keeps to the stream.
func (a *agent) openDgram() error {
	w, ok := a.waiter.(*transport.Waiter)
	if !ok {
		return nil
	}
	path := api.DatagramPath(a.cfg.Paths.Socket)
	if len(path) >= maxSunPath {
		a.log.Warn("API datagram socket not opened: its path is too long for a socket address; clients write on the stream socket only", "path", path)
		return nil
	}
	fi, err := os.Stat(a.cfg.Paths.Socket)
	if err != nil {
		return err
	}
	uid, gid := -1, -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		uid, gid = int(st.Uid), int(st.Gid)
	}
	fd, err := api.ListenDatagram(path, fi.Mode().Perm(), uid, gid)
	if err != nil {
		return err
	}
	if a.dgram.fi, err = os.Lstat(path); err != nil {
		unix.Close(fd)
		return err
	}
	a.dgram.fd, a.dgram.path = fd, path
	a.dgram.starts = make([]dgramStart, 0, dgramBatch)
	a.dgram.ctx, a.dgram.cancel = context.WithCancel(context.Background())
	w.SetExtra(fd)
	a.log.Info("API datagram socket (fault writes read by the real-time loop)", "path", path)
	return nil
}

// closeDgram answers the datagram writes still waiting (unavailable: the
// agent is shutting down), then closes the socket and removes its file.
// After the real-time loop has returned.
func (a *agent) closeDgram() {
	d := &a.dgram
	if d.cancel == nil {
		return // never opened, or closed
	}
	d.cancel()
	d.cancel = nil
	d.wg.Wait()
	unix.Close(d.fd)
	d.fd = -1
	if fi, err := os.Lstat(d.path); err == nil && os.SameFile(fi, d.fi) {
		os.Remove(d.path)
	}
}

// readDgrams reads and submits the writes waiting on the datagram socket,
// at most dgramBatch of them. The real-time loop's, mu held; the caller
// carries out the Ready afterwards, then calls startDgrams.
func (a *agent) readDgrams(now time.Time) {
	d := &a.dgram
	for i := range dgramBatch {
		if i == 1 {
			// The first write's request leaves for the master now, not
			// after the read that finds the socket empty (a system call
			// more on a report's path); any more writes of this wake-up
			// go in the caller's Ready, in one send a network.
			a.handleReady()
		}
		n, oobn, _, from, err := unix.Recvmsg(d.fd, d.buf[:], d.oob[:], unix.MSG_DONTWAIT)
		if err != nil {
			return // EAGAIN: read them all
		}
		if n == 0 {
			continue // a client's probe that this agent still has the socket
		}
		cred, ok := api.ReadCred(d.oob[:oobn])
		if !ok || n > api.MaxDatagram {
			d.malformed.Add(1)
			continue
		}
		h, req, ok, err := api.ParseDatagram(d.buf[:n])
		if !ok {
			d.malformed.Add(1) // no header to answer
			continue
		}
		if err == nil && req == nil { // a ping (api.ParseDatagram)
			var b [api.HeaderSize]byte
			a.dgramSend(from, api.AppendFrame(b[:0], api.Header{Version: api.Version, Op: h.Op | api.OpReply, ID: h.ID}, nil))
			continue
		}
		if err == nil {
			err = a.srv.AdmitDatagram(cred, h.Op, now)
		}
		if err != nil {
			if errors.Is(err, api.ErrUseStream) {
				d.toStream.Add(1)
			} else {
				d.answered.Add(1)
			}
			a.dgramReply(from, h, nil, err)
			continue
		}
		a.dgramSubmit(now, from, h, cred, a.faultWriteOf(cred, req))
	}
}

// dgramSubmit checks and submits the write fw, and leaves its wait and
// reply to a goroutine. mu held.
func (a *agent) dgramSubmit(now time.Time, from unix.Sockaddr, h api.Header, cred api.Cred, fw *faultWrite) {
	d := &a.dgram
	if d.inFlight.Load() >= maxDgramInFlight {
		d.toStream.Add(1)
		a.dgramReply(from, h, nil, api.Errorf(api.ErrUseStream, "%d writes in flight on the datagram socket; send it on the stream socket", maxDgramInFlight))
		return
	}
	if a.stopping || a.core.Role().Master == 0 {
		// Waits for a master (or answers that there is none): the
		// stream's way, on a goroutine.
		a.dgramGo(func(ctx context.Context) (*api.ReportResult, error) { return a.runFault(ctx, cred, fw) }, from, h)
		return
	}
	if err := fw.check(&fw.req); err != nil {
		if errors.Is(err, api.ErrPermission) {
			// Perhaps a grant of a supplementary group, which a
			// datagram does not carry (api.ErrUseStream).
			d.toStream.Add(1)
			a.dgramReply(from, h, nil, api.Errorf(api.ErrUseStream, "%v; send it on the stream socket, where supplementary groups are known", err))
			return
		}
		d.answered.Add(1)
		a.dgramGo(func(context.Context) (*api.ReportResult, error) {
			return a.finishFault(cred, fw, core.Result{}, err)
		}, from, h)
		return
	}
	d.submitted.Add(1)
	ch := make(chan core.Result, 1)
	id := a.core.Submit(now, fw.req)
	a.waiters[id] = ch
	a.dgramGo(func(ctx context.Context) (*api.ReportResult, error) {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		res, err := a.awaitWrite(ctx, id, ch, fw.name)
		return a.finishFault(cred, fw, res, err)
	}, from, h)
}

// dgramStart is a datagram write's rest, to run on a goroutine of its own,
// and where its reply goes.
type dgramStart struct {
	rest func(context.Context) (*api.ReportResult, error)
	from unix.Sockaddr
	h    api.Header
}

// dgramGo queues a datagram write's rest for a goroutine (startDgrams) that
// sends its reply. It counts the write in flight at once (dgramSubmit's
// bound holds within a batch).
func (a *agent) dgramGo(rest func(context.Context) (*api.ReportResult, error), from unix.Sockaddr, h api.Header) {
	d := &a.dgram
	d.inFlight.Add(1)
	d.wg.Add(1)
	d.starts = append(d.starts, dgramStart{rest, from, h})
}

// startDgrams starts the goroutines dgramGo queued. The real-time loop
// calls it after readDgrams' Ready is sent: a go statement may wake another
// thread to run the goroutine (a futex system call, and on a virtual
// machine an interrupt to another vCPU), which the request to the master
// must not wait for.
func (a *agent) startDgrams() {
	d := &a.dgram
	for i := range d.starts {
		s := d.starts[i]
		d.starts[i] = dgramStart{} // the closure is the goroutine's now
		go func() {
			defer d.wg.Done()
			defer d.inFlight.Add(-1)
			out, err := s.rest(d.ctx)
			if errors.Is(err, context.Canceled) {
				err = api.Errorf(api.ErrUnavailable, "the agent is shutting down; the outcome is unknown")
			}
			a.dgramReply(s.from, s.h, out, err)
		}()
	}
	d.starts = d.starts[:0]
}

// dgramReply sends the reply to request h to its sender; one that cannot
// take it (gone, or its queue full) is counted, as the client then tells
// its caller the outcome is unknown.
func (a *agent) dgramReply(to unix.Sockaddr, h api.Header, res *api.ReportResult, err error) {
	var b [1024]byte
	a.dgramSend(to, api.AppendReply(b[:0], h, res, err))
}

// dgramSend sends the reply frame b to to, or counts it lost.
func (a *agent) dgramSend(to unix.Sockaddr, b []byte) {
	if to == nil || unix.Sendto(a.dgram.fd, b, unix.MSG_DONTWAIT, to) != nil {
		a.dgram.repliesLost.Add(1)
	}
}

package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Handler is what the agent implements to serve the API. Every request has
// been decoded and validated (see the Validate methods) before the Handler
// sees it. Write methods get the caller's credentials; the Authorizer has
// already allowed them. Errors should wrap one of the sentinels (ErrNotFound,
// ErrNoMaster, ...) to choose the code the client sees; any other error is
// sent as "internal", except context errors (timeout, unavailable).
//
// The context is canceled when the client goes away or the server shuts
// down. Methods are called concurrently, also for one connection.
type Handler interface {
	// Register creates an entity owned by this node. With req.Process the
	// entity is tied to cred.PID: the Handler should mark it down when that
	// process exits (see package procwatch).
	Register(ctx context.Context, cred Cred, req *RegisterRequest) (*Entity, error)
	Unregister(ctx context.Context, cred Cred, req *UnregisterRequest) (*ReportResult, error)
	Report(ctx context.Context, cred Cred, req *ReportRequest) (*ReportResult, error)
	Raise(ctx context.Context, cred Cred, req *RaiseRequest) (*ReportResult, error)
	Clear(ctx context.Context, cred Cred, req *ClearRequest) (*ReportResult, error)
	SetState(ctx context.Context, cred Cred, req *SetStateRequest) (*ReportResult, error)
	Get(ctx context.Context, name string) (*Entity, error)
	List(ctx context.Context, req *ListRequest) ([]Entity, error)
	// Watch subscribes to changes of entities under req.Prefix, calls
	// req.Ready once subscribed, then calls send for each change until ctx
	// is done or send fails, and returns. send must not be called after
	// Watch returns. send blocks while the client is slow to read (up to
	// the server's WriteTimeout, after which the connection is closed and
	// send fails).
	Watch(ctx context.Context, req *WatchRequest, send func(*Event) error) error
	Status(ctx context.Context) (*Status, error)
	Switchover(ctx context.Context, cred Cred) error
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("api: server closed")

// maxWatchesPerConn bounds the Watches in progress on one connection.
const maxWatchesPerConn = 16

// Default server limits.
const (
	DefaultWriteTimeout = 10 * time.Second
	DefaultMaxInFlight  = 64
)

// Server serves the API on unix socket listeners.
type Server struct {
	Handler Handler
	// Authorizer decides who may write; nil allows everyone who can open
	// the socket.
	Authorizer *Authorizer
	// Log receives connection and protocol errors; nil discards them.
	Log *slog.Logger
	// WriteTimeout bounds the write of one frame to a client; a client that
	// does not read for that long is disconnected. Zero means
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
	// MaxInFlight bounds the requests (other than Watch) being handled at
	// once on one connection; the server stops reading from a connection
	// that has this many. Zero means DefaultMaxInFlight. Watches have their
	// own limit of 16 per connection; one more gets ErrBusy.
	MaxInFlight int
	// Limits bound connections, idle and half-frame time and the write
	// rate (zero fields: DefaultLimits). Set before Serve.
	Limits Limits

	lim       limiter
	frameLog  logGate // frame timeouts and framing errors: one WARN a second
	once      sync.Once
	base      context.Context
	cancel    context.CancelFunc
	mu        sync.Mutex
	closed    bool
	listeners map[*net.UnixListener]struct{}
	conns     map[*serverConn]struct{}
	wg        sync.WaitGroup

	// peerCred reads a connection's credentials; tests replace it.
	peerCred func(*net.UnixConn) (Cred, error)
}

func (s *Server) init() {
	s.once.Do(func() {
		s.base, s.cancel = context.WithCancel(context.Background())
		s.listeners = make(map[*net.UnixListener]struct{})
		s.conns = make(map[*serverConn]struct{})
		s.lim.init(s.Limits)
		s.frameLog.period = time.Second
		if s.peerCred == nil {
			s.peerCred = PeerCred
		}
	})
}

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func (s *Server) writeTimeout() time.Duration {
	if s.WriteTimeout > 0 {
		return s.WriteTimeout
	}
	return DefaultWriteTimeout
}

func (s *Server) maxInFlight() int {
	if s.MaxInFlight > 0 {
		return s.MaxInFlight
	}
	return DefaultMaxInFlight
}

// Serve accepts connections on ln until Shutdown (then it returns
// ErrServerClosed) or a permanent accept error. It may be called for several
// listeners.
func (s *Server) Serve(ln *net.UnixListener) error {
	if s.Handler == nil {
		return errors.New("api: Server.Handler is nil")
	}
	s.init()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()

	var delay time.Duration
	for {
		nc, err := ln.AcceptUnix()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			if isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log().Warn("api: accept", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			s.mu.Lock()
			delete(s.listeners, ln)
			s.mu.Unlock()
			return err
		}
		delay = 0
		cred, err := s.peerCred(nc)
		if err != nil {
			s.log().Warn("api: reading peer credentials", "err", err)
			nc.Close()
			continue
		}
		if err := s.lim.admit(cred.UID); err != nil {
			s.refuseConn(nc, err)
			continue
		}
		s.startConn(nc, cred)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isTemporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EINTR)
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Shutdown stops the server: it closes the listeners (removing the socket
// files Listen created), cancels the context of every request in progress
// (Watches end, other requests get what their Handler makes of the
// cancellation) and waits for the connections to finish, or for ctx, after
// which it closes them by force and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
		removeSocket(ln)
		delete(s.listeners, ln)
	}
	s.mu.Unlock()
	s.cancel()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}

// refuseConn answers a connection over a limit with err (a frame with
// request ID 0) and closes it, without waiting for a slow reader.
func (s *Server) refuseConn(nc net.Conn, err error) {
	body, _ := json.Marshal(ToError(err))
	nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	nc.Write(AppendFrame(nil, Header{Version: Version, Op: replyOp(OpStatus), Flags: FlagError}, body))
	nc.Close()
}

func (s *Server) startConn(nc net.Conn, cred Cred) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.lim.release(cred.UID)
		nc.Close()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer s.lim.release(cred.UID)
		s.serveConn(nc, cred)
	}()
}

// serverConn is one client connection.
type serverConn struct {
	s        *Server
	nc       net.Conn
	cred     Cred
	canWrite bool
	log      *slog.Logger
	cancel   context.CancelFunc

	wmu    sync.Mutex
	broken bool // a write failed: the stream may be cut mid-frame
	wbuf   []byte
}

var errConnBroken = errors.New("api: connection broken")

// serveConn serves one connection until the client closes it, a framing
// error, a failed write or shutdown; then it waits for the requests in
// progress and closes nc.
func (s *Server) serveConn(nc net.Conn, cred Cred) {
	s.init()
	ctx, cancel := context.WithCancel(s.base)
	c := &serverConn{
		s:        s,
		nc:       nc,
		cred:     cred,
		canWrite: s.Authorizer.Allowed(cred) || privileged(cred),
		log:      s.log().With("pid", cred.PID, "uid", cred.UID),
		cancel:   cancel,
	}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	// Wake the reader when the connection's context ends.
	stop := context.AfterFunc(ctx, func() { nc.SetReadDeadline(time.Unix(1, 0)) })

	var inflight sync.WaitGroup
	var watches atomic.Int32
	sem := make(chan struct{}, s.maxInFlight())
	c.log.Debug("api: connection opened", "write", c.canWrite)
	br := bufio.NewReaderSize(nc, 4096)
	lim := s.lim.l
	// One goroutine at a time reads the connection's frames. The reader
	// that reads a request (other than a Watch) starts the next reader and
	// handles the request itself: the request is on its way at once, not
	// after a new goroutine is scheduled and the reader has parked (30 µs
	// at the median on five agents on loopback, 3 December 2026: a fault
	// report's way to the master). The reader that finds the connection
	// ended tears it down, once the requests in progress have finished,
	// and closes ended.
	ended := make(chan struct{})
	var readFrames func()
	readFrames = func() {
		for {
			// Idle: no request in progress and no Watch; then no byte for
			// IdleTimeout closes the connection. Once a frame begins, it must
			// end within FrameTimeout. A deadline set after the connection's
			// context ended would undo the wake-up above: check after setting.
			idle := watches.Load() == 0 && len(sem) == 0
			if idle {
				nc.SetReadDeadline(time.Now().Add(lim.IdleTimeout))
			} else {
				nc.SetReadDeadline(time.Time{})
			}
			if ctx.Err() != nil {
				break
			}
			if _, err := br.Peek(1); err != nil {
				if isTimeout(err) && ctx.Err() == nil {
					s.lim.count(func(st *LimitStats) { st.IdleClosed++ })
					c.log.Debug("api: idle connection closed", "idle", lim.IdleTimeout)
				}
				break
			}
			nc.SetReadDeadline(time.Now().Add(lim.FrameTimeout))
			if ctx.Err() != nil {
				break
			}
			h, body, err := ReadFrame(br)
			if err != nil && isTimeout(err) && ctx.Err() == nil {
				s.lim.count(func(st *LimitStats) { st.FrameTimeouts++ })
				if ok, held := s.frameLog.allow(time.Now()); ok {
					c.log.Warn("api: frame not finished in time, closing", "frame_timeout", lim.FrameTimeout, "held_back", held)
				}
				break
			}
			if err != nil {
				var e *Error
				if errors.As(err, &e) {
					// Bad magic or oversize length: the stream cannot be
					// resynchronised. Say why, then close.
					if ok, held := s.frameLog.allow(time.Now()); ok {
						c.log.Warn("api: framing error, closing", "err", err, "held_back", held)
					}
					c.writeError(h.ID, replyOp(h.Op), e)
				} else if err != io.EOF && ctx.Err() == nil {
					c.log.Debug("api: read", "err", err)
				}
				break
			}
			if h.Version != Version {
				c.writeError(h.ID, replyOp(h.Op), Errorf(ErrUnsupportedVersion,
					"protocol version %d is not supported; this server speaks version %d", h.Version, Version))
				continue
			}
			if !h.Op.IsRequest() {
				c.writeError(h.ID, replyOp(h.Op), Errorf(ErrUnknownOp, "unknown op 0x%02x", uint8(h.Op)))
				continue
			}
			if h.Op == OpWatch {
				// A Watch lasts as long as the client wants: it does not take
				// an in-flight slot (which would block the reader for good)
				// but has its own limit.
				if watches.Load() >= maxWatchesPerConn {
					c.writeError(h.ID, replyOp(h.Op), Errorf(ErrBusy,
						"too many watches on one connection (limit %d)", maxWatchesPerConn))
					continue
				}
				watches.Add(1)
				inflight.Add(1)
				go func() {
					defer func() {
						watches.Add(-1)
						inflight.Done()
					}()
					c.handle(ctx, h, body)
				}()
				continue
			}
			// Other requests are short (the Handler bounds them): the reader
			// waits for a slot, which pushes back on a client sending faster
			// than the agent answers.
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
			inflight.Add(1)
			go readFrames()
			c.handle(ctx, h, body)
			<-sem
			inflight.Done()
			return
		}
		cancel()
		inflight.Wait()
		stop()
		nc.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.log.Debug("api: connection closed")
		close(ended)
	}
	readFrames()
	<-ended
}

// replyOp is the op of a reply to a frame with op o.
func replyOp(o Op) Op { return o | OpReply }

// writeFrame writes one frame; after a failed write it fails at once and the
// connection is torn down.
func (c *serverConn) writeFrame(id uint32, op Op, flags uint16, body []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.broken {
		return errConnBroken
	}
	c.wbuf = AppendFrame(c.wbuf[:0], Header{Version: Version, Op: op, Flags: flags, ID: id}, body)
	c.nc.SetWriteDeadline(time.Now().Add(c.s.writeTimeout()))
	_, err := c.nc.Write(c.wbuf)
	if cap(c.wbuf) > 2*4096 {
		c.wbuf = nil // do not keep a large list reply's buffer
	}
	if err != nil {
		c.broken = true
		c.cancel()
		c.log.Debug("api: write", "err", err)
		return fmt.Errorf("api: write: %w", err)
	}
	return nil
}

func (c *serverConn) writeError(id uint32, op Op, err error) error {
	body, merr := json.Marshal(ToError(err))
	if merr != nil {
		body = []byte(`{"code":"internal","message":"error not encodable"}`)
	}
	return c.writeFrame(id, op, FlagError, body)
}

// writeResult writes v as the final reply, or the error.
func (c *serverConn) writeResult(h Header, v any, err error) {
	if err != nil {
		c.writeError(h.ID, replyOp(h.Op), err)
		return
	}
	body, err := json.Marshal(v)
	if err != nil {
		c.writeError(h.ID, replyOp(h.Op), Errorf(ErrInternal, "encoding the result: %v", err))
		return
	}
	if len(body) > MaxBody {
		c.writeError(h.ID, replyOp(h.Op), Errorf(ErrInternal, "result of %d bytes is over the frame limit", len(body)))
		return
	}
	c.writeFrame(h.ID, replyOp(h.Op), 0, body)
}

// decode decodes a request body strictly: one JSON object (or nothing) with
// no unknown fields and nothing after it. A flat request in plain JSON is
// decoded by decodeFlat, without encoding/json (see flatjson.go).
func decode(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if decodeFlat(body, v) {
		return nil
	}
	return decodeJSON(body, v)
}

// decodeJSON is decode by encoding/json alone.
func decodeJSON(body []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return badRequest("invalid JSON body: %v", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return badRequest("invalid JSON body: data after the request object")
	}
	return nil
}

// validator is a request with a Validate method.
type validator interface{ Validate() error }

// parse decodes and validates the body into req.
func parse(body []byte, req validator) error {
	if err := decode(body, req); err != nil {
		return err
	}
	return req.Validate()
}

// handle serves one request and writes its reply.
func (c *serverConn) handle(ctx context.Context, h Header, body []byte) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("api: handler panic", "op", h.Op, "panic", r, "stack", string(debug.Stack()))
			c.writeError(h.ID, replyOp(h.Op), Errorf(ErrInternal, "handler panic: %v", r))
		}
	}()
	if h.Op.IsWrite() && !c.canWrite && !c.s.Authorizer.MayOp(c.cred, h.Op) {
		c.writeError(h.ID, replyOp(h.Op), Errorf(ErrPermission,
			"uid %d (gid %d) may not %s: not root, not an allowed user or group", c.cred.UID, c.cred.GID, h.Op))
		return
	}
	if h.Op.IsWrite() {
		if err := c.s.lim.write(c.cred.UID, time.Now()); err != nil {
			c.writeError(h.ID, replyOp(h.Op), err)
			return
		}
	}
	serve, ok := operations[h.Op]
	if !ok {
		c.writeError(h.ID, replyOp(h.Op), Errorf(ErrUnknownOp, "unknown op 0x%02x", uint8(h.Op)))
		return
	}
	serve(ctx, c, h, body)
}

// serveFunc serves one decoded frame of one op and writes its reply.
type serveFunc func(ctx context.Context, c *serverConn, h Header, body []byte)

// operations is the API: what each op decodes, which Handler method it
// calls and how the result is answered. Every op but Watch and List answers
// with one JSON value (see unary).
var operations = map[Op]serveFunc{
	OpRegister: unary(func(hd Handler, ctx context.Context, cred Cred, req *RegisterRequest) (*Entity, error) {
		e, err := hd.Register(ctx, cred, req)
		if err == nil && e == nil {
			err = Errorf(ErrInternal, "handler returned no entity")
		}
		return e, err
	}),
	OpUnregister: unary(written(Handler.Unregister)),
	OpReport:     unary(written(Handler.Report)),
	OpRaise:      unary(written(Handler.Raise)),
	OpClear:      unary(written(Handler.Clear)),
	OpSetState:   unary(written(Handler.SetState)),
	OpGet: unary(func(hd Handler, ctx context.Context, _ Cred, req *GetRequest) (*Entity, error) {
		e, err := hd.Get(ctx, req.Name)
		if err == nil && e == nil {
			err = Errorf(ErrNotFound, "no entity %q", req.Name)
		}
		return e, err
	}),
	OpStatus: unary(func(hd Handler, ctx context.Context, _ Cred, _ *StatusRequest) (*Status, error) {
		st, err := hd.Status(ctx)
		if err == nil && st == nil {
			err = Errorf(ErrInternal, "handler returned no status")
		}
		return st, err
	}),
	OpSwitchover: unary(func(hd Handler, ctx context.Context, cred Cred, _ *SwitchoverRequest) (struct{}, error) {
		return struct{}{}, hd.Switchover(ctx, cred)
	}),
	OpDaemons: unary(func(hd Handler, ctx context.Context, _ Cred, _ *DaemonsRequest) ([]Daemon, error) {
		dl, ok := hd.(DaemonLister)
		if !ok {
			return nil, Errorf(ErrUnknownOp, "this agent supervises no daemons")
		}
		ds, err := dl.Daemons(ctx)
		if ds == nil {
			ds = []Daemon{}
		}
		return ds, err
	}),
	OpList: request(func(ctx context.Context, c *serverConn, h Header, req *ListRequest) {
		es, err := c.s.Handler.List(ctx, req)
		if err != nil {
			c.writeError(h.ID, replyOp(h.Op), err)
			return
		}
		c.writeList(h, es)
	}),
	OpWatch: request(func(ctx context.Context, c *serverConn, h Header, req *WatchRequest) {
		c.watch(ctx, h, req)
	}),
	OpHistory: unary(func(hd Handler, ctx context.Context, _ Cred, req *HistoryRequest) (*HistoryResult, error) {
		hh, ok := hd.(HistoryHandler)
		if !ok {
			return nil, Errorf(ErrUnavailable, "this agent keeps no history")
		}
		res, err := hh.History(ctx, req)
		if err == nil && res == nil {
			err = Errorf(ErrInternal, "handler returned no history")
		}
		return res, err
	}),
}

// request makes the serveFunc of an op whose body decodes into an R and is
// then validated; a body that does not is answered with the error.
func request[R any, P interface {
	*R
	validator
}](serve func(ctx context.Context, c *serverConn, h Header, req P)) serveFunc {
	return func(ctx context.Context, c *serverConn, h Header, body []byte) {
		req := P(new(R))
		if err := parse(body, req); err != nil {
			c.writeError(h.ID, replyOp(h.Op), err)
			return
		}
		serve(ctx, c, h, req)
	}
}

// unary makes the serveFunc of an op that calls one Handler method and
// answers with its result or its error.
func unary[R any, P interface {
	*R
	validator
}, T any](call func(hd Handler, ctx context.Context, cred Cred, req P) (T, error)) serveFunc {
	return request(func(ctx context.Context, c *serverConn, h Header, req P) {
		res, err := call(c.s.Handler, ctx, c.cred, req)
		c.writeResult(h, res, err)
	})
}

// written adapts a write method, whose result may be nil when there is
// nothing to say, to answer {} rather than null.
func written[R any](m func(Handler, context.Context, Cred, *R) (*ReportResult, error)) func(Handler, context.Context, Cred, *R) (*ReportResult, error) {
	return func(hd Handler, ctx context.Context, cred Cred, req *R) (*ReportResult, error) {
		r, err := m(hd, ctx, cred, req)
		return orEmpty(r), err
	}
}

func orEmpty(r *ReportResult) *ReportResult {
	if r == nil {
		return &ReportResult{}
	}
	return r
}

// writeList sends entities as one or more frames, each a JSON array that
// fits in MaxBody; every frame but the last has FlagMore.
func (c *serverConn) writeList(h Header, es []Entity) {
	chunk := make([]byte, 0, 4096)
	chunk = append(chunk, '[')
	for i := range es {
		// Appended in place (AppendEntityJSON allocates nothing); one that
		// would overflow the frame is cut off and appended again to the
		// next chunk.
		at := len(chunk)
		if at > 1 { // not the chunk's first
			chunk = append(chunk, ',')
		}
		start := len(chunk)
		chunk = AppendEntityJSON(chunk, &es[i])
		if len(chunk)+1 <= MaxBody {
			continue
		}
		if size := len(chunk) - start; size+2 > MaxBody {
			c.writeError(h.ID, replyOp(h.Op), Errorf(ErrInternal, "entity %q is %d bytes encoded, over the frame limit", es[i].Name, size))
			return
		}
		chunk = append(chunk[:at], ']')
		if c.writeFrame(h.ID, replyOp(h.Op), FlagMore, chunk) != nil {
			return
		}
		chunk = AppendEntityJSON(append(chunk[:0], '['), &es[i])
	}
	chunk = append(chunk, ']')
	c.writeFrame(h.ID, replyOp(h.Op), 0, chunk)
}

// watch runs the Handler's Watch, acknowledging the request once the
// Handler is ready and streaming its events.
func (c *serverConn) watch(ctx context.Context, h Header, req *WatchRequest) {
	var (
		mu     sync.Mutex
		acked  bool
		ended  bool
		ackErr error
	)
	ack := func() error { // mu held
		if !acked {
			acked = true
			ackErr = c.writeFrame(h.ID, replyOp(OpWatch), FlagMore, []byte("{}"))
		}
		return ackErr
	}
	req.ready = func() {
		mu.Lock()
		defer mu.Unlock()
		if !ended {
			ack()
		}
	}
	send := func(ev *Event) error {
		if ev == nil {
			return errors.New("api: nil event")
		}
		body, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("api: encoding event: %w", err)
		}
		if len(body) > MaxBody {
			return fmt.Errorf("api: event of %d bytes is over the frame limit", len(body))
		}
		mu.Lock()
		defer mu.Unlock()
		if ended {
			return errors.New("api: send after Watch returned")
		}
		if err := ack(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return c.writeFrame(h.ID, replyOp(OpEvent), FlagMore, body)
	}
	err := c.s.Handler.Watch(ctx, req, send)
	mu.Lock()
	ended = true
	wasAcked := acked
	mu.Unlock()
	if !wasAcked {
		if err == nil {
			err = Errorf(ErrUnavailable, "watch ended before it started")
		}
		c.writeError(h.ID, replyOp(OpWatch), err)
		return
	}
	if err != nil {
		c.writeError(h.ID, replyOp(OpEvent), err)
		return
	}
	c.writeFrame(h.ID, replyOp(OpEvent), 0, []byte("{}"))
}

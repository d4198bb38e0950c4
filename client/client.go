// Package client is the Go library for fault clients of fmagent: programs on
// a node that register entities, report faults, raise and clear alarms, and
// read or watch the cluster table through their local agent's unix socket.
//
// A Client is safe for concurrent use. Its requests share one connection:
// each carries a request ID and the replies, which the agent may send in any
// order, are matched by it. The four fault writes (Report, Raise, Clear,
// SetState) go instead, one datagram each, to the agent's datagram socket,
// which its real-time loop reads itself, when it has one (dgram.go,
// UseDatagram). If the connection is lost, the requests in
// flight fail with an error matching api.ErrUnavailable (their outcome is
// unknown) and the next request dials again. Every method honours its
// context: a request blocked on a hung agent returns the context's error,
// wrapped. Errors from the agent are *api.Error values, so
// errors.Is(err, api.ErrNotFound) and the like work.
//
// Watch uses a connection of its own.
package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fmagent/fmagent/api"
)

// Kind, State and Severity are the api types, re-exported for convenience.
type (
	Kind     = api.Kind
	State    = api.State
	Severity = api.Severity
	// Filter selects entities for List; the zero Filter selects all.
	Filter = api.ListRequest
)

// Entity kinds.
const (
	KindNode    = api.KindNode
	KindLink    = api.KindLink
	KindProcess = api.KindProcess
	KindService = api.KindService
	KindCustom  = api.KindCustom
)

// States.
const (
	StateUp   = api.StateUp
	StateDown = api.StateDown
)

// Severities (ITU X.733).
const (
	SevCritical      = api.SevCritical
	SevMajor         = api.SevMajor
	SevMinor         = api.SevMinor
	SevWarning       = api.SevWarning
	SevIndeterminate = api.SevIndeterminate
)

// ErrClosed is returned by the methods of a closed Client.
var ErrClosed = errors.New("fmagent: client closed")

// DefaultSocket returns the socket path to use when none is given:
//
//  1. $FMAGENT_SOCKET if set and not empty;
//  2. /run/fmagent/fmagent.sock (api.DefaultSocketPath) if it exists;
//  3. $XDG_RUNTIME_DIR/fmagent/fmagent.sock, then
//     /tmp/fmagent-<uid>/fmagent.sock, if it exists (an agent run by an
//     unprivileged user with the default state directory puts its socket
//     there: config.DefaultStateDir);
//  4. otherwise /run/fmagent/fmagent.sock, so that the dial error names the
//     system path.
func DefaultSocket() string {
	if p := os.Getenv("FMAGENT_SOCKET"); p != "" {
		return p
	}
	if exists(systemSocket) {
		return systemSocket
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		if p := filepath.Join(d, "fmagent", "fmagent.sock"); exists(p) {
			return p
		}
	}
	if p := fmt.Sprintf(userSocket, os.Getuid()); exists(p) {
		return p
	}
	return systemSocket
}

// The paths DefaultSocket looks at (variables for tests).
var (
	systemSocket = api.DefaultSocketPath
	userSocket   = "/tmp/fmagent-%d/fmagent.sock"
)

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Client is a connection to the local fmagent.
type Client struct {
	path string

	// get reads one entity: from shared memory when the agent publishes
	// it (shm.go), over the socket otherwise.
	get getter

	// dg sends the fault writes on the agent's datagram socket (dgram.go).
	dg *dgramWriter

	dialSem chan struct{} // one dial at a time
	mu      sync.Mutex
	cc      *conn
	closed  bool
	watches map[*Watch]struct{}
}

// getter reads one entity by name.
type getter interface {
	get(ctx context.Context, name string) (*api.Entity, error)
}

// socketGetter reads entities over the socket.
type socketGetter struct{ c *Client }

func (g socketGetter) get(ctx context.Context, name string) (*api.Entity, error) {
	var e api.Entity
	if err := g.c.call(ctx, api.OpGet, &api.GetRequest{Name: name}, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// Dial connects to the agent listening on socketPath (DefaultSocket() if
// empty). An error for an agent that is not there matches api.ErrUnavailable.
func Dial(ctx context.Context, socketPath string) (*Client, error) {
	if socketPath == "" {
		socketPath = DefaultSocket()
	}
	c := &Client{
		path:    socketPath,
		dialSem: make(chan struct{}, 1),
		watches: make(map[*Watch]struct{}),
		dg:      &dgramWriter{path: api.DatagramPath(socketPath)},
	}
	c.get = &shmGetter{c: c, socket: socketGetter{c}}
	if _, err := c.conn(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Path returns the socket path the client dials.
func (c *Client) Path() string { return c.path }

// Close closes the connection and every Watch made by c. Requests in flight
// fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	if g, ok := c.get.(*shmGetter); ok {
		g.close()
	}
	c.dg.close()
	cc := c.cc
	c.cc = nil
	ws := c.watches
	c.watches = nil
	c.mu.Unlock()
	if cc != nil {
		cc.fail(ErrClosed)
	}
	for w := range ws {
		w.Close()
	}
	return nil
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("fmagent: dial %s: %w", c.path, ctx.Err())
		}
		return nil, fmt.Errorf("fmagent: dial %s: %w: %w", c.path, err, api.ErrUnavailable)
	}
	return nc, nil
}

// conn returns the live connection, dialing a new one if there is none.
func (c *Client) conn(ctx context.Context) (*conn, error) {
	c.mu.Lock()
	closed, cc := c.closed, c.cc
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if cc != nil && cc.alive() {
		return cc, nil
	}
	select {
	case c.dialSem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("fmagent: dial %s: %w", c.path, ctx.Err())
	}
	defer func() { <-c.dialSem }()
	c.mu.Lock()
	closed, cc = c.closed, c.cc
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if cc != nil && cc.alive() {
		return cc, nil
	}
	nc, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	cc = newConn(nc)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		cc.fail(ErrClosed)
		return nil, ErrClosed
	}
	c.cc = cc
	return cc, nil
}

// call sends one request and decodes its single reply into result.
func (c *Client) call(ctx context.Context, op api.Op, req, result any) error {
	return c.do(ctx, op, req, func(h api.Header, body []byte) (bool, error) {
		if h.Flags&api.FlagMore != 0 {
			return false, fmt.Errorf("unexpected multi-frame reply")
		}
		if err := json.Unmarshal(body, result); err != nil {
			return false, fmt.Errorf("decoding the reply: %w", err)
		}
		return true, nil
	})
}

// do sends one request and passes each reply frame (other than an error) to
// fn until fn reports the reply done. A write the agent throttled (nothing
// was written) is sent again after the retry-after it asked for, as long as
// ctx allows: a client over its write rate is slowed down, not failed.
func (c *Client) do(ctx context.Context, op api.Op, req any, fn func(api.Header, []byte) (bool, error)) error {
	for {
		err := c.doOnce(ctx, op, req, fn)
		if !throttleWait(ctx, err) {
			return err
		}
	}
}

// throttleWait waits the retry-after of err if it is the agent's
// throttled answer and ctx allows, and says whether to send again.
func throttleWait(ctx context.Context, err error) bool {
	var e *api.Error
	if !errors.As(err, &e) || e.Code != api.CodeThrottled {
		return false
	}
	wait := time.Duration(max(e.RetryAfterMs, 1)) * time.Millisecond
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
		return false
	}
	t := time.NewTimer(wait)
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		t.Stop()
		return false
	}
}

func (c *Client) doOnce(ctx context.Context, op api.Op, req any, fn func(api.Header, []byte) (bool, error)) error {
	// A write's body without encoding/json's reflection, which runs cold
	// between two reports (api/flatjson.go); the same bytes.
	body, ok := api.AppendRequestJSON(make([]byte, 0, 128), req)
	if !ok {
		var err error
		if body, err = json.Marshal(req); err != nil {
			return fmt.Errorf("fmagent %s: %w", op, err)
		}
	}
	if len(body) > api.MaxBody {
		return fmt.Errorf("fmagent %s: request of %d bytes is over the frame limit: %w", op, len(body), api.ErrBadRequest)
	}
	cc, err := c.conn(ctx)
	if err != nil {
		return err
	}
	id, cl, err := cc.register()
	if err != nil {
		return fmt.Errorf("fmagent %s: %w", op, err)
	}
	defer cc.unregister(id, cl)
	if err := cc.write(ctx, id, op, body); err != nil {
		return fmt.Errorf("fmagent %s: %w", op, err)
	}
	handle := func(f frame) (bool, error) {
		if f.h.Op&^api.OpReply != op {
			cc.fail(fmt.Errorf("reply op %v to a %v request", f.h.Op, op))
			return false, cc.lostErr()
		}
		if f.h.Flags&api.FlagError != 0 {
			return false, decodeError(f.body)
		}
		done, err := fn(f.h, f.body)
		if err != nil {
			return false, err
		}
		return done, nil
	}
	for {
		var f frame
		select {
		case f = <-cl.ch:
		case <-cc.dead:
			// A reply that arrived just before the connection died is
			// still a reply.
			select {
			case f = <-cl.ch:
			default:
				return fmt.Errorf("fmagent %s: %w", op, cc.lostErr())
			}
		case <-ctx.Done():
			return fmt.Errorf("fmagent %s: %w", op, ctx.Err())
		}
		done, err := handle(f)
		if err != nil {
			return fmt.Errorf("fmagent %s: %w", op, err)
		}
		if done {
			return nil
		}
	}
}

// decodeError decodes an error reply body into an *api.Error.
func decodeError(body []byte) error {
	var e api.Error
	if err := json.Unmarshal(body, &e); err != nil || e.Code == "" {
		return &api.Error{Code: api.CodeInternal, Message: fmt.Sprintf("undecodable error reply %q", body)}
	}
	return &e
}

// frame is one reply frame.
type frame struct {
	h    api.Header
	body []byte
}

// call is a request waiting for its reply frames.
type pendingCall struct {
	ch   chan frame
	gone chan struct{} // closed when the caller stops waiting
}

// conn is one connection to the agent, shared by concurrent requests.
type conn struct {
	nc   net.Conn
	dead chan struct{} // closed when the connection fails
	// agentUID is the agent's UID as the kernel recorded it (SO_PEERCRED):
	// shared memory owned by it is the agent's (see shmGetter.reader).
	agentUID uint32

	wmu  sync.Mutex
	wbuf []byte

	mu      sync.Mutex
	pending map[uint32]*pendingCall
	nextID  uint32
	err     error
}

func newConn(nc net.Conn) *conn {
	cc := &conn{
		nc:      nc,
		dead:    make(chan struct{}),
		pending: make(map[uint32]*pendingCall),
	}
	if uc, ok := nc.(*net.UnixConn); ok {
		if cred, err := api.PeerCred(uc); err == nil {
			cc.agentUID = cred.UID
		}
	}
	go cc.readLoop()
	return cc
}

func (cc *conn) alive() bool {
	select {
	case <-cc.dead:
		return false
	default:
		return true
	}
}

// fail marks the connection dead with err (the first error wins) and closes it.
func (cc *conn) fail(err error) {
	cc.mu.Lock()
	if cc.err == nil {
		cc.err = err
		close(cc.dead)
	}
	cc.mu.Unlock()
	cc.nc.Close()
}

// lostErr is the error of requests cut by the connection's end.
func (cc *conn) lostErr() error {
	cc.mu.Lock()
	err := cc.err
	cc.mu.Unlock()
	if errors.Is(err, ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("connection to the agent lost (%w): %w", err, api.ErrUnavailable)
}

func (cc *conn) register() (uint32, *pendingCall, error) {
	cl := &pendingCall{ch: make(chan frame, 1), gone: make(chan struct{})}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.err != nil {
		return 0, nil, cc.lostErrLocked()
	}
	for {
		cc.nextID++
		if _, used := cc.pending[cc.nextID]; !used {
			break
		}
	}
	cc.pending[cc.nextID] = cl
	return cc.nextID, cl, nil
}

func (cc *conn) lostErrLocked() error {
	if errors.Is(cc.err, ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("connection to the agent lost (%w): %w", cc.err, api.ErrUnavailable)
}

func (cc *conn) unregister(id uint32, cl *pendingCall) {
	cc.mu.Lock()
	if cc.pending[id] == cl {
		delete(cc.pending, id)
	}
	cc.mu.Unlock()
	close(cl.gone)
}

// write sends one request frame, giving up when ctx ends. A frame cut in
// the middle leaves the stream unusable, so the connection is then failed.
func (cc *conn) write(ctx context.Context, id uint32, op api.Op, body []byte) error {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	if !cc.alive() {
		return cc.lostErr()
	}
	cc.wbuf = api.AppendFrame(cc.wbuf[:0], api.Header{Version: api.Version, Op: op, ID: id}, body)
	dl, _ := ctx.Deadline()
	cc.nc.SetWriteDeadline(dl)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		cc.nc.SetWriteDeadline(time.Unix(1, 0))
		close(fired)
	})
	n, err := cc.nc.Write(cc.wbuf)
	if !stop() {
		<-fired // the deadline was moved: wait, so as not to race the next write
	}
	size := len(cc.wbuf)
	if cap(cc.wbuf) > 16<<10 {
		cc.wbuf = nil
	}
	if err == nil {
		return nil
	}
	if n > 0 {
		cc.fail(fmt.Errorf("write cut after %d of %d bytes: %w", n, size, err))
	}
	if err := ctxErr(ctx, err); err != nil {
		return err
	}
	cc.fail(err)
	return cc.lostErr()
}

// ctxErr returns ctx's error if the I/O error err is due to ctx: ctx ended,
// or its deadline passed (the connection's deadline, set from ctx's, can
// fire a moment before ctx itself notices).
func ctxErr(ctx context.Context, err error) error {
	if e := ctx.Err(); e != nil {
		return e
	}
	if _, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return nil
}

// readLoop hands each reply frame to the request waiting for it.
func (cc *conn) readLoop() {
	br := bufio.NewReaderSize(cc.nc, 4096)
	for {
		h, body, err := api.ReadFrame(br)
		if err == nil && h.Version != api.Version {
			err = fmt.Errorf("reply with protocol version %d", h.Version)
		}
		if err == nil && h.Op&api.OpReply == 0 {
			err = fmt.Errorf("frame with op %v is not a reply", h.Op)
		}
		if err != nil {
			cc.fail(err)
			return
		}
		cc.mu.Lock()
		cl := cc.pending[h.ID]
		cc.mu.Unlock()
		if cl == nil {
			continue // the caller gave up on it
		}
		select {
		case cl.ch <- frame{h, body}:
		case <-cl.gone:
		}
	}
}

// ---- requests ----

// RegisterOption modifies a Register call.
type RegisterOption interface{ applyRegister(*api.RegisterRequest) }

// ReportOption modifies a Report call.
type ReportOption interface{ applyReport(*api.ReportRequest) }

type processOption struct{}

func (processOption) applyRegister(r *api.RegisterRequest) { r.Process = true }

// AsProcess ties the entity to the calling process: the agent marks it down
// when this process exits (for whatever reason, kill -9 included). The agent
// identifies the process by the credentials of the connection, so the
// entity follows the process that dialed, not a child it forks.
func AsProcess() RegisterOption { return processOption{} }

// TxnOption asks for the resulting change to be applied as a cluster
// transaction (prepare, ack, commit on every live member). It is both a
// RegisterOption and a ReportOption.
type TxnOption struct{}

func (TxnOption) applyRegister(r *api.RegisterRequest) { r.Txn = true }
func (TxnOption) applyReport(r *api.ReportRequest)     { r.Txn = true }

// Txn returns the TxnOption.
func Txn() TxnOption { return TxnOption{} }

// Register creates (or re-registers) the entity name of the given kind,
// owned by this node, and returns it.
func (c *Client) Register(ctx context.Context, name string, kind Kind, opts ...RegisterOption) (*api.Entity, error) {
	req := api.RegisterRequest{Name: name, Kind: kind}
	for _, o := range opts {
		o.applyRegister(&req)
	}
	var e api.Entity
	if err := c.call(ctx, api.OpRegister, &req, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// Unregister removes the entity name.
func (c *Client) Unregister(ctx context.Context, name string) (*api.ReportResult, error) {
	return c.write(ctx, api.OpUnregister, &api.UnregisterRequest{Name: name})
}

// Report sends a fault: "I believe name is broken", with a probable cause and
// a severity ("" means indeterminate). The master's plugins decide the
// verdict; the result carries it and the seq of the resulting change.
func (c *Client) Report(ctx context.Context, name, cause string, sev Severity, opts ...ReportOption) (*api.ReportResult, error) {
	req := api.ReportRequest{Name: name, Cause: cause, Severity: sev}
	for _, o := range opts {
		o.applyReport(&req)
	}
	return c.write(ctx, api.OpReport, &req)
}

// Raise raises (or refreshes) the alarm cause on name.
func (c *Client) Raise(ctx context.Context, name, cause string, sev Severity) (*api.ReportResult, error) {
	return c.write(ctx, api.OpRaise, &api.RaiseRequest{Name: name, Cause: cause, Severity: sev})
}

// Clear clears the alarm cause on name.
func (c *Client) Clear(ctx context.Context, name, cause string) (*api.ReportResult, error) {
	return c.write(ctx, api.OpClear, &api.ClearRequest{Name: name, Cause: cause})
}

// SetState sets the state of an entity this node owns.
func (c *Client) SetState(ctx context.Context, name string, state State) (*api.ReportResult, error) {
	return c.write(ctx, api.OpSetState, &api.SetStateRequest{Name: name, State: state})
}

func (c *Client) write(ctx context.Context, op api.Op, req any) (*api.ReportResult, error) {
	if api.IsDatagramOp(op) {
		for {
			res, sent, err := c.dg.write(ctx, op, req)
			if !sent {
				break // nothing written: the stream takes it
			}
			if throttleWait(ctx, err) {
				continue
			}
			return res, err
		}
	}
	var r api.ReportResult
	if err := c.call(ctx, op, req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Get reads one entity; an unknown name gives an error matching
// api.ErrNotFound.
func (c *Client) Get(ctx context.Context, name string) (*api.Entity, error) {
	return c.get.get(ctx, name)
}

// List reads the entities matching f (all of them for the zero Filter). The
// agent may send a long list in several frames; List returns them all.
func (c *Client) List(ctx context.Context, f Filter) ([]api.Entity, error) {
	out := []api.Entity{}
	err := c.do(ctx, api.OpList, &f, func(h api.Header, body []byte) (bool, error) {
		var chunk []api.Entity
		if err := json.Unmarshal(body, &chunk); err != nil {
			return false, fmt.Errorf("decoding the reply: %w", err)
		}
		out = append(out, chunk...)
		return h.Flags&api.FlagMore == 0, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Status returns the agent's view of itself and the cluster.
func (c *Client) Status(ctx context.Context) (*api.Status, error) {
	var st api.Status
	if err := c.call(ctx, api.OpStatus, &api.StatusRequest{}, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Switchover asks the master to hand over to the vice-master.
func (c *Client) Switchover(ctx context.Context) error {
	var r struct{}
	return c.call(ctx, api.OpSwitchover, &api.SwitchoverRequest{}, &r)
}

// History returns this node's recent history (table changes, alarm changes,
// master/role/stale changes), newest last, and the per-entity fail and flap
// counts. limit 0 asks for api.DefaultHistory entries.
func (c *Client) History(ctx context.Context, prefix string, limit int) (*api.HistoryResult, error) {
	var r api.HistoryResult
	if err := c.call(ctx, api.OpHistory, &api.HistoryRequest{Prefix: prefix, Limit: limit}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

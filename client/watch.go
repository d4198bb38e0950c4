package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/fmagent/fmagent/api"
)

// Watch is a stream of table changes from the agent. Receive from Events
// until it is closed, then call Err to learn why it ended.
//
//	w, err := c.Watch(ctx, "node/3/")
//	if err != nil { ... }
//	defer w.Close()
//	for ev := range w.Events() { ... }
//	if err := w.Err(); err != nil { ... }
//
// A consumer must keep up: while Events is not drained the agent's writes
// to this connection block, and an agent disconnects a watcher that does not
// read for its write timeout (10 s by default).
type Watch struct {
	c      *Client
	nc     net.Conn
	events chan api.Event
	quit   chan struct{} // closed by Close
	done   chan struct{} // closed when the reading goroutine has ended

	mu     sync.Mutex
	err    error
	closed bool
}

// watchBuffer is the capacity of the Events channel.
const watchBuffer = 64

// Watch subscribes to the changes of every entity whose name starts with
// prefix ("" for all), on a connection of its own. It returns once the agent
// has subscribed: every change the agent applies from then on is delivered,
// in seq order. The stream ends when ctx ends, Close is called, the agent
// ends it or the connection is lost; then Events is closed and Err says why.
func (c *Client) Watch(ctx context.Context, prefix string) (*Watch, error) {
	return c.WatchWith(ctx, api.WatchRequest{Prefix: prefix})
}

// WatchSnapshot is Watch that starts with a snapshot: one EventSnapshot per
// matching entity, then an EventSync, then the changes after it, with no
// gap and no change twice.
func (c *Client) WatchSnapshot(ctx context.Context, prefix string) (*Watch, error) {
	return c.WatchWith(ctx, api.WatchRequest{Prefix: prefix, Snapshot: true})
}

// WatchFrom resumes a watch after the event with cursor from of agent run
// agent (both from an event received before, e.g. the last one handled):
// the agent replays what followed from its history, then sends an
// EventSync with Resumed set, then streams. If it no longer holds them (or
// it restarted: another agent run), it sends a snapshot and an EventSync
// without Resumed instead.
func (c *Client) WatchFrom(ctx context.Context, prefix string, agent, from uint64) (*Watch, error) {
	return c.WatchWith(ctx, api.WatchRequest{Prefix: prefix, Agent: agent, From: from})
}

// WatchWith is Watch with every option of the request.
func (c *Client) WatchWith(ctx context.Context, req api.WatchRequest) (*Watch, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	body, err := json.Marshal(&req)
	if err != nil {
		return nil, fmt.Errorf("fmagent watch: %w", err)
	}
	nc, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	// Until the acknowledgement, ctx bounds the whole exchange.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*Watch, error) {
		stop()
		nc.Close()
		if e := ctxErr(ctx, err); e != nil {
			err = e
		}
		return nil, fmt.Errorf("fmagent watch: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	frame := api.AppendFrame(nil, api.Header{Version: api.Version, Op: api.OpWatch, ID: 1}, body)
	if _, err := nc.Write(frame); err != nil {
		return fail(fmt.Errorf("%w: %w", err, api.ErrUnavailable))
	}
	br := bufio.NewReaderSize(nc, 4096)
	h, body, err := api.ReadFrame(br)
	if err != nil {
		return fail(fmt.Errorf("%w: %w", err, api.ErrUnavailable))
	}
	if h.Flags&api.FlagError != 0 {
		return fail(decodeError(body))
	}
	if h.Op != api.OpWatch|api.OpReply || h.Flags&api.FlagMore == 0 || h.ID != 1 {
		return fail(fmt.Errorf("unexpected reply %v flags %#x to watch", h.Op, h.Flags))
	}
	if !stop() {
		// ctx ended just now; the deadline is moved or about to be.
		return fail(ctx.Err())
	}
	nc.SetDeadline(time.Time{})

	w := &Watch{
		c:      c,
		nc:     nc,
		events: make(chan api.Event, watchBuffer),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		nc.Close()
		return nil, ErrClosed
	}
	c.watches[w] = struct{}{}
	c.mu.Unlock()
	go w.run(ctx, br)
	return w, nil
}

// Events returns the channel of changes. It is closed when the watch ends.
func (w *Watch) Events() <-chan api.Event { return w.events }

// Err returns why the watch ended, once Events is closed: nil after Close,
// an error wrapping the context's error if ctx ended, one matching
// api.ErrUnavailable if the connection was lost or the agent ended the
// stream, or the agent's error. Before the end it returns nil.
func (w *Watch) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close ends the watch and waits until Events is closed.
func (w *Watch) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.quit)
	}
	w.mu.Unlock()
	w.nc.Close()
	<-w.done
	w.c.mu.Lock()
	if w.c.watches != nil {
		delete(w.c.watches, w)
	}
	w.c.mu.Unlock()
	return nil
}

func (w *Watch) finish(ctx context.Context, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.closed:
		w.err = nil
	case ctx.Err() != nil:
		w.err = fmt.Errorf("fmagent watch: %w", ctx.Err())
	default:
		w.err = fmt.Errorf("fmagent watch: %w", err)
	}
}

func (w *Watch) run(ctx context.Context, br *bufio.Reader) {
	defer close(w.done)
	defer close(w.events)
	defer w.nc.Close()
	stop := context.AfterFunc(ctx, func() { w.nc.Close() })
	defer stop()
	for {
		h, body, err := api.ReadFrame(br)
		if err != nil {
			w.finish(ctx, fmt.Errorf("connection to the agent lost (%w): %w", err, api.ErrUnavailable))
			return
		}
		switch {
		case h.Flags&api.FlagError != 0:
			w.finish(ctx, decodeError(body))
			return
		case h.Op == api.OpEvent|api.OpReply && h.Flags&api.FlagMore != 0:
			var ev api.Event
			if err := json.Unmarshal(body, &ev); err != nil {
				w.finish(ctx, fmt.Errorf("decoding an event: %w", err))
				return
			}
			select {
			case w.events <- ev:
			case <-w.quit:
				w.finish(ctx, nil)
				return
			case <-ctx.Done():
				w.finish(ctx, nil)
				return
			}
		case h.Op == api.OpEvent|api.OpReply:
			w.finish(ctx, fmt.Errorf("the agent ended the stream: %w", api.ErrUnavailable))
			return
		default:
			w.finish(ctx, fmt.Errorf("unexpected frame %v flags %#x in a watch stream", h.Op, h.Flags))
			return
		}
	}
}

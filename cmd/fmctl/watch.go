package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
)

// The watch command.

func setupWatch(fs *flag.FlagSet) runFunc {
	var prefix, from string
	var snapshot bool
	fs.StringVar(&prefix, "prefix", "", "only changes of entities whose name starts with `P`")
	fs.BoolVar(&snapshot, "snapshot", false, "start with every matching entity, then a sync line, then the changes")
	fs.StringVar(&from, "from", "", "resume after `AGENT:CURSOR` (from a sync line or an event's agent and cursor)")
	return func(ctx context.Context, e *env, _ []string) error {
		dctx, cancel := e.withTimeout(ctx)
		c, err := e.dial(dctx)
		cancel()
		if err != nil {
			return err
		}
		defer c.Close()
		req := api.WatchRequest{Prefix: prefix, Snapshot: snapshot}
		if from != "" {
			ag, cur, ok := strings.Cut(from, ":")
			var err1, err2 error
			req.Agent, err1 = strconv.ParseUint(ag, 10, 64)
			req.From, err2 = strconv.ParseUint(cur, 10, 64)
			if !ok || err1 != nil || err2 != nil || req.From == 0 {
				return usagef("-from %q: want AGENT:CURSOR (two numbers, as a sync line prints them)", from)
			}
		}
		w, release, err := subscribe(ctx, e, c, req)
		if err != nil {
			return &cmdError{what: "watch", err: err}
		}
		defer release()
		defer w.Close()
		for ev := range w.Events() {
			if e.json() {
				err = writeJSONLine(e.stdout, &ev)
			} else {
				err = printEvent(e.stdout, &ev, time.Now())
			}
			if err != nil {
				return &cmdError{what: "watch: writing", err: err}
			}
		}
		err = w.Err()
		if err == nil || (ctx.Err() != nil && errors.Is(err, ctx.Err())) {
			return nil // interrupted: the normal end
		}
		return &cmdError{what: "watch", err: err}
	}
}

// subscribe starts a watch that lives as long as ctx but must be
// acknowledged within -timeout. (client.Watch's ctx bounds both the
// subscription and the stream, so the timeout is a timer that cancels it.)
// release ends the watch.
func subscribe(ctx context.Context, e *env, c *client.Client, req api.WatchRequest) (w *client.Watch, release func(), err error) {
	wctx, cancel := context.WithCancel(ctx)
	var timer *time.Timer
	if e.timeout > 0 {
		timer = time.AfterFunc(e.timeout, cancel)
	}
	w, err = c.WatchWith(wctx, req)
	fired := timer != nil && !timer.Stop()
	timedOut := fired && ctx.Err() == nil
	if err == nil && timedOut {
		w.Close()
		err = errors.New("the stream ended at once")
	}
	if err != nil {
		cancel()
		if timedOut {
			err = fmt.Errorf("subscribing: %w", context.DeadlineExceeded)
		}
		return nil, nil, err
	}
	return w, func() { w.Close(); cancel() }, nil
}

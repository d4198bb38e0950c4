package main

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"time"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
)

// The history and members commands.

func setupHistory(fs *flag.FlagSet) runFunc {
	var prefix string
	var limit int
	fs.StringVar(&prefix, "prefix", "", "only entities whose name starts with `P` (and no cluster events)")
	fs.IntVar(&limit, "n", api.DefaultHistory, "show the last `N` entries (at most 4096)")
	return func(ctx context.Context, e *env, _ []string) error {
		if limit < 1 || limit > api.MaxHistory {
			return usagef("-n %d: must be in 1..%d", limit, api.MaxHistory)
		}
		return call(ctx, e, func(ctx context.Context, c *client.Client) error {
			h, err := c.History(ctx, prefix, limit)
			if err != nil {
				return &cmdError{what: "history", err: err}
			}
			if e.json() {
				return writeJSON(e.stdout, h)
			}
			return printHistory(e, h)
		})
	}
}

func printHistory(e *env, h *api.HistoryResult) error {
	w := e.stdout
	tw := newTable(w)
	fmt.Fprintln(tw, "CURSOR\tTIME\tLAG\tSEQ\tEVENT\tENTITY\tSTATE\tCAUSE\tBY")
	for _, ev := range h.Events {
		entity, state, cause, by := ev.Entity.Name, string(ev.Entity.State), ev.Cause, nodeName(ev.By)
		switch ev.Kind {
		case api.EventMaster, api.EventRole, api.EventStale, api.EventFresh:
			entity = "(cluster)"
			state = fmt.Sprintf("master %s epoch %d role %s", nodeName(ev.Master), ev.Epoch, ev.Role)
			by = "-"
		case api.EventUnregister:
			state = "-"
		}
		if cause == "" {
			cause = "-"
		} else if ev.Severity != "" {
			cause += " (" + string(ev.Severity) + ")"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", ev.Cursor, ev.Time.UTC().Format("2006-01-02T15:04:05.000Z"),
			publishLag(&ev), ev.Seq, ev.Kind, entity, state, cause, by)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(h.Counts) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	fmt.Fprintf(tw, "ENTITY\tSTATE\tFAILS\tFLAPS(%v)\tRAISES\tLAST-FAIL\n", api.FlapWindow)
	for _, c := range h.Counts {
		last := "-"
		if !c.LastFail.IsZero() {
			last = c.LastFail.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", c.Name, c.State, c.Fails, c.Flaps, c.Raises, last)
	}
	return tw.Flush()
}

func setupMembers(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env, _ []string) error {
		return call(ctx, e, func(ctx context.Context, c *client.Client) error {
			st, err := c.Status(ctx)
			if err != nil {
				return &cmdError{what: "members", err: err}
			}
			sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].Node < st.Members[j].Node })
			if e.json() {
				return writeJSON(e.stdout, st.Members)
			}
			return printMembers(e.stdout, st, time.Now())
		})
	}
}

// publishLag is how long after the change this node published it in its
// shared memory (PublishedAt - Time; across machines it includes the
// offset between the master's clock and this node's), "-" for an event
// that is not a change of the table.
func publishLag(ev *api.Event) string {
	if ev.PublishedAt.IsZero() || ev.Time.IsZero() {
		return "-"
	}
	d := ev.PublishedAt.Sub(ev.Time)
	switch a := d.Abs(); {
	case a < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case a < time.Second:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

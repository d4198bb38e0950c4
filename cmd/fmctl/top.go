package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/shmem"
)

// The top command: a live one-screen view, like crm_mon. The table
// (entities, alarms, the master, epoch and stale flag) is read from the
// agent's shared memory, and the screen is redrawn as soon as the table
// changes (a futex wait on its sequence word) or every -interval; the
// members' roles and links and the recent history come from the socket.

func setupTop(fs *flag.FlagSet) runFunc {
	var n, hist int
	var interval time.Duration
	fs.IntVar(&n, "n", 0, "draw `N` screens, then exit (0: until Ctrl-C)")
	fs.IntVar(&hist, "history", 8, "show the last `H` history entries")
	fs.DurationVar(&interval, "interval", time.Second, "redraw at least every `D` (sooner when the table changes)")
	return func(ctx context.Context, e *env, _ []string) error {
		if n < 0 || hist < 0 || hist > api.MaxHistory || interval <= 0 {
			return usagef("-n, -history and -interval must be positive")
		}
		dctx, cancel := e.withTimeout(ctx)
		c, err := e.dial(dctx)
		cancel()
		if err != nil {
			return err
		}
		defer c.Close()
		var r *shmem.Reader
		defer func() {
			if r != nil {
				r.Close()
			}
		}()
		var ents []shmem.Entity
		for i := 0; n == 0 || i < n; i++ {
			qctx, cancel := e.withTimeout(ctx)
			st, err := c.Status(qctx)
			var h *api.HistoryResult
			if err == nil && hist > 0 {
				h, err = c.History(qctx, "", hist)
				if errors.Is(err, api.ErrUnavailable) {
					h, err = nil, nil
				}
			}
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return &cmdError{what: "top", err: err}
			}
			if r == nil && st.Shm != "" {
				r, _ = shmem.Open(st.Shm) // without it, the table comes from the socket
			}
			var hdr *shmem.HeaderInfo
			var table []api.Entity
			if r != nil {
				hi := r.Header()
				hdr = &hi
				ents, _, err = r.Snapshot(ents)
				if err != nil {
					r.Close()
					r = nil
				}
				for i := range ents {
					table = append(table, topEntity(&ents[i]))
				}
			}
			if r == nil {
				lctx, cancel := e.withTimeout(ctx)
				table, err = c.List(lctx, client.Filter{})
				cancel()
				if err != nil {
					return &cmdError{what: "top", err: err}
				}
			}
			if err := drawTop(e.stdout, st, hdr, table, h, time.Now()); err != nil {
				return &cmdError{what: "top: writing", err: err}
			}
			if n != 0 && i == n-1 {
				break
			}
			// Wait for a change of the table, or the interval.
			if r != nil {
				seq := r.Seq()
				if _, err := r.WaitTimeout(seq, interval); err != nil && ctx.Err() == nil && !errors.Is(err, shmem.ErrTimeout) {
					time.Sleep(interval / 10)
				}
			} else {
				select {
				case <-time.After(interval):
				case <-ctx.Done():
				}
			}
			if ctx.Err() != nil {
				return nil
			}
		}
		return nil
	}
}

func topEntity(e *shmem.Entity) api.Entity {
	out := api.Entity{Name: e.NameString(), Kind: api.KindOf(e.Kind), Owner: e.Owner, State: api.StateOf(e.State)}
	for i := 0; i < int(e.NAlarms) && i < len(e.Alarms); i++ {
		al := &e.Alarms[i]
		out.Alarms = append(out.Alarms, api.Alarm{Cause: string(al.CauseBytes()), Severity: api.SeverityOf(al.Severity),
			RaisedAt: time.Unix(0, al.RaisedAt).UTC(), RaisedBy: al.RaisedBy})
	}
	return out
}

// drawTop draws one screen: the cursor home and the screen cleared, then
// the view.
func drawTop(w io.Writer, st *api.Status, hdr *shmem.HeaderInfo, table []api.Entity, h *api.HistoryResult, now time.Time) error {
	var b strings.Builder
	b.WriteString("\x1b[H\x1b[2J")
	master, epoch, stale, seq := st.Master, st.Epoch, st.Stale, st.TableSeq
	source := "socket"
	if hdr != nil {
		master, epoch, stale, seq, source = hdr.Master, hdr.Epoch, hdr.Stale, hdr.Seq, "shared memory"
	}
	fmt.Fprintf(&b, "fmctl top — node %d, cluster %d — %s — table from %s (Ctrl-C quits)\n", st.Node, st.Cluster,
		now.UTC().Format("2006-01-02 15:04:05Z"), source)
	fmt.Fprintf(&b, "master %s  epoch %d  this node %s  table seq %d  timing %v × %d", nodeName(master), epoch, st.Role, seq,
		time.Duration(st.Timing.Interval), st.Timing.Misses)
	if stale {
		b.WriteString("  ** STALE **")
	}
	if master == 0 {
		b.WriteString("  ** NO MASTER **")
	}
	b.WriteString("\n")
	for _, net := range []string{"a", "b"} {
		if parts, ok := st.Partitions[net]; ok {
			fmt.Fprintf(&b, "** network %s partitioned: %s **\n", net, partsString(parts))
		}
	}
	b.WriteString("\n")
	members := append([]api.Member(nil), st.Members...)
	sort.Slice(members, func(i, j int) bool { return members[i].Node < members[j].Node })
	links := map[string]api.State{}
	for _, e := range table {
		if e.Kind == api.KindLink {
			links[e.Name] = e.State
		}
	}
	fmt.Fprintf(&b, "MEMBERS (%d)\n", len(members))
	tw := newTable(&b)
	fmt.Fprintln(tw, "  NODE\tROLE\tSTATE\tLINK-A\tLINK-B\tHEARD-A\tHEARD-B\tVERSION")
	for _, m := range members {
		la, lb := links[fmt.Sprintf("node/%d/link/a", m.Node)], links[fmt.Sprintf("node/%d/link/b", m.Node)]
		node := nodeName(m.Node)
		if m.Node == st.Node {
			node += "*"
		}
		v := m.Version
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", node, m.Role, m.State, orDash(string(la)), orDash(string(lb)),
			ago(m.HeardA, now), ago(m.HeardB, now), v)
	}
	tw.Flush()

	type row struct {
		entity string
		a      api.Alarm
	}
	var alarms []row
	bySev := map[api.Severity]int{}
	for _, e := range table {
		for _, a := range e.Alarms {
			alarms = append(alarms, row{e.Name, a})
			bySev[a.Severity]++
		}
	}
	sort.Slice(alarms, func(i, j int) bool {
		ri, rj := severityRank(alarms[i].a.Severity), severityRank(alarms[j].a.Severity)
		if ri != rj {
			return ri < rj
		}
		return alarms[i].a.RaisedAt.Before(alarms[j].a.RaisedAt)
	})
	var counts []string
	for _, s := range []api.Severity{api.SevCritical, api.SevMajor, api.SevMinor, api.SevWarning, api.SevIndeterminate} {
		if bySev[s] > 0 {
			counts = append(counts, fmt.Sprintf("%s %d", s, bySev[s]))
		}
	}
	if len(counts) == 0 {
		counts = []string{"none"}
	}
	down := 0
	for _, e := range table {
		if e.State == api.StateDown {
			down++
		}
	}
	fmt.Fprintf(&b, "\nACTIVE ALARMS: %s   (entities %d, down %d)\n", strings.Join(counts, ", "), len(table), down)
	tw = newTable(&b)
	fmt.Fprintln(tw, "  SEVERITY\tENTITY\tCAUSE\tRAISED\tBY")
	for i, r := range alarms {
		if i == 20 {
			fmt.Fprintf(tw, "  ...\t%d more\t\t\t\n", len(alarms)-20)
			break
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", r.a.Severity, r.entity, r.a.Cause, ago(r.a.RaisedAt, now), nodeName(r.a.RaisedBy))
	}
	tw.Flush()
	if h != nil {
		fmt.Fprintf(&b, "\nRECENT HISTORY (this node)\n")
		tw = newTable(&b)
		for _, ev := range h.Events {
			what := ev.Entity.Name + " " + string(ev.Entity.State)
			switch ev.Kind {
			case api.EventMaster, api.EventRole, api.EventStale, api.EventFresh:
				what = fmt.Sprintf("master %s epoch %d role %s", nodeName(ev.Master), ev.Epoch, ev.Role)
			}
			if ev.Cause != "" {
				what += " " + ev.Cause
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", ev.Time.UTC().Format("15:04:05.000"), ev.Kind, what)
		}
		tw.Flush()
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

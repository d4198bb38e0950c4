package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/wire"
)

// ---- JSON ----

// writeJSON writes v as indented JSON and a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeJSONLine writes v as one line of JSON (JSON Lines).
func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// ---- times ----

// age is a short duration for people: 3s, 2m10s, 25m, 4h, 3h20m, 30h, 3d4h, 12d.
func age(d time.Duration) string {
	if d < 0 {
		d = 0 // the master's clock is ahead of ours
	}
	s := int64(d / time.Second)
	const minute, hour, day = 60, 3600, 86400
	switch {
	case s < minute:
		return fmt.Sprintf("%ds", s)
	case s < 10*minute:
		if s%minute == 0 {
			return fmt.Sprintf("%dm", s/minute)
		}
		return fmt.Sprintf("%dm%ds", s/minute, s%minute)
	case s < hour:
		return fmt.Sprintf("%dm", s/minute)
	case s < 10*hour:
		if m := s % hour / minute; m != 0 {
			return fmt.Sprintf("%dh%dm", s/hour, m)
		}
		return fmt.Sprintf("%dh", s/hour)
	case s < 2*day:
		return fmt.Sprintf("%dh", s/hour)
	case s < 10*day:
		if h := s % day / hour; h != 0 {
			return fmt.Sprintf("%dd%dh", s/day, h)
		}
		return fmt.Sprintf("%dd", s/day)
	}
	return fmt.Sprintf("%dd", s/day)
}

// since is the age of t at now, "-" for the zero time.
func since(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return age(now.Sub(t))
}

// stamp is t in RFC 3339, UTC, to the second; "-" for the zero time.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// ageAndStamp is "3s      2025-03-14T09:26:53Z", the age padded so that
// the stamps line up in a column.
func ageAndStamp(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%-6s %s", since(t, now), stamp(t))
}

// ---- tables ----

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func upDown(b bool) string {
	if b {
		return "up"
	}
	return "down"
}

func printStatus(w io.Writer, st *api.Status) error {
	if st.Refused {
		fmt.Fprintf(w, "ERROR: this node refused to join: its node_id %d is in use by another node (see the agent's log)\n", st.Node)
	}
	if st.Stale {
		fmt.Fprintln(w, "WARNING: cluster STALE: no word from the master for longer than the stale timeout; the table may be out of date")
	}
	if st.Master == 0 {
		fmt.Fprintln(w, "WARNING: no master: writes fail until one is elected")
	}
	if len(st.Quorum.Members) > 0 && !st.Quorum.Ok {
		fmt.Fprintf(w, "WARNING: waiting for quorum: %d of the last membership %s present, %d needed\n",
			st.Quorum.Present, wire.NodeSet(st.Quorum.Members), st.Quorum.Needed)
	}
	for _, net := range []string{"a", "b"} {
		if parts, ok := st.Partitions[net]; ok {
			fmt.Fprintf(w, "WARNING: network %s partitioned: %s\n", net, partsString(parts))
		}
	}
	tw := newTable(w)
	fmt.Fprintf(tw, "node:\t%s\n", nodeName(st.Node))
	fmt.Fprintf(tw, "cluster:\t%d\n", st.Cluster)
	fmt.Fprintf(tw, "role:\t%s\n", st.Role)
	fmt.Fprintf(tw, "epoch:\t%d\n", st.Epoch)
	fmt.Fprintf(tw, "master:\t%s\n", nodeName(st.Master))
	fmt.Fprintf(tw, "vice:\t%s\n", nodeName(st.Vice))
	fmt.Fprintf(tw, "stale:\t%s\n", yesNo(st.Stale))
	fmt.Fprintf(tw, "table seq:\t%d\n", st.TableSeq)
	fmt.Fprintf(tw, "digest:\t%s\n", st.Digest)
	fmt.Fprintf(tw, "incarnation:\t%s\n", shortInc(st.Incarnation))
	if st.Version != "" {
		fmt.Fprintf(tw, "version:\t%s\n", st.Version)
	}
	if st.Timing.Interval > 0 {
		profile := ""
		if st.Timing.Profile != "" {
			profile = ", profile " + st.Timing.Profile
		}
		fmt.Fprintf(tw, "timing:\t%v × %d (detection %v%s)\n", time.Duration(st.Timing.Interval), st.Timing.Misses,
			time.Duration(st.Timing.Detection), profile)
		if st.Timing.Overruns > 0 {
			tol := time.Duration(st.Timing.Detection) - time.Duration(st.Timing.Interval)
			fmt.Fprintf(tw, "machine:\tCANNOT HOLD THE PROFILE: woken %d times later than its %v tolerance (worst %v); see the agent's log\n",
				st.Timing.Overruns, tol, time.Duration(st.Timing.WorstWake))
		}
	}
	if len(st.Quorum.Members) > 0 {
		ok := "ok"
		if !st.Quorum.Ok {
			ok = "WAITING"
		}
		fmt.Fprintf(tw, "quorum:\t%s: %d of %s present, %d needed\n", ok, st.Quorum.Present, wire.NodeSet(st.Quorum.Members), st.Quorum.Needed)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return printMembers(w, st, time.Now())
}

// printMembers is the members table of status (and of members).
func printMembers(w io.Writer, st *api.Status, now time.Time) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "NODE\tINC\tROLE\tSTATE\tLINK-A\tLINK-B\tHEARD-A\tHEARD-B\tPRIO\tELIGIBLE\tVERSION\tBOUND")
	for _, m := range st.Members {
		node := nodeName(m.Node)
		heardA, heardB := ago(m.HeardA, now), ago(m.HeardB, now)
		if m.Node == st.Node {
			node += "*" // this node
		}
		version := m.Version
		if version == "" {
			version = "-"
		}
		bound := "-"
		if m.Bound > 0 {
			bound = m.Bound.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", node, shortInc(m.Incarnation), m.Role, m.State,
			upDown(m.Links.A), upDown(m.Links.B), heardA, heardB, m.Priority, yesNo(m.Eligible), version, bound)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := printExitWatch(w, st); err != nil {
		return err
	}
	return printWatchdog(w, st.Watchdog, time.Now())
}

// printExitWatch is the exit watch's line of status: whether a kill -9 of
// this node, and of its followers, is seen at once.
func printExitWatch(w io.Writer, st *api.Status) error {
	x := st.ExitWatch
	if x == nil {
		return nil
	}
	var line string
	switch {
	case !x.Listening:
		line = "OFF (see the agent's log): a kill -9 is seen at the detection time"
	case st.Master != 0 && st.Master != st.Node && x.Master != st.Master:
		line = fmt.Sprintf("NOT connected to master %d: a kill -9 of this node is seen at the detection time", st.Master)
	case st.Master != 0 && st.Master != st.Node:
		line = fmt.Sprintf("connected to master %d", x.Master)
	default:
		line = fmt.Sprintf("%d connected: %s", len(x.Followers), wire.NodeSet(x.Followers))
	}
	if x.Refused > 0 || x.DialFailures > 0 {
		line += fmt.Sprintf(" (%d refused, %d failed connections)", x.Refused, x.DialFailures)
	}
	if x.Listening && x.OwnTable != nil && !*x.OwnTable {
		line += "; held in the process's file table: a kill -9 of this node is seen about 3 ms late (see the agent's log)"
	}
	_, err := fmt.Fprintf(w, "\nexit watch:  %s\n", line)
	return err
}

// shortInc shows an incarnation as people read it: incarnations are unix
// nanoseconds at start (19 digits); the low 24 bits in hex (6 digits) tell
// two lives of a node apart. Small ones (counters) print as they are.
func shortInc(inc uint64) string {
	if inc < 1_000_000 {
		return fmt.Sprint(inc)
	}
	return fmt.Sprintf("%06x", inc&0xffffff)
}

// ago is how long before now t was, to the millisecond ("-" if never).
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return d.Round(time.Millisecond).String() + " ago"
}

func partsString(parts [][]wire.NodeID) string {
	s := make([]string, len(parts))
	for i, p := range parts {
		s[i] = wire.NodeSet(p)
	}
	return strings.Join(s, " | ")
}

// alarmSummary is the ALARMS cell: "0", or the count and the worst severity.
func alarmSummary(as []api.Alarm) string {
	if len(as) == 0 {
		return "0"
	}
	worst := as[0].Severity
	for _, a := range as[1:] {
		if severityRank(a.Severity) < severityRank(worst) {
			worst = a.Severity
		}
	}
	return fmt.Sprintf("%d (%s)", len(as), worst)
}

func printEntities(w io.Writer, es []api.Entity, now time.Time) error {
	if len(es) == 0 {
		_, err := fmt.Fprintln(w, "no entities")
		return err
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tKIND\tOWNER\tSTATE\tINC\tALARMS\tCHANGED")
	for _, e := range es {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", e.Name, e.Kind, nodeName(e.Owner), e.State,
			e.Incarnation, alarmSummary(e.Alarms), since(e.ChangedAt, now))
	}
	return tw.Flush()
}

func printEntity(w io.Writer, e *api.Entity, now time.Time) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "name:\t%s\n", e.Name)
	fmt.Fprintf(tw, "id:\t%s\n", e.ID)
	fmt.Fprintf(tw, "kind:\t%s\n", e.Kind)
	fmt.Fprintf(tw, "owner:\t%s\n", nodeName(e.Owner))
	fmt.Fprintf(tw, "state:\t%s\n", e.State)
	fmt.Fprintf(tw, "incarnation:\t%d\n", e.Incarnation)
	fmt.Fprintf(tw, "changed:\t%s ago (%s), seq %d, by node %s\n",
		since(e.ChangedAt, now), stamp(e.ChangedAt), e.ChangedSeq, nodeName(e.ChangedBy))
	fmt.Fprintf(tw, "alarms:\t%d\n", len(e.Alarms))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(e.Alarms) == 0 {
		return nil
	}
	rows := make([]alarmRow, len(e.Alarms))
	for i, a := range e.Alarms {
		rows[i] = alarmRow{Entity: e.Name, Alarm: a}
	}
	sortAlarms(rows)
	fmt.Fprintln(w)
	tw = newTable(w)
	fmt.Fprintln(tw, "SEVERITY\tCAUSE\tRAISED\tBY")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Severity, r.Cause, ageAndStamp(r.RaisedAt, now), nodeName(r.RaisedBy))
	}
	return tw.Flush()
}

func printAlarms(w io.Writer, rows []alarmRow, now time.Time) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "no active alarms")
		return err
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "SEVERITY\tENTITY\tCAUSE\tRAISED\tBY")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Severity, r.Entity, r.Cause, ageAndStamp(r.RaisedAt, now), nodeName(r.RaisedBy))
	}
	return tw.Flush()
}

// printResult prints the outcome of a write: "raise svc/x: verdict raise, seq 12".
func printResult(w io.Writer, verb, name string, r *api.ReportResult) error {
	verdict := r.Verdict
	if verdict == "" {
		verdict = "-"
	}
	var err error
	if r.Seq == 0 {
		_, err = fmt.Fprintf(w, "%s %s: verdict %s, nothing changed\n", verb, name, verdict)
	} else {
		_, err = fmt.Fprintf(w, "%s %s: verdict %s, seq %d\n", verb, name, verdict, r.Seq)
	}
	return err
}

// eventTime is when the change of ev happened: the entity's change time
// (master's clock) when the event is that change, else now (an unregister
// carries the entity as it was).
func eventTime(ev *api.Event, now time.Time) time.Time {
	if ev.Entity.ChangedSeq == ev.Seq && !ev.Entity.ChangedAt.IsZero() {
		return ev.Entity.ChangedAt
	}
	return now
}

// printEvent prints one watch line: <time> <seq> <kind> <name> <state> [cause].
func printEvent(w io.Writer, ev *api.Event, now time.Time) error {
	state := string(ev.Entity.State)
	if ev.Kind == api.EventUnregister {
		state = "-"
	}
	switch ev.Kind {
	case api.EventMaster, api.EventRole, api.EventStale, api.EventFresh, api.EventSync:
		// About the cluster view, not an entity.
		line := fmt.Sprintf("%s %d %-10s master %s epoch %d role %s", eventTime(ev, now).UTC().Format("2006-01-02T15:04:05.000Z07:00"),
			ev.Seq, ev.Kind, nodeName(ev.Master), ev.Epoch, ev.Role)
		if ev.Kind == api.EventSync {
			line += fmt.Sprintf(" resume-from %d:%d", ev.Agent, ev.Cursor)
			if ev.Resumed {
				line += " (resumed)"
			}
		}
		_, err := fmt.Fprintln(w, line)
		return err
	}
	line := fmt.Sprintf("%s %d %-10s %s %s", eventTime(ev, now).UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		ev.Seq, ev.Kind, ev.Entity.Name, state)
	if ev.Cause != "" {
		line += " " + ev.Cause
		if ev.Kind == api.EventRaise && ev.Severity != "" {
			line += " (" + string(ev.Severity) + ")"
		} else if ev.Kind == api.EventRaise {
			for _, a := range ev.Entity.Alarms {
				if a.Cause == ev.Cause {
					line += " (" + string(a.Severity) + ")"
					break
				}
			}
		}
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

// ---- usage ----

func mainUsage(w io.Writer, gfs *flag.FlagSet) {
	fmt.Fprint(w, `fmctl is the operator's command-line interface to fmagent, the cluster fault manager.

Usage:
  fmctl [global flags] COMMAND [ARGS] [FLAGS]

Commands:
`)
	tw := newTable(w)
	for _, c := range commands {
		name := c.name
		if len(c.aliases) > 0 {
			name += ", " + strings.Join(c.aliases, ", ")
		}
		fmt.Fprintf(tw, "  %s\t%s\n", name, c.summary)
	}
	fmt.Fprintf(tw, "  help [COMMAND]\tshow this help, or a command's\n")
	tw.Flush()
	fmt.Fprint(w, "\nGlobal flags (before or after the command):\n")
	printFlags(w, gfs, func(string) bool { return true })
	fmt.Fprint(w, `
Exit status: 0 success, 1 failure, 2 bad usage, 3 not found, 4 refused
(a write not applied: a limit reached or refused by the master).
Environment: FMAGENT_SOCKET is the agent's socket when -socket is not given.
Run "fmctl help COMMAND" (or "fmctl COMMAND -h") for a command's flags.
`)
}

func cmdUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	syn := c.name
	if c.synopsis != "" {
		syn += " " + c.synopsis
	}
	fmt.Fprintf(w, "Usage:\n  fmctl [global flags] %s\n\n%s\n", syn, c.help)
	if len(c.aliases) > 0 {
		fmt.Fprintf(w, "Alias: %s\n", strings.Join(c.aliases, ", "))
	}
	local := false
	fs.VisitAll(func(f *flag.Flag) { local = local || !globalNames[f.Name] })
	if local {
		fmt.Fprint(w, "\nFlags:\n")
		printFlags(w, fs, func(n string) bool { return !globalNames[n] })
	}
	fmt.Fprint(w, "\nGlobal flags -socket, -o and -timeout may also be given: see \"fmctl help\".\n")
}

// printFlags prints the flags of fs that keep selects, like
// flag.PrintDefaults.
func printFlags(w io.Writer, fs *flag.FlagSet, keep func(string) bool) {
	fs.VisitAll(func(f *flag.Flag) {
		if !keep(f.Name) {
			return
		}
		name, usage := flag.UnquoteUsage(f)
		line := "  -" + f.Name
		if name != "" {
			line += " " + name
		}
		line += "\n    \t" + strings.ReplaceAll(usage, "\n", "\n    \t")
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			line += fmt.Sprintf(" (default %q)", f.DefValue)
		}
		fmt.Fprintln(w, line)
	})
}

// help is "fmctl help [COMMAND]".
func help(stdout, stderr io.Writer, gfs *flag.FlagSet, args []string) int {
	switch {
	case len(args) == 0:
		mainUsage(stdout, gfs)
		return exitOK
	case len(args) > 1:
		fmt.Fprintln(stderr, "fmctl help: want at most one command")
		mainUsage(stderr, gfs)
		return exitUsage
	}
	c := lookup(args[0])
	if c == nil {
		fmt.Fprintf(stderr, "fmctl help: unknown command %q\n", args[0])
		mainUsage(stderr, gfs)
		return exitUsage
	}
	fs := flag.NewFlagSet("fmctl "+c.name, flag.ContinueOnError)
	c.setup(fs)
	cmdUsage(stdout, c, fs)
	return exitOK
}

// nodeName shows a node ID, "none" for 0.
func nodeName(n wire.NodeID) string {
	if n == 0 {
		return "none"
	}
	return fmt.Sprint(uint32(n))
}

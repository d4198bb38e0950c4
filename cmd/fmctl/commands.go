package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sort"
	"time"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/version"
	"github.com/fmagent/fmagent/wire"
)

// runFunc runs a command with its positional arguments.
type runFunc func(ctx context.Context, e *env, args []string) error

// command is one fmctl subcommand.
type command struct {
	name     string
	aliases  []string
	synopsis string // after "fmctl [global flags] NAME"
	summary  string // one line, for "fmctl help"
	help     string // a paragraph, for "fmctl help NAME"
	// args is the number of positional arguments (all of them NAME-like);
	// argName names the first in messages.
	args    int
	argName string
	// setup defines the command's flags on fs and returns the command.
	setup func(fs *flag.FlagSet) runFunc
}

func (c *command) checkArgs(pos []string) error {
	if len(pos) < c.args {
		return usagef("missing %s", c.argName)
	}
	if len(pos) > c.args {
		return usagef("unexpected argument %q", pos[c.args])
	}
	for _, p := range pos {
		if p == "" {
			return usagef("empty %s", c.argName)
		}
	}
	return nil
}

// commands in the order "fmctl help" lists them.
var commands []*command

func init() {
	commands = []*command{
		{
			name: "status", synopsis: "",
			summary: "show this agent's view of the cluster: roles, epoch, members",
			help: "Shows this node's role, the election epoch, the master and vice-master, the\n" +
				"table seq and digest, and every member with how this node hears it on\n" +
				"each network. A stale cluster (no word from the master for longer than the\n" +
				"stale timeout) is flagged by a WARNING line at the top.",
			setup: setupStatus,
		},
		{
			name: "entities", aliases: []string{"ls"},
			synopsis: "[-prefix P] [-kind K] [-state up|down] [-alarmed]",
			summary:  "list entities, sorted by name",
			help: "Lists the entities of the cluster table that match every filter given,\n" +
				"sorted by name.",
			setup: setupEntities,
		},
		{
			name: "get", synopsis: "NAME", args: 1, argName: "NAME",
			summary: "show one entity and its alarms",
			help:    "Shows one entity and its active alarms. Exit status 3 if there is no such entity.",
			setup:   setupGet,
		},
		{
			name: "alarms", synopsis: "[-prefix P]",
			summary: "list every active alarm, most severe first",
			help: "Lists every active alarm in the cluster, one row per alarm, sorted by\n" +
				"severity (critical, major, minor, warning, indeterminate), then by the\n" +
				"time it was raised (oldest first).",
			setup: setupAlarms,
		},
		{
			name: "register", synopsis: "NAME -kind K [-process] [-txn]", args: 1, argName: "NAME",
			summary: "create an entity owned by this node (or re-register it)",
			help: "Creates the entity NAME owned by this node, state up; registering it again\n" +
				"with the same kind bumps its incarnation and brings it up.",
			setup: setupRegister,
		},
		{
			name: "unregister", synopsis: "NAME", args: 1, argName: "NAME",
			summary: "remove an entity",
			help:    "Removes the entity NAME from the cluster table. Exit status 3 if there is no such entity.",
			setup: writeSetup("unregister", func(ctx context.Context, c *client.Client, name string) (*api.ReportResult, error) {
				return c.Unregister(ctx, name)
			}),
		},
		{
			name: "report", synopsis: "NAME -cause C [-severity S] [-txn]", args: 1, argName: "NAME",
			summary: "report a fault on an entity; the master's plugins decide",
			help: "Sends a fault, \"I believe NAME is broken\", through the master's plugin chain,\n" +
				"which decides the verdict (raise an alarm, mark down, blame the reporter,\n" +
				"ignore...). The severity defaults to indeterminate.",
			setup: setupReport,
		},
		{
			name: "raise", synopsis: "NAME -cause C [-severity S]", args: 1, argName: "NAME",
			summary: "raise (or refresh) an alarm on an entity",
			help:    "Raises the alarm with probable cause C on NAME (or refreshes it). The severity\ndefaults to indeterminate.",
			setup:   setupRaise,
		},
		{
			name: "clear", synopsis: "NAME -cause C", args: 1, argName: "NAME",
			summary: "clear an alarm on an entity",
			help:    "Clears the alarm with probable cause C on NAME. Exit status 3 if there is no\nsuch entity or no such alarm.",
			setup:   setupClear,
		},
		{
			name: "up", synopsis: "NAME", args: 1, argName: "NAME",
			summary: "mark an entity this node owns up",
			help:    "Marks NAME up, speaking as its owner (this node must own it).",
			setup:   setStateSetup(api.StateUp),
		},
		{
			name: "down", synopsis: "NAME", args: 1, argName: "NAME",
			summary: "mark an entity this node owns down",
			help:    "Marks NAME down, speaking as its owner (this node must own it).",
			setup:   setStateSetup(api.StateDown),
		},
		{
			name: "watch", synopsis: "[-prefix P]",
			summary: "stream table changes, one line each, until interrupted",
			help: "Streams the changes of the entities whose name starts with P (all if none),\n" +
				"one line per change, until Ctrl-C. -timeout bounds only the subscription.\n" +
				"With -o json, one Event object per line (JSON Lines).",
			setup: setupWatch,
		},
		{
			name: "switchover", synopsis: "",
			summary: "ask the master to hand over to the vice-master",
			help:    "Asks the master to hand over to the vice-master.",
			setup:   setupSwitchover,
		},
		{
			name: "version", synopsis: "",
			summary: "print fmctl's version and protocol version",
			help:    "Prints fmctl's version, the Go version it was built with and the client\nprotocol version it speaks. It does not contact the agent.",
			setup:   setupVersion,
		},
	}
}

// lookup finds a command by name or alias.
func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
		for _, a := range c.aliases {
			if a == name {
				return c
			}
		}
	}
	return nil
}

// call dials the agent and runs fn with a context bounded by -timeout.
func call(ctx context.Context, e *env, fn func(ctx context.Context, c *client.Client) error) error {
	ctx, cancel := e.withTimeout(ctx)
	defer cancel()
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(ctx, c)
}

// ---- checks of flag values ----

func checkKind(k string, required bool) error {
	if k == "" && !required {
		return nil
	}
	if k == "" {
		return usagef("-kind is required (node, link, process, service or custom)")
	}
	if api.Kind(k).Wire() == 0 {
		return usagef("-kind %q: want node, link, process, service or custom", k)
	}
	return nil
}

func checkState(s string) error {
	if s != "" && api.State(s).Wire() == 0 {
		return usagef("-state %q: want up or down", s)
	}
	return nil
}

func checkSeverity(s string) error {
	if api.Severity(s).Wire() == 0 {
		return usagef("-severity %q: want critical, major, minor, warning or indeterminate", s)
	}
	return nil
}

func checkCause(c string) error {
	if c == "" {
		return usagef("-cause is required")
	}
	return nil
}

// ---- reads ----

func setupStatus(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env, _ []string) error {
		return call(ctx, e, func(ctx context.Context, c *client.Client) error {
			st, err := c.Status(ctx)
			if err != nil {
				return &cmdError{what: "status", err: err}
			}
			sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].Node < st.Members[j].Node })
			if e.json() {
				return writeJSON(e.stdout, st)
			}
			return printStatus(e.stdout, st)
		})
	}
}

func setupEntities(fs *flag.FlagSet) runFunc {
	var f client.Filter
	var kind, state string
	fs.StringVar(&f.Prefix, "prefix", "", "only entities whose name starts with `P`")
	fs.StringVar(&kind, "kind", "", "only entities of this `kind`: node, link, process, service, custom")
	fs.StringVar(&state, "state", "", "only entities in this `state`: up or down")
	fs.BoolVar(&f.AlarmedOnly, "alarmed", false, "only entities with at least one active alarm")
	return func(ctx context.Context, e *env, _ []string) error {
		if err := checkKind(kind, false); err != nil {
			return err
		}
		if err := checkState(state); err != nil {
			return err
		}
		f.Kind, f.State = api.Kind(kind), api.State(state)
		return call(ctx, e, func(ctx context.Context, c *client.Client) error {
			es, err := c.List(ctx, f)
			if err != nil {
				return &cmdError{what: "listing entities", err: err}
			}
			sort.Slice(es, func(i, j int) bool { return es[i].Name < es[j].Name })
			if e.json() {
				return writeJSON(e.stdout, es)
			}
			return printEntities(e.stdout, es, time.Now())
		})
	}
}

func setupGet(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env, args []string) error {
		name := args[0]
		return call(ctx, e, func(ctx context.Context, c *client.Client) error {
			en, err := c.Get(ctx, name)
			if err != nil {
				return &cmdError{what: "get " + name, err: err}
			}
			if e.json() {
				return writeJSON(e.stdout, en)
			}
			return printEntity(e.stdout, en, time.Now())
		})
	}
}

// alarmRow is one active alarm with the entity it is on: the element of
// "fmctl alarms -o json".
type alarmRow struct {
	Entity string `json:"entity"`
	api.Alarm
}

// severityRank orders severities, most severe first; unknown ones last.
func severityRank(s api.Severity) int {
	switch s {
	case api.SevCritical:
		return 0
	case api.SevMajor:
		return 1
	case api.SevMinor:
		return 2
	case api.SevWarning:
		return 3
	case api.SevIndeterminate:
		return 4
	}
	return 5
}

// alarmRows flattens the alarms of es, sorted by severity, raised-at,
// entity and cause.
func alarmRows(es []api.Entity) []alarmRow {
	rows := []alarmRow{}
	for _, en := range es {
		for _, a := range en.Alarms {
			a.RaisedAt = a.RaisedAt.UTC()
			rows = append(rows, alarmRow{Entity: en.Name, Alarm: a})
		}
	}
	sortAlarms(rows)
	return rows
}

func sortAlarms(rows []alarmRow) {
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if ra, rb := severityRank(a.Severity), severityRank(b.Severity); ra != rb {
			return ra < rb
		}
		if !a.RaisedAt.Equal(b.RaisedAt) {
			return a.RaisedAt.Before(b.RaisedAt)
		}
		if a.Entity != b.Entity {
			return a.Entity < b.Entity
		}
		return a.Cause < b.Cause
	})
}

func setupAlarms(fs *flag.FlagSet) runFunc {
	var prefix string
	fs.StringVar(&prefix, "prefix", "", "only alarms on entities whose name starts with `P`")
	return func(ctx context.Context, e *env, _ []string) error {
		return call(ctx, e, func(ctx context.Context, c *client.Client) error {
			es, err := c.List(ctx, client.Filter{Prefix: prefix, AlarmedOnly: true})
			if err != nil {
				return &cmdError{what: "listing alarms", err: err}
			}
			rows := alarmRows(es)
			if e.json() {
				return writeJSON(e.stdout, rows)
			}
			return printAlarms(e.stdout, rows, time.Now())
		})
	}
}

// ---- writes ----

func setupRegister(fs *flag.FlagSet) runFunc {
	var kind string
	var process, txn bool
	fs.StringVar(&kind, "kind", "", "entity `kind` (required): node, link, process, service, custom")
	fs.BoolVar(&process, "process", false, "tie the entity to the calling process (fmctl itself: it goes down when fmctl exits)")
	fs.BoolVar(&txn, "txn", false, "apply the change as a cluster transaction")
	return func(ctx context.Context, e *env, args []string) error {
		name := args[0]
		if err := checkKind(kind, true); err != nil {
			return err
		}
		var opts []client.RegisterOption
		if process {
			opts = append(opts, client.AsProcess())
		}
		if txn {
			opts = append(opts, client.Txn())
		}
		return call(ctx, e, func(ctx context.Context, c *client.Client) error {
			en, err := c.Register(ctx, name, api.Kind(kind), opts...)
			if err != nil {
				return &cmdError{what: "register " + name, err: err, write: true}
			}
			if e.json() {
				return writeJSON(e.stdout, en)
			}
			_, err = fmt.Fprintf(e.stdout, "registered %s: %s, owner %d, %s, incarnation %d, seq %d\n",
				en.Name, en.Kind, en.Owner, en.State, en.Incarnation, en.ChangedSeq)
			return err
		})
	}
}

// writeSetup makes a write command on NAME with no flags of its own.
func writeSetup(verb string, do func(ctx context.Context, c *client.Client, name string) (*api.ReportResult, error)) func(*flag.FlagSet) runFunc {
	return func(fs *flag.FlagSet) runFunc {
		return func(ctx context.Context, e *env, args []string) error {
			return write(ctx, e, verb, args[0], func(ctx context.Context, c *client.Client) (*api.ReportResult, error) {
				return do(ctx, c, args[0])
			})
		}
	}
}

func setStateSetup(s api.State) func(*flag.FlagSet) runFunc {
	return writeSetup(string(s), func(ctx context.Context, c *client.Client, name string) (*api.ReportResult, error) {
		return c.SetState(ctx, name, s)
	})
}

// write runs a write that returns a ReportResult and prints it.
func write(ctx context.Context, e *env, verb, name string, do func(ctx context.Context, c *client.Client) (*api.ReportResult, error)) error {
	return call(ctx, e, func(ctx context.Context, c *client.Client) error {
		r, err := do(ctx, c)
		if err != nil {
			return &cmdError{what: verb + " " + name, err: err, write: true}
		}
		if e.json() {
			return writeJSON(e.stdout, r)
		}
		return printResult(e.stdout, verb, name, r)
	})
}

func setupReport(fs *flag.FlagSet) runFunc {
	var cause, sev string
	var txn bool
	fs.StringVar(&cause, "cause", "", "probable `cause` (required), e.g. rpc-timeout")
	fs.StringVar(&sev, "severity", string(api.SevIndeterminate), "`severity`: critical, major, minor, warning, indeterminate")
	fs.BoolVar(&txn, "txn", false, "apply the resulting change as a cluster transaction")
	return func(ctx context.Context, e *env, args []string) error {
		if err := checkCause(cause); err != nil {
			return err
		}
		if err := checkSeverity(sev); err != nil {
			return err
		}
		var opts []client.ReportOption
		if txn {
			opts = append(opts, client.Txn())
		}
		return write(ctx, e, "report", args[0], func(ctx context.Context, c *client.Client) (*api.ReportResult, error) {
			return c.Report(ctx, args[0], cause, api.Severity(sev), opts...)
		})
	}
}

func setupRaise(fs *flag.FlagSet) runFunc {
	var cause, sev string
	fs.StringVar(&cause, "cause", "", "probable `cause` (required), e.g. link-down")
	fs.StringVar(&sev, "severity", string(api.SevIndeterminate), "`severity`: critical, major, minor, warning, indeterminate")
	return func(ctx context.Context, e *env, args []string) error {
		if err := checkCause(cause); err != nil {
			return err
		}
		if err := checkSeverity(sev); err != nil {
			return err
		}
		return write(ctx, e, "raise", args[0], func(ctx context.Context, c *client.Client) (*api.ReportResult, error) {
			return c.Raise(ctx, args[0], cause, api.Severity(sev))
		})
	}
}

func setupClear(fs *flag.FlagSet) runFunc {
	var cause string
	fs.StringVar(&cause, "cause", "", "probable `cause` of the alarm to clear (required)")
	return func(ctx context.Context, e *env, args []string) error {
		if err := checkCause(cause); err != nil {
			return err
		}
		return write(ctx, e, "clear", args[0], func(ctx context.Context, c *client.Client) (*api.ReportResult, error) {
			return c.Clear(ctx, args[0], cause)
		})
	}
}

func setupSwitchover(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env, _ []string) error {
		return call(ctx, e, func(ctx context.Context, c *client.Client) error {
			if err := c.Switchover(ctx); err != nil {
				return &cmdError{what: "switchover", err: err, write: true}
			}
			if e.json() {
				return writeJSON(e.stdout, struct{}{})
			}
			_, err := fmt.Fprintln(e.stdout, "switchover: the master accepted to hand over to the vice-master")
			return err
		})
	}
}

// ---- watch ----

func setupWatch(fs *flag.FlagSet) runFunc {
	var prefix string
	fs.StringVar(&prefix, "prefix", "", "only changes of entities whose name starts with `P`")
	return func(ctx context.Context, e *env, _ []string) error {
		dctx, cancel := e.withTimeout(ctx)
		c, err := e.dial(dctx)
		cancel()
		if err != nil {
			return err
		}
		defer c.Close()
		w, release, err := subscribe(ctx, e, c, prefix)
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
func subscribe(ctx context.Context, e *env, c *client.Client, prefix string) (w *client.Watch, release func(), err error) {
	wctx, cancel := context.WithCancel(ctx)
	var timer *time.Timer
	if e.timeout > 0 {
		timer = time.AfterFunc(e.timeout, cancel)
	}
	w, err = c.Watch(wctx, prefix)
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

// ---- version ----

// versionInfo is "fmctl version -o json".
type versionInfo struct {
	Version  string `json:"version"`  // fmctl's version (version.Version, stamped by the Makefile)
	Commit   string `json:"commit"`   // VCS revision, "" if unknown
	Go       string `json:"go"`       // Go version it was built with
	Platform string `json:"platform"` // GOOS/GOARCH
	Protocol int    `json:"protocol"` // client API protocol version spoken
}

func buildVersion() versionInfo {
	b := version.Get()
	return versionInfo{Version: b.Version, Commit: b.Commit, Go: b.Go, Platform: b.Platform, Protocol: int(api.Version)}
}

func setupVersion(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env, _ []string) error {
		v := buildVersion()
		if e.json() {
			return writeJSON(e.stdout, v)
		}
		commit := ""
		if v.Commit != "" {
			commit = " commit " + v.Commit
		}
		_, err := fmt.Fprintf(e.stdout, "fmctl %s%s (%s %s, client protocol %d)\n",
			v.Version, commit, v.Go, v.Platform, v.Protocol)
		return err
	}
}

// nodeName shows a node ID, "none" for 0.
func nodeName(n wire.NodeID) string {
	if n == 0 {
		return "none"
	}
	return fmt.Sprint(uint32(n))
}

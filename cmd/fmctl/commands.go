package main

import (
	"context"
	"flag"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
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
			name: "members", synopsis: "",
			summary: "list the members: role, links, last heard per network, version",
			help: "Lists every node this agent knows: its incarnation (short form), role (none\n" +
				"when down), state, how this node hears it on each network and when it last\n" +
				"did, its priority, and the fmagent version its heartbeats carry.",
			setup: setupMembers,
		},
		{
			name: "history", synopsis: "[-prefix P] [-n N]",
			summary: "recent transitions and alarm changes on this node, and fail counts",
			help: "Shows the last N entries (default 50) of this node's history: entities\n" +
				"registered, up, down, alarms raised and cleared, the master, epoch and this\n" +
				"node's role, stale and fresh; each with its cursor, time, table seq and the\n" +
				"node whose report made it. Then the fail, flap and raise counts per entity.\n" +
				"Every node keeps its own (bounded) history.",
			setup: setupHistory,
		},
		{
			name: "top", synopsis: "[-n N] [-interval D] [-history H]",
			summary: "live one-screen view: members, links, active alarms, recent history",
			help: "Redraws one screen, like crm_mon: the master, epoch and this node's role,\n" +
				"the members with their roles, links and when last heard, the active alarms\n" +
				"by severity, and this node's recent history. The table is read from the\n" +
				"agent's shared memory and the screen is redrawn as soon as it changes (or\n" +
				"every -interval, default 1s). -n N draws N screens and exits.",
			setup: setupTop,
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
			name: "watch", synopsis: "[-prefix P] [-snapshot] [-from AGENT:CURSOR]",
			summary: "stream table changes, one line each, until interrupted",
			help: "Streams the changes of the entities whose name starts with P (all if none),\n" +
				"one line per change, until Ctrl-C. -timeout bounds only the subscription.\n" +
				"Without -prefix, the master, epoch, role and stale changes too.\n" +
				"-snapshot starts with every matching entity and a sync line; -from resumes\n" +
				"after a sync line's AGENT:CURSOR with what was missed (or a snapshot if the\n" +
				"agent no longer has it). With -o json, one Event object per line (JSON Lines).",
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

// checkRequest refuses, before connecting, what the agent would refuse: the
// request is checked by the api package's own Validate.
func checkRequest(req interface{ Validate() error }) error {
	if err := req.Validate(); err != nil {
		return usagef("%v", err)
	}
	return nil
}

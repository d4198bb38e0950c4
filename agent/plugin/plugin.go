// Package plugin is the master's plugin chain: the code that turns a report
// ("X believes Y is broken", "the owner says its process exited", "the
// master's failure detector lost node 3") into verdicts (raise or clear an
// alarm, mark an entity down or up, blame the reporter instead, ignore).
//
// Only the master runs the chain, and only its verdicts become table changes.
// The package is pure, like the core that calls it: no goroutines, no I/O, no
// clock (the View supplies the time) and no randomness, so a chain decides
// the same way in production and in netsim. A Chain is not safe for
// concurrent use; the core owns it.
//
// Plugins are compiled in, not loaded: a custom build registers its own
// plugins from init() with Register, the way CoreDNS and Caddy do, and the
// configuration names the chain with NewChain. See docs/plugins.md.
package plugin

import (
	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// Source is who a report comes from, which decides how far it is trusted.
type Source uint8

const (
	// SourceClient is a fault client's report: an opinion about someone
	// else's entity. The zero value, so that a report whose source was not
	// set is trusted least.
	SourceClient Source = iota
	// SourceMembership is the master's own failure detector: authoritative
	// about nodes and links.
	SourceMembership
	// SourceOwner is the owner node speaking for its own entity (a process it
	// watched exit, a service it stopped): authoritative about that entity.
	SourceOwner
)

func (s Source) String() string {
	switch s {
	case SourceClient:
		return "client"
	case SourceMembership:
		return "membership"
	case SourceOwner:
		return "owner"
	}
	return "unknown"
}

// Report is one report as the chain sees it. The core fills it from a
// wire.Report (or from its own detector) and resolves Entity from Name when
// only a name was given.
type Report struct {
	From        wire.NodeID // the reporting node
	ID          uint64      // reporter-local ID, echoed in the ack
	Source      Source
	Kind        wire.ReportKind
	Entity      uint64 // the entity the report is about
	Name        string // its name, when known (needed for entities not yet in the table)
	EntityKind  wire.EntityKind
	Severity    wire.Severity
	Cause       string
	Incarnation uint64
	At          int64 // unix nanoseconds, master's clock, when the master took it
	Txn         bool  // the reporter asked for the result as a transaction
}

// VerdictKind is what a verdict asks the core to do.
type VerdictKind uint8

const (
	// Raise alarm Cause with Severity on Entity.
	Raise VerdictKind = 1 + iota
	// Clear alarm Cause on Entity.
	Clear
	// MarkDown Entity. For a node entity the core also marks down everything
	// the node contains (table.Contained), in one change group.
	MarkDown
	// MarkUp Entity.
	MarkUp
	// Blame: raise alarm Cause with Severity on Entity, which is the
	// REPORTER's node entity, instead of acting on what it reported against.
	Blame
	// Ignore: a plugin decided the report calls for nothing. It changes
	// nothing; it tells the core (and its log and counters) that the report
	// was dropped on purpose rather than by falling off the end of the chain.
	Ignore
)

func (k VerdictKind) String() string {
	switch k {
	case Raise:
		return "raise"
	case Clear:
		return "clear"
	case MarkDown:
		return "mark-down"
	case MarkUp:
		return "mark-up"
	case Blame:
		return "blame"
	case Ignore:
		return "ignore"
	}
	return "unknown"
}

// Verdict is one decision of the chain. The core turns each into at most one
// table change (MarkDown of a node into a group), checks it with
// table.Check, and skips it if it would change nothing.
type Verdict struct {
	Kind   VerdictKind
	Entity uint64
	// Name is the entity's name as the report gave it (empty if it gave
	// none): the core needs it to act on an entity not in the table yet,
	// such as a node the detector sees for the first time.
	Name     string
	Cause    string
	Severity wire.Severity
}

// View is the read-only window on the master's state a plugin decides from.
// The core implements it.
type View interface {
	// Entity returns the table row with id (read-only, see table.Table.Get).
	Entity(id uint64) (*table.Entity, bool)
	// Lookup returns the table row named name (read-only).
	Lookup(name string) (*table.Entity, bool)
	// NodeAlive reports whether node n is alive in the master's membership,
	// which may know before the table does.
	NodeAlive(n wire.NodeID) bool
	// Now is the master's current time, unix nanoseconds.
	Now() int64
	// History is the recent report history. Inside Chain.Run plugins always
	// see the chain's own History whatever the implementation returns, so an
	// implementation may simply return the chain's (Chain.History).
	History() *History
}

// Plugin is one link of the chain.
type Plugin interface {
	// Name is the name the plugin is registered under.
	Name() string
	// Decide appends its verdicts for r to out and returns it. pass=true
	// hands r on to the next plugin, keeping what was appended; pass=false
	// ends the chain. Decide must not keep v, r or out, and must be pure:
	// everything it knows comes from v and r (and its own configuration).
	Decide(v View, r *Report, out []Verdict) (verdicts []Verdict, pass bool)
}

// Chain runs plugins in order and keeps the report history they consult.
type Chain struct {
	plugins []Plugin
	hist    *History
	// view is reused by every Run, so that handing plugins a View that serves
	// the chain's history costs no allocation.
	view chainView
}

// chainView is the caller's View with History answered by the chain.
type chainView struct {
	View
	hist *History
}

func (cv *chainView) History() *History { return cv.hist }

// ChainOf builds a chain of plugins, in order, with a History of
// DefaultHistorySize.
func ChainOf(plugins ...Plugin) *Chain {
	return &Chain{plugins: append([]Plugin(nil), plugins...), hist: NewHistory(DefaultHistorySize)}
}

// Plugins returns the plugins in order (a copy).
func (c *Chain) Plugins() []Plugin { return append([]Plugin(nil), c.plugins...) }

// History is the chain's report history.
func (c *Chain) History() *History { return c.hist }

// Run records r in the history (so plugins count it), then runs the plugins
// in order until one does not pass, and returns out with every verdict
// appended on the way. If every plugin passes the result is whatever they
// appended, possibly nothing: the report is ignored. With out preallocated,
// Run itself allocates nothing.
func (c *Chain) Run(v View, r *Report, out []Verdict) []Verdict {
	c.hist.Record(r)
	c.view.View, c.view.hist = v, c.hist
	for _, p := range c.plugins {
		var pass bool
		out, pass = p.Decide(&c.view, r, out)
		if !pass {
			break
		}
	}
	// Do not keep the caller's view alive between reports.
	c.view.View = nil
	return out
}

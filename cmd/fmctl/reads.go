package main

import (
	"context"
	"flag"
	"sort"
	"time"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
)

// The read commands: status, entities, get, alarms.

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
		if err := checkRequest(&api.ListRequest{Kind: api.Kind(kind), State: api.State(state)}); err != nil {
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

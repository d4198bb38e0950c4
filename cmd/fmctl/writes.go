package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
)

// The write commands: register, report, raise, clear, up/down, unregister, switchover.

func setupRegister(fs *flag.FlagSet) runFunc {
	var kind string
	var process, txn bool
	fs.StringVar(&kind, "kind", "", "entity `kind` (required): node, link, process, service, custom")
	fs.BoolVar(&process, "process", false, "tie the entity to the calling process (fmctl itself: it goes down when fmctl exits)")
	fs.BoolVar(&txn, "txn", false, "apply the change as a cluster transaction")
	return func(ctx context.Context, e *env, args []string) error {
		name := args[0]
		if err := checkRequest(&api.RegisterRequest{Name: name, Kind: api.Kind(kind)}); err != nil {
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
		if cause == "" {
			return usagef("-cause is required")
		}
		if err := checkRequest(&api.ReportRequest{Name: args[0], Cause: cause, Severity: api.Severity(sev)}); err != nil {
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
		if err := checkRequest(&api.RaiseRequest{Name: args[0], Cause: cause, Severity: api.Severity(sev)}); err != nil {
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
		if err := checkRequest(&api.ClearRequest{Name: args[0], Cause: cause}); err != nil {
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

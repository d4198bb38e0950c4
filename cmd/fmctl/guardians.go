package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
)

func init() {
	commands = append(commands, &command{
		name: "daemons", synopsis: "",
		summary: "list the daemons this agent supervises: PID, state, restarts, last exit, backoff",
		help: "Lists the daemons of the agent's [[daemons]] configuration, each the entity\n" +
			"node/<id>/proc/<name>: its PID, its state (running, backoff, stopped,\n" +
			"failed, starting), whether it was adopted rather than started, restarts,\n" +
			"the last exit status, the current backoff and, while waiting to restart,\n" +
			"when it restarts. A daemon that hit its restart limit shows failed and,\n" +
			"if critical, ESCALATED.",
		setup: setupDaemons,
	})
}

func setupDaemons(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env, _ []string) error {
		return call(ctx, e, func(ctx context.Context, c *client.Client) error {
			ds, err := c.Daemons(ctx)
			if err != nil {
				return &cmdError{what: "daemons", err: err}
			}
			if e.json() {
				return writeJSON(e.stdout, ds)
			}
			return printDaemons(e.stdout, ds, time.Now())
		})
	}
}

func printDaemons(w io.Writer, ds []api.Daemon, now time.Time) error {
	if len(ds) == 0 {
		_, err := fmt.Fprintln(w, "no daemons configured")
		return err
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tPID\tSTATE\tADOPTED\tRESTARTS\tLAST EXIT\tBACKOFF\tCRITICAL\tENTITY")
	for _, d := range ds {
		pid := "-"
		if d.PID != 0 {
			pid = fmt.Sprint(d.PID)
		}
		state := d.State
		if d.State == "backoff" && !d.NextStart.IsZero() {
			state += " (restart in " + age(max(d.NextStart.Sub(now), 0)) + ")"
		}
		if d.Escalated && d.Critical {
			state += " ESCALATED"
		}
		last := d.LastExit
		if last == "" {
			last = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", d.Name, pid, state, yesNo(d.Adopted), d.Restarts, last,
			(time.Duration(d.BackoffMS) * time.Millisecond).String(), yesNo(d.Critical), d.Entity)
	}
	return tw.Flush()
}

// printWatchdog is the watchdog part of `fmctl status`.
func printWatchdog(w io.Writer, wd *api.WatchdogStatus, now time.Time) error {
	if wd == nil {
		return nil
	}
	fmt.Fprintln(w)
	if !wd.Kicking {
		fmt.Fprintf(w, "WARNING: the watchdog is NOT being kicked: %s\n", wd.Reason)
	}
	tw := newTable(w)
	kicked := "none (loops' health checked only)"
	if len(wd.Watchdogs) > 0 {
		kicked = strings.Join(wd.Watchdogs, ", ")
		if wd.Identity != "" {
			kicked += " (" + wd.Identity + ")"
		}
	}
	fmt.Fprintf(tw, "watchdog:\t%s\n", kicked)
	if wd.TimeoutMS > 0 {
		fmt.Fprintf(tw, "timeout:\t%v (kicked every %v)\n", time.Duration(wd.TimeoutMS)*time.Millisecond, time.Duration(wd.PeriodMS)*time.Millisecond)
	}
	kicking := yesNo(wd.Kicking)
	fmt.Fprintf(tw, "kicking:\t%s\n", kicking)
	if !wd.LastKick.IsZero() {
		fmt.Fprintf(tw, "last kick:\t%s ago (%d kicks)\n", age(now.Sub(wd.LastKick)), wd.Kicks)
	}
	fmt.Fprintf(tw, "boot status:\t%s\n", wd.BootStatus)
	fence := "off"
	if wd.SelfFence {
		fence = "on"
		if wd.Fenced {
			fence += " (FENCED)"
		}
	}
	fmt.Fprintf(tw, "self-fence:\t%s\n", fence)
	var healthy, stalled []string
	for _, l := range wd.Loops {
		if l.Healthy {
			healthy = append(healthy, l.Name)
		} else {
			stalled = append(stalled, fmt.Sprintf("%s (busy %v, last progress %s ago)", l.Name,
				time.Duration(l.BusyMS)*time.Millisecond, age(now.Sub(l.LastProgress))))
		}
	}
	fmt.Fprintf(tw, "loops healthy:\t%s\n", strings.Join(healthy, ", "))
	if len(stalled) > 0 {
		fmt.Fprintf(tw, "loops STALLED:\t%s\n", strings.Join(stalled, "; "))
	}
	return tw.Flush()
}

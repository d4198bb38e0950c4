// Command fmctl is the operator's command-line interface to fmagent: it
// shows the cluster's status, its entities and their alarms, writes to the
// table (register, report, raise, clear, up, down), streams changes, and
// asks for a switchover. It talks to the local agent over its unix socket
// with package client. docs/fmctl.md is the reference, with every command's
// human and JSON output.
//
//	fmctl [-socket PATH] [-o table|json] [-timeout 5s] COMMAND [ARGS]
//
// Exit status: 0 success, 1 failure, 2 bad usage, 3 not found.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
)

// Exit statuses.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitNotFound = 3
)

// Output formats.
const (
	formatTable = "table"
	formatJSON  = "json"
)

// defaultTimeout bounds each request (and the subscription of a watch).
const defaultTimeout = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// env is what a command runs with: the global options and the output.
type env struct {
	stdout, stderr io.Writer
	socket         string
	format         string
	timeout        time.Duration
}

func (e *env) json() bool { return e.format == formatJSON }

// withTimeout bounds ctx by the -timeout flag (0: no bound).
func (e *env) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if e.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, e.timeout)
}

// dial connects to the agent. A failure is reported as one, naming the
// socket path.
func (e *env) dial(ctx context.Context) (*client.Client, error) {
	c, err := client.Dial(ctx, e.socket)
	if err != nil {
		return nil, &cmdError{what: "connecting to the agent at " + e.socket, err: dialError{err}}
	}
	return c, nil
}

// dialError is a failed Dial; its text is the system's reason plus a hint.
type dialError struct{ err error }

func (d dialError) Error() string {
	reason := d.err.Error()
	var op *net.OpError
	if errors.As(d.err, &op) && op.Err != nil {
		reason = op.Err.Error() // e.g. "connect: no such file or directory"
	}
	if errors.Is(d.err, context.DeadlineExceeded) || errors.Is(d.err, context.Canceled) {
		return reason
	}
	return reason + " (is fmagent running? set -socket or $FMAGENT_SOCKET)"
}

func (d dialError) Unwrap() error { return d.err }

// usageError is a command line fmctl cannot run: exit 2, with usage.
type usageError struct{ msg string }

func (u *usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// cmdError is a failed operation: "fmctl: <what>: <err>", exit 1 (3 for
// not found).
type cmdError struct {
	what  string
	err   error
	write bool // a write: on a timeout or a lost connection, its outcome is unknown
}

func (c *cmdError) Error() string { return c.what + ": " + c.err.Error() }
func (c *cmdError) Unwrap() error { return c.err }

// run is fmctl: it parses args (os.Args[1:]), runs the command and returns
// the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{
		stdout:  stdout,
		stderr:  stderr,
		socket:  client.DefaultSocket(),
		format:  formatTable,
		timeout: defaultTimeout,
	}
	gfs := flag.NewFlagSet("fmctl", flag.ContinueOnError)
	gfs.SetOutput(io.Discard)
	gfs.Usage = func() {}
	defineGlobals(gfs, e)
	if err := gfs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			mainUsage(stdout, gfs)
			return exitOK
		}
		fmt.Fprintf(stderr, "fmctl: %v\n", err)
		mainUsage(stderr, gfs)
		return exitUsage
	}
	if err := checkGlobals(e); err != nil {
		fmt.Fprintf(stderr, "fmctl: %v\n", err)
		mainUsage(stderr, gfs)
		return exitUsage
	}
	rest := gfs.Args()
	if len(rest) == 0 {
		fmt.Fprintln(stderr, "fmctl: no command given")
		mainUsage(stderr, gfs)
		return exitUsage
	}
	name, rest := rest[0], rest[1:]
	if name == "help" {
		return help(stdout, stderr, gfs, rest)
	}
	cmd := lookup(name)
	if cmd == nil {
		fmt.Fprintf(stderr, "fmctl: unknown command %q\n", name)
		mainUsage(stderr, gfs)
		return exitUsage
	}

	fs := flag.NewFlagSet("fmctl "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	runCmd := cmd.setup(fs)
	// The global flags may also follow the command: "fmctl ls -o json".
	defineGlobals(fs, e)
	pos, err := parseInterspersed(fs, rest)
	if err == nil {
		err = checkGlobals(e)
	}
	if err == nil {
		err = cmd.checkArgs(pos)
	}
	if err == nil {
		err = runCmd(ctx, e, pos)
	}
	return report(e, cmd, fs, err)
}

// report prints err as fmctl's outcome and returns the exit status.
func report(e *env, cmd *command, fs *flag.FlagSet, err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		cmdUsage(e.stdout, cmd, fs)
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "fmctl %s: %v\n", cmd.name, ue)
		cmdUsage(e.stderr, cmd, fs)
		return exitUsage
	}
	fmt.Fprintf(e.stderr, "fmctl: %s\n", describe(err, e.timeout))
	if errors.Is(err, api.ErrNotFound) {
		return exitNotFound
	}
	return exitFailure
}

// globalNames are the flags accepted before (and after) any command.
var globalNames = map[string]bool{"socket": true, "o": true, "timeout": true}

// defineGlobals defines the global flags on fs, with e's current values as
// defaults (so that a flag given before the command survives its
// definition on the command's flag set).
func defineGlobals(fs *flag.FlagSet, e *env) {
	fs.StringVar(&e.socket, "socket", e.socket, "agent's unix socket `path`; the default is $FMAGENT_SOCKET if set, else /run/fmagent/fmagent.sock, or $XDG_RUNTIME_DIR/fmagent/fmagent.sock or /tmp/fmagent-<uid>/fmagent.sock if only that exists")
	fs.StringVar(&e.format, "o", e.format, "output `format`: table or json")
	fs.DurationVar(&e.timeout, "timeout", e.timeout, "bound on each request, e.g. 500ms, 10s; 0 for none")
}

func checkGlobals(e *env) error {
	switch e.format {
	case formatTable, formatJSON:
	default:
		return usagef("-o %q: want table or json", e.format)
	}
	if e.timeout < 0 {
		return usagef("-timeout %v: must not be negative", e.timeout)
	}
	if e.socket == "" {
		return usagef("-socket: empty path")
	}
	return nil
}

// parseInterspersed parses fs's flags wherever they appear among args and
// returns the positional arguments: "register NAME -kind node" works as
// well as "register -kind node NAME". After "--" everything is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// clientPrefix is how package client starts its error messages.
var clientPrefix = regexp.MustCompile(`^fmagent(?: [a-z_]+)?: `)

// describe is the text of a failed command, after "fmctl: ".
func describe(err error, timeout time.Duration) string {
	var ce *cmdError
	if !errors.As(err, &ce) {
		return err.Error()
	}
	return ce.what + ": " + reason(ce.err, ce.write, timeout)
}

// reason is why an operation failed, in an operator's words.
func reason(err error, write bool, timeout time.Duration) string {
	unknown := ""
	if write {
		unknown = " (the outcome of the write is unknown)"
	}
	var de dialError
	var ae *api.Error
	switch {
	case errors.As(err, &de):
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Sprintf("no answer within %v (-timeout)", timeout)
		}
		return de.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer from the agent within %v (-timeout)%s", timeout, unknown)
	case errors.Is(err, context.Canceled):
		return "interrupted" + unknown
	case errors.As(err, &ae) && ae != api.ErrUnavailable:
		// An error from the agent: its message says it all.
		switch ae.Code {
		case api.CodeUnavailable:
			// The agent is shutting down; its message may be as terse
			// as "context canceled".
			return "the agent is unavailable (shutting down?): " + ae.Error() + unknown
		case api.CodeTimeout:
			return ae.Error() + unknown
		}
		return ae.Error()
	}
	// A client-side error, e.g. "fmagent get: connection to the agent lost
	// (EOF): unavailable".
	msg := clientPrefix.ReplaceAllString(err.Error(), "")
	if errors.Is(err, api.ErrUnavailable) {
		msg = strings.TrimSuffix(msg, ": "+api.ErrUnavailable.Error()) + unknown
	}
	return msg
}

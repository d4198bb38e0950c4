package agent

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/trace"
	"slices"
	"strings"
	"time"

	"github.com/fmagent/fmagent/config"
)

// lateTracer keeps Go's flight recorder running and writes what it holds
// to a file when the real-time loop ticks late enough ([realtime]
// trace_dir): the seconds before the late tick, every goroutine, thread and
// stop-the-world of the agent in them, for `go tool trace`. It is what
// names the thread a stop-the-world waited for, or what a yield ran,
// where the late tick's cause (lateTick.cause) only says which part of the
// loop's wake-up the time went to. The lateLogger's goroutine owns it.
type lateTracer struct {
	dir   string
	min   time.Duration // a late tick this late or later is traced
	every time.Duration // at most one file this often
	keep  int           // the newest files kept
	fr    *trace.FlightRecorder
	last  time.Time // when the last file was written
}

// The flight recorder's window: the late logger takes the late ticks once
// a second, so a window of several seconds still holds the late tick when
// it is written. traceMaxBytes bounds the window under load (it then
// holds less time).
const (
	traceWindow   = 5 * time.Second
	traceMaxBytes = 32 << 20
)

// Trace files are named traceFilePrefix + UTC time + traceFileSuffix, so
// that their names sort as their times; only such files are pruned.
const (
	traceFilePrefix = "late-"
	traceFileSuffix = ".trace"
	traceTimeLayout = "20060102T150405.000Z"
)

// startLateTracer creates dir (0700) and starts the flight recorder.
func startLateTracer(dir string, minLate time.Duration) (*lateTracer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("realtime.trace_dir: %w", err)
	}
	fr := trace.NewFlightRecorder(trace.FlightRecorderConfig{MinAge: traceWindow, MaxBytes: traceMaxBytes})
	if err := fr.Start(); err != nil {
		return nil, fmt.Errorf("realtime.trace_dir: starting Go's flight recorder: %w", err)
	}
	return &lateTracer{dir: dir, min: minLate, every: config.TraceEvery, keep: config.TraceKeep, fr: fr}, nil
}

// stop stops the flight recorder.
func (t *lateTracer) stop() { t.fr.Stop() }

// due reports whether a late tick worst late, seen at now, is to be traced.
func (t *lateTracer) due(now time.Time, worst time.Duration) bool {
	return worst >= t.min && (t.last.IsZero() || now.Sub(t.last) >= t.every)
}

// write writes the recorder's window to a new file (written under a
// temporary name, then renamed: a file with the final name is whole),
// prunes the oldest files beyond keep, and returns the file's path.
func (t *lateTracer) write(now time.Time) (string, error) {
	t.last = now
	name := filepath.Join(t.dir, traceFilePrefix+now.UTC().Format(traceTimeLayout)+traceFileSuffix)
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	w := bufio.NewWriterSize(f, 1<<16)
	_, err = t.fr.WriteTo(w)
	err = errors.Join(err, w.Flush(), f.Close())
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("writing the execution trace %s: %w", name, err)
	}
	if err := pruneTraces(t.dir, t.keep); err != nil {
		return name, fmt.Errorf("removing old execution traces: %w", err)
	}
	return name, nil
}

// pruneTraces removes the oldest trace files in dir beyond the keep
// newest (by name, which is by time); other files are left alone.
func pruneTraces(dir string, keep int) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range ents {
		if n := e.Name(); e.Type().IsRegular() && strings.HasPrefix(n, traceFilePrefix) && strings.HasSuffix(n, traceFileSuffix) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var errs []error
	for len(names) > keep {
		if err := os.Remove(filepath.Join(dir, names[0])); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		names = names[1:]
	}
	return errors.Join(errs...)
}

// lateTraceMsg is the log message of a trace written. It does not start
// as lateTickMsg does: readers of the log (soak) take those for late ticks.
const lateTraceMsg = "execution trace of the real-time loop's late tick written: the seconds before it; read it with `go tool trace FILE`"

// traceLate writes the flight recorder's window if the worst of the late
// ticks a pass of the late logger took is due (lateTracer.due), and logs
// where. The late logger calls it after logging the ticks.
func (a *agent) traceLate(now time.Time, ticks []lateTick) {
	t := a.lateTrace
	if t == nil || len(ticks) == 0 {
		return
	}
	var worst time.Duration
	for i := range ticks {
		worst = max(worst, ticks[i].late)
	}
	if !t.due(now, worst) {
		return
	}
	name, err := t.write(now)
	if name != "" {
		a.log.Warn(lateTraceMsg,
			"file", name, "worst_late", worst)
	}
	if err != nil {
		a.log.Error("real-time loop late: execution trace", "err", err)
	}
}

// Package daemon is the agent's daemon monitor: it starts the configured
// daemons ([[daemons]]) or adopts running ones, sees each exit at once
// through a pidfd (package procwatch, no polling), restarts by policy with
// exponential backoff and a limit over a window, and tells the agent what
// happened as Events, which the agent turns into the owner's reports on the
// entity node/<node>/proc/<name> (down, up, a critical alarm) and into the
// configured escalation.
//
// # Surviving an agent restart
//
// Daemons are not the agent's to kill: they run in their own session, and
// an agent that stops (or crashes) leaves them running. Their PID and
// process start time are saved in the state directory; the next agent
// adopts each one whose PID still names the process that was started (a
// reused PID has another start time) instead of starting a second copy.
// Their output goes to a FIFO in the state directory that the daemon holds
// open for reading and writing: with no agent reading, a write never gets
// SIGPIPE (it blocks once the pipe's 64 KiB are full), and the next agent
// opens the same FIFO and logs on.
package daemon

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/procwatch"
)

// EventKind is what happened to a daemon.
type EventKind int

// Event kinds.
const (
	// Up: the daemon runs (started, restarted or adopted).
	Up EventKind = iota + 1
	// Down: the daemon is not running (it exited, or could not be started
	// or adopted).
	Down
	// LimitHit: the restart limit was hit; no more restarts. The agent
	// raises a critical alarm and, for a critical daemon, escalates.
	LimitHit
	// Removed: the daemon left the configuration (Reconfigure) and is no
	// longer supervised; one the agent started has been stopped. The agent
	// unregisters its entity.
	Removed
)

func (k EventKind) String() string {
	switch k {
	case Up:
		return "up"
	case Down:
		return "down"
	case LimitHit:
		return "limit-hit"
	case Removed:
		return "removed"
	}
	return "unknown"
}

// Event is one change, delivered in order on Events.
type Event struct {
	Kind     EventKind
	Name     string
	Entity   string // node/<node>/proc/<name>
	PID      int32
	Adopted  bool
	Exit     string // Down: the exit status ("exit 1", "signal killed", "unknown")
	Failed   bool   // Down: not a clean exit 0
	Critical bool
	Escalate string // LimitHit: config.Escalate*
	At       time.Time
}

// States of a daemon.
const (
	StateStarting = "starting"
	StateRunning  = "running"
	StateBackoff  = "backoff"
	StateStopped  = "stopped"
	StateFailed   = "failed"
)

// EntityName is the entity of daemon name on node.
func EntityName(node uint32, name string) string {
	return fmt.Sprintf("node/%d/proc/%s", node, name)
}

type daemon struct {
	spec      config.Daemon
	entity    string
	key       uint64
	state     string
	pid       int32
	ticks     uint64
	cmd       *exec.Cmd // nil when adopted
	adopted   bool
	window    []time.Time // restarts within the window
	restarts  int
	lastExit  string
	backoff   time.Duration
	nextStart time.Time
	timer     *time.Timer
	escalated bool
	out       *os.File // the FIFO, our reading end
	removing  bool     // left the configuration: stopping, not restarted
	kill      *time.Timer
}

// Supervisor supervises the configured daemons of one node.
type Supervisor struct {
	node  uint32
	dir   string
	log   *slog.Logger
	pw    *procwatch.Watcher
	evq   chan Event
	mu    sync.Mutex
	ds    []*daemon
	byKey map[uint64]*daemon
	gen   uint64
	done  bool
	wg    sync.WaitGroup
	// StartProcess starts a daemon's process (nil: exec.Cmd.Start). Set
	// before Start. A real-time agent passes transport.StartNormal, so no
	// daemon inherits its threads' scheduling.
	StartProcess func(*exec.Cmd) error
}

// ErrClosed is returned by Start after Close.
var ErrClosed = errors.New("daemon: supervisor closed")

// New prepares a supervisor for specs (defaults applied, validated) on
// node, keeping its state under stateDir/daemons. Start starts it.
func New(node uint32, specs []config.Daemon, stateDir string, log *slog.Logger) (*Supervisor, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Join(stateDir, "daemons")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	pw, err := procwatch.New()
	if err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	s := &Supervisor{node: node, dir: dir, log: log, pw: pw, evq: make(chan Event, 4096), byKey: make(map[uint64]*daemon)}
	for _, sp := range specs {
		s.ds = append(s.ds, &daemon{spec: sp, entity: EntityName(node, sp.Name), state: StateStarting, backoff: sp.Backoff})
	}
	return s, nil
}

// Events delivers what happens, in order. Never closed; stop reading after
// Close.
func (s *Supervisor) Events() <-chan Event { return s.evq }

// saved is what the state file keeps of a running daemon.
type saved struct {
	PID     int32  `json:"pid"`
	Ticks   uint64 `json:"start_ticks"`
	Command string `json:"command"`
	Started bool   `json:"started"` // we started it (its output is our FIFO)
}

func (s *Supervisor) stateFile() string { return filepath.Join(s.dir, "state.json") }

func (s *Supervisor) load() map[string]saved {
	m := map[string]saved{}
	b, err := os.ReadFile(s.stateFile())
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("daemon state not readable: adopting nothing", "file", s.stateFile(), "err", err)
		}
		return m
	}
	if err := json.Unmarshal(b, &m); err != nil {
		s.log.Warn("daemon state malformed: adopting nothing", "file", s.stateFile(), "err", err)
		return map[string]saved{}
	}
	return m
}

// saveLocked writes the running daemons' PIDs and start times (temporary
// file, fsync, rename).
func (s *Supervisor) saveLocked() {
	m := map[string]saved{}
	for _, d := range s.ds {
		if d.pid != 0 {
			m[d.spec.Name] = saved{PID: d.pid, Ticks: d.ticks, Command: d.spec.Command, Started: d.cmd != nil || d.adopted && d.out != nil}
		}
	}
	b, _ := json.Marshal(m)
	tmp := s.stateFile() + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err == nil {
		_, err = f.Write(b)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = os.Rename(tmp, s.stateFile())
	}
	if err != nil {
		s.log.Error("saving daemon state", "file", s.stateFile(), "err", err)
	}
}

// Start adopts or starts every daemon and begins watching them.
func (s *Supervisor) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return ErrClosed
	}
	prev := s.load()
	s.wg.Add(1)
	go s.exits()
	for _, d := range s.ds {
		s.bringUpLocked(d, prev)
	}
	s.saveLocked()
	return nil
}

// bringUpLocked adopts d (from the state file's record prev, then its
// pidfile) or starts it.
func (s *Supervisor) bringUpLocked(d *daemon, prev map[string]saved) {
	if p, ok := prev[d.spec.Name]; ok && s.adoptLocked(d, p.PID, p.Ticks, "state file") {
		if p.Started {
			s.openOutputLocked(d)
		}
		return
	}
	if d.spec.PidFile != "" {
		pid, ticks, err := ReadPidFile(d.spec.PidFile)
		if err == nil && s.adoptLocked(d, int32(pid), ticks, d.spec.PidFile) {
			return
		}
		if err != nil {
			s.log.Info("daemon not adopted from its pidfile", "daemon", d.spec.Name, "err", err)
		}
	}
	if d.spec.Command == "" {
		d.state, d.lastExit = StateStopped, "not running"
		s.emitLocked(Event{Kind: Down, Name: d.spec.Name, Exit: d.lastExit, Failed: true})
		return
	}
	if err := s.startLocked(d); err != nil {
		s.exitedLocked(d, "start failed: "+err.Error(), true)
	}
}

func (s *Supervisor) nextKey() uint64 {
	s.gen++
	return s.gen
}

// adoptLocked watches pid as d if it still is the process started at
// ticks. The pidfd is opened first and the start time checked after, so
// the process checked is the one watched.
func (s *Supervisor) adoptLocked(d *daemon, pid int32, ticks uint64, from string) bool {
	key := s.nextKey()
	if err := s.pw.Watch(pid, key); err != nil {
		s.log.Warn("daemon not adopted", "daemon", d.spec.Name, "pid", pid, "err", err)
		return false
	}
	now, err := StartTicks(int(pid))
	if err != nil || now != ticks {
		s.pw.Unwatch(key)
		s.log.Info("daemon not adopted: its PID now names another process (or none)", "daemon", d.spec.Name, "pid", pid, "from", from)
		return false
	}
	d.key, d.pid, d.ticks, d.cmd, d.adopted, d.state = key, pid, ticks, nil, true, StateRunning
	s.byKey[key] = d
	s.log.Info("daemon adopted", "daemon", d.spec.Name, "pid", pid, "from", from)
	s.emitLocked(Event{Kind: Up, Name: d.spec.Name, PID: pid, Adopted: true})
	return true
}

func (s *Supervisor) fifoPath(d *daemon) string { return filepath.Join(s.dir, d.spec.Name+".out") }

// openOutputLocked opens d's FIFO for reading (once) and logs what comes
// out of it, line by line.
func (s *Supervisor) openOutputLocked(d *daemon) error {
	if d.out != nil {
		return nil
	}
	p := s.fifoPath(d)
	if err := unix.Mkfifo(p, 0o600); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("daemon: output FIFO: %w", err)
	}
	// O_RDWR: the open does not wait for a writer, and reads never see
	// EOF between two daemons' lifetimes.
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("daemon: output FIFO: %w", err)
	}
	d.out = f
	log := s.log.With("daemon", d.spec.Name)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		r := bufio.NewReaderSize(f, 64<<10)
		for {
			line, err := r.ReadSlice('\n')
			if len(line) > 0 {
				if line[len(line)-1] == '\n' {
					line = line[:len(line)-1]
				}
				log.Info(string(line))
			}
			if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				return // closed
			}
		}
	}()
	return nil
}

// credential resolves user and group.
func credential(sp *config.Daemon) (*syscall.Credential, error) {
	if sp.User == "" && sp.Group == "" {
		return nil, nil
	}
	c := &syscall.Credential{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid()), Groups: []uint32{}}
	if sp.User != "" {
		u, err := user.Lookup(sp.User)
		if err != nil {
			if _, nerr := strconv.Atoi(sp.User); nerr == nil {
				u, err = user.LookupId(sp.User)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("user %q: %w", sp.User, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.Uid, c.Gid = uint32(uid), uint32(gid)
	}
	if sp.Group != "" {
		g, err := user.LookupGroup(sp.Group)
		if err != nil {
			if _, nerr := strconv.Atoi(sp.Group); nerr == nil {
				g, err = user.LookupGroupId(sp.Group)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("group %q: %w", sp.Group, err)
		}
		gid, _ := strconv.Atoi(g.Gid)
		c.Gid = uint32(gid)
	}
	return c, nil
}

// startLocked starts d's command.
func (s *Supervisor) startLocked(d *daemon) error {
	sp := &d.spec
	cred, err := credential(sp)
	if err != nil {
		return err
	}
	if err := s.openOutputLocked(d); err != nil {
		return err
	}
	// The daemon's own end, read-write: see the package doc.
	w, err := os.OpenFile(s.fifoPath(d), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("output FIFO: %w", err)
	}
	defer w.Close()
	cmd := &exec.Cmd{
		Path:   sp.Command,
		Args:   append([]string{sp.Command}, sp.Args...),
		Env:    append(os.Environ(), sp.Env...),
		Dir:    sp.WorkDir,
		Stdout: w,
		Stderr: w,
		// Its own session: the agent's process group and terminal signals
		// are not the daemon's, and it outlives the agent.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true, Credential: cred},
	}
	start := s.StartProcess
	if start == nil {
		start = (*exec.Cmd).Start
	}
	if err := start(cmd); err != nil {
		return err
	}
	pid := int32(cmd.Process.Pid)
	// Unreaped until we Wait, so the PID cannot be reused before the
	// watch and the start-time read.
	ticks, err := StartTicks(int(pid))
	if err != nil && !errors.Is(err, ErrNoProcess) {
		s.log.Warn("daemon start time unknown", "daemon", sp.Name, "err", err)
	}
	key := s.nextKey()
	if err := s.pw.Watch(pid, key); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return err
	}
	d.key, d.pid, d.ticks, d.cmd, d.adopted, d.state = key, pid, ticks, cmd, false, StateRunning
	d.nextStart = time.Time{}
	s.byKey[key] = d
	s.log.Info("daemon started", "daemon", sp.Name, "pid", pid, "command", sp.Command)
	s.emitLocked(Event{Kind: Up, Name: sp.Name, PID: pid})
	return nil
}

func (s *Supervisor) emitLocked(e Event) {
	d := s.find(e.Name)
	e.Entity, e.Critical, e.At = d.entity, d.spec.Critical, time.Now()
	select {
	case s.evq <- e:
	default:
		s.log.Error("daemon events not consumed: one dropped", "daemon", e.Name, "event", e.Kind.String())
	}
}

func (s *Supervisor) find(name string) *daemon {
	for _, d := range s.ds {
		if d.spec.Name == name {
			return d
		}
	}
	return nil
}

// exits turns pidfd exits into Down events and restarts.
func (s *Supervisor) exits() {
	defer s.wg.Done()
	for ex := range s.pw.Events() {
		s.mu.Lock()
		d, ok := s.byKey[ex.Key]
		if !ok || s.done {
			s.mu.Unlock()
			continue
		}
		delete(s.byKey, ex.Key)
		status, failed := "unknown", true
		if d.cmd != nil {
			err := d.cmd.Wait() // it has exited: reaps at once
			status, failed = exitStatus(d.cmd.ProcessState, err)
		}
		if d.removing {
			s.log.Info("daemon stopped: it left the configuration", "daemon", d.spec.Name, "pid", d.pid, "status", status)
			d.lastExit = status
			s.removeLocked(d)
			s.mu.Unlock()
			continue
		}
		s.log.Warn("daemon exited", "daemon", d.spec.Name, "pid", d.pid, "status", status)
		s.exitedLocked(d, status, failed)
		s.saveLocked()
		s.mu.Unlock()
	}
}

func exitStatus(ps *os.ProcessState, err error) (string, bool) {
	if ps == nil {
		return "unknown: " + fmt.Sprint(err), true
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "signal " + ws.Signal().String(), true
	}
	return "exit " + strconv.Itoa(ps.ExitCode()), ps.ExitCode() != 0
}

// exitedLocked records an exit (or a failed start) and applies the restart
// policy.
func (s *Supervisor) exitedLocked(d *daemon, status string, failed bool) {
	d.pid, d.ticks, d.cmd, d.adopted = 0, 0, nil, false
	d.lastExit = status
	s.emitLocked(Event{Kind: Down, Name: d.spec.Name, Exit: status, Failed: failed})
	sp := &d.spec
	if sp.Command == "" || sp.Restart == config.RestartNever || sp.Restart == config.RestartOnFailure && !failed {
		d.state = StateStopped
		return
	}
	now := time.Now()
	w := d.window[:0]
	for _, t := range d.window {
		if now.Sub(t) < sp.Window {
			w = append(w, t)
		}
	}
	d.window = w
	if len(d.window) >= sp.Limit {
		d.state, d.escalated = StateFailed, true
		d.nextStart = time.Time{}
		s.log.Error("daemon restart limit hit: no more restarts", "daemon", sp.Name, "limit", sp.Limit, "window", sp.Window,
			"critical", sp.Critical, "escalate", sp.Escalate)
		s.emitLocked(Event{Kind: LimitHit, Name: sp.Name, Escalate: sp.Escalate})
		return
	}
	// Exponential: backoff × 2^(restarts within the window), capped.
	b := sp.Backoff
	for i := 0; i < len(d.window) && b < sp.BackoffMax; i++ {
		b *= 2
	}
	b = min(b, sp.BackoffMax)
	d.backoff, d.state, d.nextStart = b, StateBackoff, now.Add(b)
	s.log.Info("daemon restarts after a backoff", "daemon", sp.Name, "backoff", b, "restarts_in_window", len(d.window))
	d.timer = time.AfterFunc(b, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.done || d.state != StateBackoff {
			return
		}
		d.window = append(d.window, time.Now())
		d.restarts++
		if err := s.startLocked(d); err != nil {
			s.log.Error("daemon restart failed", "daemon", sp.Name, "err", err)
			s.exitedLocked(d, "start failed: "+err.Error(), true)
		}
		s.saveLocked()
	})
}

// StopTimeout is how long a daemon that left the configuration has after
// SIGTERM before it gets SIGKILL.
var StopTimeout = 10 * time.Second

// Reconfigured says what Reconfigure changed, by daemon name.
type Reconfigured struct {
	Added, Removed, Changed []string
	// NextStart: changed in how it is started (command, arguments,
	// environment, user, group, directory); a running daemon keeps running
	// as it was started, and the change applies when it next starts.
	NextStart []string
}

// Reconfigure applies a new list of daemons (defaults applied, validated),
// as a SIGHUP does:
//   - a daemon new to the list is adopted or started, as at Start;
//   - a daemon gone from the list is no longer supervised: one this agent
//     started (its output is ours) is stopped, SIGTERM to its process group
//     and SIGKILL after StopTimeout; one only adopted is left running. Its
//     Removed event comes once it is stopped (or at once);
//   - a daemon whose settings changed keeps running; its restart policy,
//     backoff, limit and escalation apply from its next exit, and how it is
//     started from its next start.
//
// Nothing that runs is restarted: a reload must not take a service down.
func (s *Supervisor) Reconfigure(specs []config.Daemon) (Reconfigured, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var r Reconfigured
	if s.done {
		return r, ErrClosed
	}
	want := make(map[string]bool, len(specs))
	var kept []*daemon
	for _, sp := range specs {
		want[sp.Name] = true
		d := s.find(sp.Name)
		if d != nil && d.removing {
			// Back in the list while stopping: it finishes stopping and
			// is started again once gone (below, on the next reload).
			// Rare; keep it simple and say so.
			s.log.Warn("daemon is back in the configuration while it is being stopped: it is not restarted until the next reload", "daemon", sp.Name)
			continue
		}
		if d == nil {
			d = &daemon{spec: sp, entity: EntityName(s.node, sp.Name), state: StateStarting, backoff: sp.Backoff}
			s.ds = append(s.ds, d)
			s.bringUpLocked(d, nil)
			r.Added = append(r.Added, sp.Name)
			kept = append(kept, d)
			continue
		}
		kept = append(kept, d)
		if specEqual(d.spec, sp) {
			continue
		}
		r.Changed = append(r.Changed, sp.Name)
		if !startEqual(d.spec, sp) && d.pid != 0 {
			r.NextStart = append(r.NextStart, sp.Name)
		}
		d.spec = sp
	}
	for _, d := range slices.Clone(s.ds) { // stopLocked may remove from s.ds
		if want[d.spec.Name] || d.removing {
			continue
		}
		r.Removed = append(r.Removed, d.spec.Name)
		s.stopLocked(d)
	}
	// Status lists the configuration's order, then what is still stopping.
	for _, d := range s.ds {
		if d.removing {
			kept = append(kept, d)
		}
	}
	s.ds = kept
	s.saveLocked()
	return r, nil
}

// stopLocked stops supervising d, which left the configuration.
func (s *Supervisor) stopLocked(d *daemon) {
	d.removing = true
	if d.timer != nil {
		d.timer.Stop()
	}
	ours := d.cmd != nil || d.adopted && d.out != nil
	if d.pid == 0 || !ours {
		if d.pid != 0 {
			s.pw.Unwatch(d.key)
			delete(s.byKey, d.key)
			s.log.Info("daemon no longer supervised (it left the configuration); it was adopted, not started here: left running", "daemon", d.spec.Name, "pid", d.pid)
		}
		s.removeLocked(d)
		return
	}
	// Its own session (startLocked): the process group is its PID.
	s.log.Info("daemon left the configuration: stopping it", "daemon", d.spec.Name, "pid", d.pid, "kill_after", StopTimeout)
	signalGroup(d.pid, syscall.SIGTERM)
	pid := d.pid
	d.kill = time.AfterFunc(StopTimeout, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if d.pid == pid && d.removing {
			s.log.Warn("daemon did not stop within the timeout: SIGKILL", "daemon", d.spec.Name, "pid", pid, "timeout", StopTimeout)
			signalGroup(pid, syscall.SIGKILL)
		}
	})
}

// signalGroup signals pid's process group, or pid alone if it has none of
// its own.
func signalGroup(pid int32, sig syscall.Signal) {
	if err := syscall.Kill(-int(pid), sig); err != nil {
		syscall.Kill(int(pid), sig)
	}
}

// removeLocked forgets d: its Removed event, its output reader and FIFO.
func (s *Supervisor) removeLocked(d *daemon) {
	if d.kill != nil {
		d.kill.Stop()
	}
	s.emitLocked(Event{Kind: Removed, Name: d.spec.Name, Exit: d.lastExit})
	d.pid, d.ticks, d.cmd, d.state = 0, 0, nil, StateStopped
	if d.out != nil {
		d.out.Close() // ends its reader
		d.out = nil
	}
	os.Remove(s.fifoPath(d))
	for i, x := range s.ds {
		if x == d {
			s.ds = append(s.ds[:i], s.ds[i+1:]...)
			break
		}
	}
	s.saveLocked()
}

// specEqual: a and b are the same settings.
func specEqual(a, b config.Daemon) bool {
	return startEqual(a, b) && a.PidFile == b.PidFile && a.Restart == b.Restart && a.Backoff == b.Backoff &&
		a.BackoffMax == b.BackoffMax && a.Limit == b.Limit && a.Window == b.Window && a.Critical == b.Critical && a.Escalate == b.Escalate
}

// startEqual: a and b start the same process.
func startEqual(a, b config.Daemon) bool {
	return a.Command == b.Command && slices.Equal(a.Args, b.Args) && slices.Equal(a.Env, b.Env) &&
		a.User == b.User && a.Group == b.Group && a.WorkDir == b.WorkDir
}

// Status lists every daemon.
func (s *Supervisor) Status() []api.Daemon {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]api.Daemon, 0, len(s.ds))
	for _, d := range s.ds {
		x := api.Daemon{
			Name: d.spec.Name, Entity: d.entity, State: d.state, PID: d.pid, Adopted: d.adopted,
			Restarts: d.restarts, LastExit: d.lastExit, Critical: d.spec.Critical, Escalated: d.escalated,
			BackoffMS: d.backoff.Milliseconds(),
		}
		if d.state == StateBackoff {
			x.NextStart = d.nextStart
		}
		out = append(out, x)
	}
	return out
}

// Close stops supervising: no more restarts, no more events. The daemons
// keep running (the next agent adopts them); their state is saved.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return nil
	}
	s.done = true
	for _, d := range s.ds {
		if d.timer != nil {
			d.timer.Stop()
		}
		if d.kill != nil {
			d.kill.Stop()
		}
	}
	s.saveLocked()
	s.mu.Unlock()
	s.pw.Close() // ends exits()
	s.mu.Lock()
	for _, d := range s.ds {
		if d.out != nil {
			d.out.Close() // ends its reader
			d.out = nil
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	// Children we started and that are still running are not waited for:
	// they outlive us. Release their os.Process handles.
	s.mu.Lock()
	for _, d := range s.ds {
		if d.cmd != nil && d.cmd.Process != nil {
			d.cmd.Process.Release()
		}
	}
	s.mu.Unlock()
	return nil
}

package bench

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/fmagent/fmagent/transport"
	"github.com/fmagent/fmagent/wire"
)

// The idle floors. An idle agent's CPU is mostly what one tick of its
// real-time loop costs, every interval: a wake-up, the heartbeats read, one
// heartbeat sent per network, and every floorDropsEvery the drop counters.
// Two kinds of process do exactly that and nothing else, N of them on their
// own groups, measured over the same window and in the same way as the
// agents, right after them:
//
//   - the Go floor: this program again (helper "heartbeat"), with the
//     agent's transport, waiter and real-time thread set up as the agent
//     sets them up (SCHED_FIFO, memory locked, the other threads at nice
//     -20, the wait keeping its P, a yield every 5 ms): the agent without
//     its protocol;
//   - the C floor (csrc/hbloop.c, compiled here with the system's C compiler):
//     the same system calls from one C thread, without Go's scheduler.
//
// The agent over the Go floor is what its protocol costs; the Go floor
// over the C floor is what Go's scheduler costs a loop that must wake at
// every interval.

//go:embed csrc/hbloop.c
var hbloopSource []byte

const (
	helperHeartbeat   = "heartbeat"
	helperIntervalEnv = "FMAGENT_BENCH_INTERVAL" // a time.Duration
	// floorHeartbeatSize is the floors' heartbeat datagram; the agents'
	// are of the same order (a header and the membership view).
	floorHeartbeatSize = 128
	// floorYieldEvery is the agent's yieldEvery (agent/rtloop.go).
	floorYieldEvery = 5 * time.Millisecond
	// floorDropsEvery is the agent's dropsEvery (agent/rtloop.go): how
	// often an idle agent, no peer near its judgement, reads the six
	// sockets' drop counters (csrc/hbloop.c: DROPS_EVERY_NS).
	floorDropsEvery = 100 * time.Millisecond
)

// IdleFloors is the floors' CPU over an idle window, each the mean over
// their N processes (0: not measured), and the heartbeats each process
// received and sent per second over its life (the agents' datagrams/s).
type IdleFloors struct {
	GoCPU float64 `json:"go_cpu_fraction,omitempty"`
	CCPU  float64 `json:"c_cpu_fraction,omitempty"`
	GoPPS float64 `json:"go_packets_per_second,omitempty"`
	CPPS  float64 `json:"c_packets_per_second,omitempty"`
	// CNote says why the C floor was not measured.
	CNote string `json:"c_note,omitempty"`
}

// floorNets are the two networks of a floor's processes on lo: a fresh
// pair of groups (a, and b one above in the third byte) and port.
func floorNets() (a, b netip.Addr, port int) {
	x, y := byte(20+rand.IntN(200)), byte(1+rand.IntN(250))
	return netip.AddrFrom4([4]byte{239, 255, x, y}), netip.AddrFrom4([4]byte{239, 255, x + 1, y}), 40000 + 2*rand.IntN(10000)
}

// heartbeatMain is the Go floor's process: it says "ready" once its
// sockets are open, heartbeats until its stdin closes, then says "packets
// RECEIVED SENT" (heartbeats, over its life) and exits.
func heartbeatMain(group, interval string, in io.Reader, out io.Writer) int {
	ap, err1 := netip.ParseAddrPort(group)
	iv, err2 := time.ParseDuration(interval)
	if err := errors.Join(err1, err2); err != nil || !ap.Addr().Is4() || iv <= 0 {
		fmt.Fprintf(os.Stderr, "bench heartbeat: group %q interval %q: %v\n", group, interval, err)
		return 2
	}
	a4 := ap.Addr().As4()
	b4 := a4
	b4[2]++
	var cfg transport.Config
	cfg.Port = int(ap.Port())
	cfg.Nets[0] = transport.NetConfig{Interface: "lo", Group: ap.Addr()}
	cfg.Nets[1] = transport.NetConfig{Interface: "lo", Group: netip.AddrFrom4(b4)}
	t, err := transport.Open(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench heartbeat: %v\n", err)
		return 1
	}
	defer t.Close()
	w, err := t.NewWaiter()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench heartbeat: %v\n", err)
		return 1
	}
	defer w.Close()
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, "bench heartbeat: "+f+"\n", a...) }
	// As the agent (agent/rtloop.go: rtSetup, holdP).
	if err := transport.LockMemory(); err != nil {
		logf("%v", err)
	}
	if _, err := transport.SetProcessNice(-20); err != nil {
		logf("%v", err)
	}
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
	}
	w.HoldP = runtime.GOMAXPROCS(0) >= 2
	done := make(chan struct{})
	var received, sent uint64
	go func() {
		defer close(done)
		_ = transport.RunLockedWith(transport.ThreadOptions{Realtime: true, Logf: logf}, func(th *transport.Locked) {
			received, sent = heartbeatLoop(t, w, th, iv)
		})
	}()
	fmt.Fprintln(out, "ready")
	io.Copy(io.Discard, in) // until the harness closes stdin
	w.Stop()
	<-done
	fmt.Fprintf(out, "packets %d %d\n", received, sent)
	return 0
}

// heartbeatLoop is the agent's real-time loop (agent/rtloop.go: rtRun) at
// idle, without the protocol: at each deadline it reads the heartbeats
// queued, the drop counters, and sends one heartbeat on each network. It
// returns the heartbeats it received and sent.
func heartbeatLoop(t *transport.Transport, w *transport.Waiter, th *transport.Locked, iv time.Duration) (received, sent uint64) {
	s := t.NewSender()
	pkt := make([]byte, floorHeartbeatSize)
	msgs := make([]transport.Message, 16)
	for i := range msgs {
		msgs[i].Buf = make([]byte, wire.MaxDatagram)
	}
	next := time.Now()
	var lastYield, dropsAt time.Time
	for {
		ev, err := w.Wait(next)
		if errors.Is(err, transport.ErrStopped) {
			return received, sent
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench heartbeat: %v\n", err)
			return received, sent
		}
		for n := wire.Net(0); n < wire.NumNets; n++ { // nothing arrives there when idle
			for _, uni := range [2]bool{false, true} {
				if ev&transport.Readable(n, uni) != 0 {
					for k, _ := t.TryReadBatch(n, uni, msgs); k == len(msgs); k, _ = t.TryReadBatch(n, uni, msgs) {
					}
				}
			}
		}
		now := time.Now()
		if now.Before(next) {
			continue
		}
		for n := wire.Net(0); n < wire.NumNets; n++ {
			for {
				k, _ := t.TryReadHeartbeats(n, msgs)
				received += uint64(k)
				if k < len(msgs) {
					break
				}
			}
		}
		if now.Sub(dropsAt) >= floorDropsEvery { // as the idle agent reads them
			dropsAt = now
			pkt[0] = byte(t.Drops())
		}
		for n := wire.Net(0); n < wire.NumNets; n++ {
			if s.SendHeartbeat(n, pkt) == nil {
				sent++
			}
		}
		if next = next.Add(iv); next.Before(now) {
			next = now.Add(iv)
		}
		if now.Sub(lastYield) >= floorYieldEvery {
			lastYield = now
			th.YieldInPlace() // as the agent's loop yields
		}
	}
}

// buildHbloop compiles hbloop.c into dir with the system's C compiler
// ($CC, cc or gcc).
func buildHbloop(dir string) (string, error) {
	var cc string
	for _, c := range []string{os.Getenv("CC"), "cc", "gcc"} {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			cc = p
			break
		}
	}
	if cc == "" {
		return "", errors.New("no C compiler ($CC, cc or gcc) on PATH")
	}
	src := filepath.Join(dir, "hbloop.c")
	bin := filepath.Join(dir, "hbloop")
	if err := os.WriteFile(src, hbloopSource, 0o644); err != nil {
		return "", err
	}
	if b, err := exec.Command(cc, "-O2", "-Wall", "-o", bin, src).CombinedOutput(); err != nil {
		return "", fmt.Errorf("compiling hbloop.c: %v\n%s", err, b)
	}
	return bin, nil
}

// floorProcs is one floor's N processes.
type floorProcs struct {
	procs   []*exec.Cmd
	stdin   []io.WriteCloser
	out     []*bufio.Scanner
	started time.Time
}

func (f *floorProcs) add(cmd *exec.Cmd, in io.WriteCloser, out *bufio.Scanner) {
	if cmd != nil {
		f.procs, f.stdin, f.out = append(f.procs, cmd), append(f.stdin, in), append(f.out, out)
	}
}

// stop ends the processes and returns the heartbeats they received and
// sent per second and process, over their lives (0 if one did not say).
func (f *floorProcs) stop() (pps float64) {
	life := time.Since(f.started)
	for _, in := range f.stdin {
		in.Close()
	}
	got := make(chan uint64, 1)
	go func() {
		var total uint64
		for _, sc := range f.out {
			var r, s uint64
			if sc == nil || !sc.Scan() {
				got <- 0
				return
			}
			if _, err := fmt.Sscanf(sc.Text(), "packets %d %d", &r, &s); err != nil {
				got <- 0
				return
			}
			total += r + s
		}
		got <- total
	}()
	var total uint64
	select {
	case total = <-got:
	case <-time.After(3 * time.Second):
	}
	stopHelpers(nil, f.procs)
	if len(f.procs) == 0 {
		return 0
	}
	return float64(total) / life.Seconds() / float64(len(f.procs))
}

// startFloor starts n floor processes, command(a, b, port) each, on a
// fresh pair of groups a and b and port.
func startFloor(n int, command func(a, b netip.Addr, port int) *exec.Cmd) (*floorProcs, error) {
	a, b, port := floorNets()
	f := &floorProcs{started: time.Now()}
	for i := 0; i < n; i++ {
		cmd, in, out, err := startReady(command(a, b, port))
		f.add(cmd, in, out)
		if err != nil {
			f.stop()
			return nil, fmt.Errorf("process %d: %w", i+1, err)
		}
	}
	return f, nil
}

// goFloor is a Go heartbeat process: this program again (heartbeatMain),
// which derives network b from a.
func goFloor(self string, interval time.Duration) func(a, b netip.Addr, port int) *exec.Cmd {
	return func(a, _ netip.Addr, port int) *exec.Cmd {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), helperEnv+"="+helperHeartbeat,
			helperGroupEnv+"="+netip.AddrPortFrom(a, uint16(port)).String(), helperIntervalEnv+"="+interval.String())
		return cmd
	}
}

// cFloor is an hbloop process.
func cFloor(bin string, interval time.Duration) func(a, b netip.Addr, port int) *exec.Cmd {
	return func(a, b netip.Addr, port int) *exec.Cmd {
		return exec.Command(bin, a.String(), b.String(), strconv.Itoa(port), strconv.FormatInt(int64(interval), 10),
			strconv.Itoa(transport.DefaultRTPriority))
	}
}

// floorCPU is the mean CPU, as a fraction of a core, of procs over window
// after a second's warm-up.
func floorCPU(ctx context.Context, procs []*exec.Cmd, window time.Duration) (float64, error) {
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(time.Second):
	}
	cpu0 := make([]float64, len(procs))
	for i, p := range procs {
		var err error
		if cpu0[i], err = procCPU(p.Process.Pid); err != nil {
			return 0, err
		}
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(window):
	}
	var sum float64
	for i, p := range procs {
		c, err := procCPU(p.Process.Pid)
		if err != nil {
			return 0, err
		}
		sum += c - cpu0[i]
	}
	return sum / time.Since(t0).Seconds() / float64(len(procs)), nil
}

// measureIdleFloors measures the Go floor, then the C floor (compiled into
// dir), n processes each at interval, over window each.
func measureIdleFloors(ctx context.Context, self, dir string, n int, interval, window time.Duration) (*IdleFloors, error) {
	fl := &IdleFloors{}
	var err error
	if fl.GoCPU, fl.GoPPS, err = measureFloor(ctx, n, window, goFloor(self, interval)); err != nil {
		return nil, fmt.Errorf("bench: the Go idle floor: %w", err)
	}
	bin, err := buildHbloop(dir)
	if err != nil {
		fl.CNote = err.Error()
		return fl, nil
	}
	if fl.CCPU, fl.CPPS, err = measureFloor(ctx, n, window, cFloor(bin, interval)); err != nil {
		return nil, fmt.Errorf("bench: the C idle floor: %w", err)
	}
	return fl, nil
}

// measureFloor runs one floor's n processes for window (floorCPU) and
// returns their mean CPU and datagram rate.
func measureFloor(ctx context.Context, n int, window time.Duration, command func(a, b netip.Addr, port int) *exec.Cmd) (cpu, pps float64, err error) {
	f, err := startFloor(n, command)
	if err != nil {
		return 0, 0, err
	}
	cpu, err = floorCPU(ctx, f.procs, window)
	pps = f.stop()
	return cpu, pps, err
}

package connhold

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// pair is a connected TCP pair on loopback: the held end and the peer.
func pair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer ln.Close()
	peer, err := net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
	require.NoError(t, err)
	t.Cleanup(func() { peer.Close() })
	c, err := ln.AcceptTCP()
	require.NoError(t, err)
	return c, peer
}

func start(t *testing.T) (*Holder, chan Event) {
	t.Helper()
	evs := make(chan Event, 64)
	h, err := Start(Options{Events: func(e Event) { evs <- e }})
	require.NoError(t, err)
	t.Cleanup(h.Close)
	return h, evs
}

func next(t *testing.T, evs chan Event) Event {
	t.Helper()
	select {
	case e := <-evs:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event in 5 s")
		return Event{}
	}
}

// readEnd reads what peer gets until its end: the bytes, and whether it
// ended (EOF or reset) rather than timing out.
func readEnd(t *testing.T, peer *net.TCPConn) (string, bool) {
	t.Helper()
	require.NoError(t, peer.SetReadDeadline(time.Now().Add(5*time.Second)))
	b, err := io.ReadAll(peer)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		return string(b), false
	}
	return string(b), true
}

func TestHoldEvents(t *testing.T) {
	h, evs := start(t)

	c1, p1 := pair(t)
	require.NoError(t, h.Hold(1, c1))
	_, err := p1.Write([]byte("B"))
	require.NoError(t, err)
	require.Equal(t, Event{ID: 1, Kind: Data, Byte: 'B'}, next(t, evs))
	h.Send(1, 'x')
	require.Equal(t, Event{ID: 1, Kind: Closed}, next(t, evs))
	got, ended := readEnd(t, p1)
	require.True(t, ended, "the peer of a connection the holder closed must see its end")
	require.Equal(t, "x", got, "Send writes its byte before it closes")

	c2, p2 := pair(t)
	require.NoError(t, h.Hold(2, c2))
	require.NoError(t, p2.Close())
	require.Equal(t, Event{ID: 2, Kind: PeerEnded}, next(t, evs))

	c3, p3 := pair(t)
	require.NoError(t, h.Hold(3, c3))
	h.Drop(3)
	require.Equal(t, Event{ID: 3, Kind: Closed}, next(t, evs))
	got, ended = readEnd(t, p3)
	require.True(t, ended)
	require.Empty(t, got)

	c4, p4 := pair(t)
	require.NoError(t, h.Hold(4, c4))
	require.NoError(t, p4.SetLinger(0)) // a reset, not a FIN
	require.NoError(t, p4.Close())
	require.Equal(t, Event{ID: 4, Kind: PeerEnded}, next(t, evs))

	// Commands for connections that already ended change nothing.
	h.Send(2, 'y')
	h.Drop(4)

	c5, p5 := pair(t)
	require.NoError(t, h.Hold(5, c5))
	h.Close()
	got, ended = readEnd(t, p5)
	require.True(t, ended, "Close closes what the holder still holds")
	require.Empty(t, got)
	select {
	case e := <-evs:
		t.Fatalf("an event after Close: %+v", e)
	default:
	}

	c6, p6 := pair(t)
	require.ErrorIs(t, h.Hold(6, c6), ErrClosed)
	// Left to the caller, open: it may still say goodbye.
	_, err = c6.Write([]byte("B"))
	require.NoError(t, err, "a Hold that failed leaves the connection to the caller")
	require.NoError(t, c6.Close())
	got, ended = readEnd(t, p6)
	require.True(t, ended)
	require.Equal(t, "B", got)
	h.Send(5, 'z') // after Close: nothing, and no write to a closed descriptor
	h.Close()      // twice: nothing
}

// inode is the socket inode of a descriptor link ("socket:[123]").
func inodes(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			out = append(out, l)
		}
	}
	return out
}

func TestPrivateTable(t *testing.T) {
	// A listener open before the holder starts, closed after: the holder's
	// copy must not keep its port bound.
	before, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	addr := before.Addr().(*net.TCPAddr)

	h, evs := start(t)
	private, why := h.Private()
	require.NoError(t, why)
	require.True(t, private, "unshare(CLONE_FILES) needs no privilege, and /proc is mounted")
	require.NotEqual(t, os.Getpid(), h.Tid(), "the holder must not be the main thread, whose table /proc/PID/fd shows")

	require.NoError(t, before.Close())
	again, err := net.ListenTCP("tcp4", addr)
	require.NoError(t, err, "a listener closed by the process stays open in the holder's table")
	again.Close()

	c, peer := pair(t)
	raw, err := c.SyscallConn()
	require.NoError(t, err)
	var link string
	require.NoError(t, raw.Control(func(fd uintptr) {
		link, err = os.Readlink("/proc/self/fd/" + strconv.Itoa(int(fd)))
	}))
	require.NoError(t, err)
	require.NoError(t, h.Hold(7, c))
	holder := fmt.Sprintf("/proc/self/task/%d/fd", h.Tid())
	require.Eventually(t, func() bool { return slices.Contains(inodes(t, holder), link) }, 5*time.Second, time.Millisecond,
		"the held socket must be in the holder's table")
	require.NotContains(t, inodes(t, "/proc/self/fd"), link, "and in no other")

	// Still held, and working: the peer's goodbye reaches the events.
	_, err = peer.Write([]byte("B"))
	require.NoError(t, err)
	require.Equal(t, Event{ID: 7, Kind: Data, Byte: 'B'}, next(t, evs))
}

// The child process of TestKillClosesHeld and BenchmarkKillToPeerEnd: it
// touches FMAGENT_CONNHOLD_MIB MiB, connects to FMAGENT_CONNHOLD_ADDR, holds
// the connection (FMAGENT_CONNHOLD_MODE=held) or keeps it, says "ready"
// and waits to be killed.
func TestMain(m *testing.M) {
	if addr := os.Getenv("FMAGENT_CONNHOLD_ADDR"); addr != "" {
		os.Exit(child(addr))
	}
	os.Exit(m.Run())
}

var ballast [][]byte

func child(addr string) int {
	mib, _ := strconv.Atoi(os.Getenv("FMAGENT_CONNHOLD_MIB"))
	for range mib {
		b := make([]byte, 1<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		ballast = append(ballast, b)
	}
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	line := "ready"
	if os.Getenv("FMAGENT_CONNHOLD_MODE") == "held" {
		h, err := Start(Options{Priority: 10, Events: func(Event) {}, IdleLast: true})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if ok, why := h.Private(); !ok {
			fmt.Fprintln(os.Stderr, "not private:", why)
			return 1
		}
		var link string
		raw, err := c.(*net.TCPConn).SyscallConn()
		if err == nil {
			err = raw.Control(func(fd uintptr) { link, err = os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)) })
		}
		if err == nil {
			err = h.Hold(1, c.(*net.TCPConn))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		line = fmt.Sprintf("ready %d %s", h.Tid(), link) // where the parent finds it
	}
	fmt.Println(line)
	for {
		// Not select {}: with no goroutine in a system call, the
		// runtime would end the process (all goroutines asleep) itself.
		time.Sleep(time.Hour)
	}
}

// killToEnd starts a child holding a connection as mode says, kills it
// with SIGKILL and returns how long its peer took to see the connection end.
func killToEnd(t testing.TB, mode string, mib int) time.Duration {
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer ln.Close()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "FMAGENT_CONNHOLD_ADDR="+ln.Addr().String(), "FMAGENT_CONNHOLD_MODE="+mode,
		"FMAGENT_CONNHOLD_MIB="+strconv.Itoa(mib))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	c, err := ln.AcceptTCP()
	require.NoError(t, err)
	defer c.Close()
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	f := strings.Fields(line)
	require.Equal(t, "ready", f[0], line)
	if mode == "held" {
		// The child's socket is in its holder's table, and in no other.
		require.Len(t, f, 3, line)
		pid := cmd.Process.Pid
		require.Eventually(t, func() bool { return slices.Contains(inodes(t, fmt.Sprintf("/proc/%d/task/%s/fd", pid, f[1])), f[2]) },
			5*time.Second, time.Millisecond, "the held socket %s in the child's holder's table", f[2])
		require.NotContains(t, inodes(t, fmt.Sprintf("/proc/%d/fd", pid)), f[2], "nor in its shared table")
	}
	raw, err := c.SyscallConn()
	require.NoError(t, err)
	var fd int
	require.NoError(t, raw.Control(func(f uintptr) { fd = int(f) }))
	// A blocking read on this thread: the peer's end is seen at once, not
	// when Go's poller gets to it.
	require.NoError(t, unix.SetNonblock(fd, false))
	require.NoError(t, unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5}))
	// And at SCHED_FIFO when permitted, as the agent's reader is: the
	// dying process's threads otherwise compete with it for the CPUs.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if old, err := unix.SchedGetAttr(0, 0); err == nil {
		fifo := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 10}
		if unix.SchedSetAttr(0, &fifo, 0) == nil {
			defer func() {
				old.Size = unix.SizeofSchedAttr
				if unix.SchedSetAttr(0, old, 0) != nil {
					runtime.LockOSThread() // ends with the goroutine
				}
			}()
		}
	}
	t0 := time.Now()
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	var b [1]byte
	for {
		n, err := unix.Read(fd, b[:])
		if err == unix.EINTR {
			continue
		}
		if n == 0 || err == unix.ECONNRESET {
			return time.Since(t0)
		}
		require.NoError(t, err, "the killed child's connection did not end")
	}
}

// TestKillClosesHeld: a process killed with SIGKILL while a holder holds
// its connection, in the holder's table alone: the peer sees it end.
func TestKillClosesHeld(t *testing.T) {
	killToEnd(t, "held", 16)
}

// BenchmarkKillToPeerEnd times SIGKILL of a process with 16 MiB resident →
// the end of its connection read by the peer (on a thread at SCHED_FIFO
// when permitted), with the connection in the
// process's file table (shared) and held by a holder (held), alternated in
// the same run. Run it with -benchtime=Nx (N kills of each).
func BenchmarkKillToPeerEnd(b *testing.B) {
	var d = map[string][]time.Duration{}
	modes := []string{"shared", "held"}
	for range b.N {
		for _, m := range modes {
			d[m] = append(d[m], killToEnd(b, m, 16))
		}
	}
	for _, m := range modes {
		s := d[m]
		slices.Sort(s)
		b.ReportMetric(float64(s[len(s)/2].Microseconds()), m+"-p50-µs")
		b.ReportMetric(float64(s[(len(s)*99)/100].Microseconds()), m+"-p99-µs")
	}
	b.ReportMetric(0, "ns/op")
}

// idleThreads lists this process's threads at SCHED_IDLE, with their
// blocked signals as /proc shows them.
func idleThreads(t *testing.T) map[int]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	require.NoError(t, err)
	out := map[int]string{}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		require.NoError(t, err)
		a, err := unix.SchedGetAttr(tid, 0)
		if err != nil || a.Policy != unix.SCHED_IDLE {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/status", tid))
		require.NoError(t, err)
		for _, l := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(l, "SigBlk:"); ok {
				out[tid] = strings.TrimSpace(v)
			}
		}
	}
	return out
}

// Options.IdleLast: one thread at SCHED_IDLE, every signal blocked (it
// must never run Go code again), gone after Close.
func TestIdleLast(t *testing.T) {
	require.Empty(t, idleThreads(t), "no thread at SCHED_IDLE before")
	h, err := Start(Options{Events: func(Event) {}, IdleLast: true})
	require.NoError(t, err)
	require.NoError(t, h.IdleErr())
	var idle map[int]string
	require.Eventually(t, func() bool {
		idle = idleThreads(t)
		for _, blk := range idle {
			// Every signal but SIGKILL (9) and SIGSTOP (19), which
			// cannot be blocked: 0xfffffffffffbfeff.
			if blk == "fffffffffffbfeff" {
				return true
			}
		}
		return false
	}, 5*time.Second, time.Millisecond, "a thread at SCHED_IDLE with every signal blocked: %v", idle)
	require.Len(t, idle, 1)
	h.Close()
	// Its goroutine has ended; the runtime then ends the thread.
	require.Eventually(t, func() bool { return len(idleThreads(t)) == 0 }, 5*time.Second, time.Millisecond,
		"the idle thread ends with Close")
}

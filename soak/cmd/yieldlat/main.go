// Command yieldlat measures what the real-time loop's periodic yield to
// Go's scheduler costs its timing, for the three ways transport.Locked
// yields: a goroutine locked to a SCHED_FIFO thread waits on a timerfd
// deadline every -interval in a raw ppoll that keeps its P
// (transport.Waiter with HoldP, as the agent's loop), yields every 5 ms,
// and records how late each wake-up is and how long each yield took,
// while other goroutines of the process allocate (the collector runs) and
// ping-pong on channels (threads wake to look for work), as an agent's API
// and publishing goroutines do. By default it yields locked (Locked.Yield:
// a Gosched with the goroutine locked, the agent's until 2 December 2026);
// -inplace uses Locked.YieldInPlace (the agent's: the runtime's yield to
// the local run queue, no thread woken); -unlocked uses
// Locked.YieldUnlocked (unlocked for the Gosched, SCHED_FIFO carried to
// whichever thread it comes back on). It prints the lateness percentiles,
// the wake-ups later than an interval, the process's CPU, the moves, the
// yields slower than 1 ms (with a move or not) and the yields' p99 and
// longest. Run as root (SCHED_FIFO), alternating them, with the machine
// busy or not (stress-ng --cpu N or soak -burn beside it): the figures are
// in docs/bench.md and in Locked.YieldUnlocked's comment.
//
//	go run ./soak/cmd/yieldlat -for 30s
//	go run ./soak/cmd/yieldlat -for 30s -inplace
//	go run ./soak/cmd/yieldlat -for 30s -unlocked
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/transport"
)

func main() {
	dur := flag.Duration("for", 30*time.Second, "how long")
	iv := flag.Duration("interval", 4*time.Millisecond, "the loop's timer period (the 20ms profile's heartbeat)")
	unlocked := flag.Bool("unlocked", false, "yield with Locked.YieldUnlocked instead of Locked.Yield")
	inPlace := flag.Bool("inplace", false, "yield with Locked.YieldInPlace instead of Locked.Yield")
	churners := flag.Int("churn", 2, "goroutines allocating in the background")
	pingers := flag.Int("pingpong", 2, "pairs of goroutines ping-ponging on channels every 100 µs")
	slice := flag.Duration("slice", 0, "the process's other threads' EEVDF slice (sched_attr.sched_runtime, Linux 6.12+; 0: the kernel's)")
	flag.Parse()

	var cfg transport.Config
	cfg.Port = 43000 + os.Getpid()%2000
	cfg.Nets[0] = transport.NetConfig{Interface: "lo", Group: netip.MustParseAddr("239.255.211.1")}
	cfg.Nets[1] = transport.NetConfig{Interface: "lo", Group: netip.MustParseAddr("239.255.212.1")}
	t, err := transport.Open(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "yieldlat:", err)
		os.Exit(1)
	}
	defer t.Close()
	w, err := t.NewWaiter()
	if err != nil {
		fmt.Fprintln(os.Stderr, "yieldlat:", err)
		os.Exit(1)
	}
	defer w.Close()
	if _, err := transport.SetProcessNice(-20); err != nil {
		fmt.Fprintln(os.Stderr, "yieldlat:", err)
	}
	if *slice > 0 {
		go func() {
			for {
				setSlice(*slice)
				time.Sleep(200 * time.Millisecond)
			}
		}()
	}
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
	w.HoldP = true

	for range *churners {
		go churn()
	}
	for range *pingers {
		go pingpong()
	}
	var before, after unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &before)
	start := time.Now()
	lates := make([]time.Duration, 0, int(*dur / *iv)+16)
	yields := make([]time.Duration, 0, int(*dur/(5*time.Millisecond))+16)
	var moves uint64
	rtErr := transport.RunLockedWith(transport.ThreadOptions{Realtime: true}, func(th *transport.Locked) {
		next := time.Now().Add(*iv)
		var lastYield time.Time
		for time.Since(start) < *dur {
			ev, err := w.Wait(next)
			if err != nil && !errors.Is(err, transport.ErrStopped) {
				fmt.Fprintln(os.Stderr, "yieldlat:", err)
				os.Exit(1)
			}
			now := time.Now()
			if ev&transport.EvTimer == 0 && now.Before(next) {
				continue
			}
			lates = append(lates, now.Sub(next))
			if next = next.Add(*iv); next.Before(now) {
				next = now.Add(*iv)
			}
			if now.Sub(lastYield) >= 5*time.Millisecond {
				lastYield = now
				m0, _ := th.Moves()
				t0 := time.Now()
				switch {
				case *inPlace:
					th.YieldInPlace()
				case *unlocked:
					th.YieldUnlocked()
				default:
					th.Yield()
				}
				d := time.Since(t0)
				yields = append(yields, d)
				if d > time.Millisecond {
					m1, _ := th.Moves()
					if m1 != m0 {
						slowMoved++
					} else {
						slowStayed++
					}
				}
			}
		}
		moves, _ = th.Moves()
	})
	if rtErr != nil {
		fmt.Fprintln(os.Stderr, "yieldlat: SCHED_FIFO:", rtErr)
		os.Exit(1)
	}
	_ = unix.Getrusage(unix.RUSAGE_SELF, &after)
	slices.Sort(lates)
	q := func(p float64) time.Duration { return lates[min(len(lates)-1, int(p*float64(len(lates))))] }
	over := 0
	for _, l := range lates {
		if l > *iv {
			over++
		}
	}
	mode := "locked"
	switch {
	case *inPlace:
		mode = "in-place+carry"
	case *unlocked:
		mode = "unlocked+carry"
	}
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	if *slice > 0 {
		mode += fmt.Sprintf(" slice %v", *slice)
	}
	slices.Sort(yields)
	y4 := len(yields) - sort.Search(len(yields), func(i int) bool { return yields[i] > 4*time.Millisecond })
	fmt.Printf("%-14s wakes %d late p50 %v p99 %v p99.9 %v max %v; > interval %d; moves %d; process CPU %.1f%%; yields > 1 ms: %d moved, %d not; yields p99 %v max %v, > 4 ms %d\n",
		mode, len(lates), q(0.5), q(0.99), q(0.999), lates[len(lates)-1], over, moves, 100*cpu.Seconds()/time.Since(start).Seconds(), slowMoved, slowStayed,
		yields[len(yields)*99/100], yields[len(yields)-1], y4)
}

var slowMoved, slowStayed int

// setSlice gives every thread at the normal policy nice -20 and the EEVDF
// slice d.
func setSlice(d time.Duration) {
	ents, _ := os.ReadDir("/proc/self/task")
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if a, err := unix.SchedGetAttr(tid, 0); err != nil || a.Policy != unix.SCHED_NORMAL || a.Runtime == uint64(d) {
			continue
		}
		_ = unix.SchedSetAttr(tid, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL, Nice: -20, Runtime: uint64(d)}, 0)
	}
}

// churn allocates about 20 MB/s in small pieces, keeping the last few
// thousand: the collector runs every few hundred milliseconds.
func churn() {
	var held [][]byte
	for {
		for range 100 {
			if held = append(held, make([]byte, 2048)); len(held) > 4096 {
				held = held[:0]
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pingpong hands a value back and forth between two goroutines every
// 100 µs: goroutines readied on other threads' Ps, threads woken to run them.
func pingpong() {
	a, b := make(chan int), make(chan int)
	go func() {
		for v := range a {
			b <- v
		}
	}()
	for i := 0; ; i++ {
		a <- i
		<-b
		time.Sleep(100 * time.Microsecond)
	}
}

// Command rtinversion reproduces the hazard of a Go thread at SCHED_FIFO
// that can run only where the rest of its process runs (DESIGN §8, the
// agent's one-CPU warning): a goroutine locked to a thread at SCHED_FIFO
// 10 allocates a little every millisecond while four goroutines allocate
// in the background, so the garbage collector runs often. On one CPU
// (-cpus 1) the real-time thread sometimes waits inside Go's runtime for a
// thread it keeps off the CPU — a GC assist scanning another goroutine's
// stack (runtime.markroot), or the return from a system call while the
// runtime retakes its P (runtime.exitsyscall), both spinning — until the
// kernel's real-time throttling (950 ms of every second by default) stops
// it. It prints the worst iteration; run as root (SCHED_FIFO).
//
//	go run ./soak/cmd/rtinversion -cpus 1   # worst about 1 s within 20 s here
//	go run ./soak/cmd/rtinversion -cpus 2   # worst a few ms
//
// -raw sleeps as the agent's loop waits, in a raw system call keeping its
// P, which leaves the collector's assists as the way in.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/transport"
)

func main() {
	ncpu := flag.Int("cpus", 1, "pin the process to its first N allowed CPUs (0: leave it)")
	dur := flag.Duration("for", 20*time.Second, "how long")
	raw := flag.Bool("raw", false, "sleep in a raw system call that keeps the P, as the agent's loop waits (transport.Waiter.HoldP): no exitsyscall")
	flag.Parse()
	if *ncpu > 0 {
		all, err := transport.ProcessCPUs()
		if err != nil || len(all) < *ncpu {
			fmt.Fprintf(os.Stderr, "rtinversion: %d CPUs asked, %v allowed (%v)\n", *ncpu, all, err)
			os.Exit(2)
		}
		if err := transport.PinProcess(all[:*ncpu]); err != nil {
			fmt.Fprintln(os.Stderr, "rtinversion:", err)
			os.Exit(1)
		}
	}
	runtime.GOMAXPROCS(2)
	for range 4 {
		go churn()
	}
	worst := make(chan time.Duration)
	go func() {
		runtime.LockOSThread() // ends with the goroutine: the thread is not reused
		attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 10}
		if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
			fmt.Fprintln(os.Stderr, "rtinversion: SCHED_FIFO:", err)
			os.Exit(1)
		}
		var w time.Duration
		var keep [][]byte
		for end := time.Now().Add(*dur); time.Now().Before(end); {
			t0 := time.Now()
			for range 200 {
				keep = append(keep, make([]byte, 128))
			}
			if len(keep) > 5000 {
				keep = keep[:0]
			}
			if d := time.Since(t0); d > w {
				w = d
				fmt.Printf("worst so far %v at %s\n", d, time.Now().Format("15:04:05.000"))
			}
			ts := unix.Timespec{Nsec: int64(time.Millisecond)}
			if *raw {
				unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
			} else {
				_ = unix.Nanosleep(&ts, nil)
			}
		}
		worst <- w
	}()
	fmt.Println("worst iteration of the SCHED_FIFO thread:", <-worst)
}

// churn allocates and drops small objects, so that the collector runs.
func churn() {
	var local [][]byte
	for {
		for range 1000 {
			local = append(local, make([]byte, 64))
			if len(local) > 10000 {
				local = local[:0]
			}
		}
		time.Sleep(100 * time.Microsecond)
	}
}

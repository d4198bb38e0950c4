// Command fmagent-probe measures failure detection end to end, the way
// DESIGN §6 defines it: from kill -9 of an agent (or SIGSTOP: a silent
// process, as a hung host) to every survivor's shared memory showing that
// node down.
//
//	fmagent-probe -kill PID [-signal STOP] -entity node/N [-bound 50ms] [-timeout 5s] SHM...
//
// It opens the survivors' segments (SHM: paths under /dev/shm), checks that
// the entity is up in each, sends SIGKILL (or -signal) to PID, then waits on every
// segment (futex wake-ups on the table seq, no polling) until the entity is
// down there, and prints the time each survivor took and the slowest,
// against the bound (interval × misses) when one is given.
//
// Exit status: 0 when every survivor saw the entity down within -timeout
// (whether or not within the bound: the bound is reported, not enforced),
// 1 otherwise, 2 for bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/wire"
)

func main() {
	os.Exit(run())
}

func run() int {
	pid := flag.Int("kill", 0, "pid of the agent to signal (required)")
	sigName := flag.String("signal", "KILL", "KILL (the process ends: its exit is seen at once) or STOP (it stays silent: judged at the bound; left stopped)")
	entity := flag.String("entity", "", "entity that must go down, e.g. node/2 (required)")
	bound := flag.Duration("bound", 0, "detection bound to compare with (interval × misses); 0: none")
	timeout := flag.Duration("timeout", 5*time.Second, "give up after this long")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: fmagent-probe -kill PID [-signal KILL|STOP] -entity NAME [-bound D] [-timeout D] SHM...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	sig, ok := map[string]syscall.Signal{"KILL": syscall.SIGKILL, "STOP": syscall.SIGSTOP}[*sigName]
	if *pid <= 0 || *entity == "" || flag.NArg() == 0 || !ok {
		flag.Usage()
		return 2
	}
	how := map[syscall.Signal]string{syscall.SIGKILL: "kill -9", syscall.SIGSTOP: "SIGSTOP"}[sig]

	type survivor struct {
		path string
		r    *shmem.Reader
		took time.Duration
		err  error
	}
	var ss []*survivor
	for _, p := range flag.Args() {
		r, err := shmem.Open(p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "fmagent-probe: %v\n", err)
			return 1
		}
		defer r.Close()
		var e shmem.Entity
		if err := r.ReadByName(*entity, &e); err != nil {
			fmt.Fprintf(os.Stderr, "fmagent-probe: %s in %s: %v\n", *entity, p, err)
			return 1
		}
		if e.State != wire.StateUp {
			fmt.Fprintf(os.Stderr, "fmagent-probe: %s is already down in %s\n", *entity, p)
			return 1
		}
		ss = append(ss, &survivor{path: p, r: r})
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var wg sync.WaitGroup
	start := make(chan struct{})
	var t0 time.Time
	for _, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var e shmem.Entity
			seq := s.r.Seq()
			for {
				if err := s.r.ReadByName(*entity, &e); err == nil && e.State == wire.StateDown {
					s.took = time.Since(t0)
					return
				}
				var err error
				if seq, err = s.r.Wait(ctx, seq); err != nil {
					s.err = err
					return
				}
			}
		}()
	}
	t0 = time.Now()
	if err := syscall.Kill(*pid, sig); err != nil {
		fmt.Fprintf(os.Stderr, "fmagent-probe: %s %d: %v\n", how, *pid, err)
		return 1
	}
	close(start)
	wg.Wait()

	var worst time.Duration
	failed := false
	for _, s := range ss {
		if s.err != nil {
			failed = true
			if errors.Is(s.err, context.DeadlineExceeded) {
				fmt.Printf("  %-40s %s NOT down after %v\n", s.path, *entity, *timeout)
			} else {
				fmt.Printf("  %-40s error: %v\n", s.path, s.err)
			}
			continue
		}
		fmt.Printf("  %-40s %s down after %v\n", s.path, *entity, s.took.Round(time.Microsecond))
		worst = max(worst, s.took)
	}
	if failed {
		return 1
	}
	line := fmt.Sprintf("detection time (%s to down in every survivor's shared memory): %v", how, worst.Round(time.Microsecond))
	if *bound > 0 {
		verdict := "within"
		if worst > *bound {
			verdict = "OVER"
		}
		line += fmt.Sprintf("; bound interval × misses = %v: %s (%.2f× the bound)", *bound, verdict, float64(worst)/float64(*bound))
	}
	fmt.Println(line)
	return 0
}

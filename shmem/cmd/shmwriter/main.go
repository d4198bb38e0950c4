// Command shmwriter is the Go writer that the C tests and benchmark of
// shmem/c run against a real segment. It is a test tool, not part of the
// product.
//
//	shmwriter -path /dev/shm/x -mode churn   rewrite entities with the known
//	                                         pattern (shmem/internal/testpattern)
//	                                         in group transactions until signalled
//	shmwriter -path /dev/shm/x -mode static  write the entities once, then only beat
//	shmwriter -path /dev/shm/x -mode stuck   as static, then leave entity 0's slot
//	                                         with an odd seq (a writer stuck mid-write)
//
// It prints "ready" on stdout once the segment is built. On SIGTERM or SIGINT
// it closes the segment (readers then see it closed), unlinks it unless
// -keep, prints "commits=N" on stderr and exits 0.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/shmem"
	L "github.com/fmagent/fmagent/shmem/internal/layout"
	"github.com/fmagent/fmagent/shmem/internal/testpattern"
)

func main() {
	path := flag.String("path", "", "segment path (required)")
	mode := flag.String("mode", "churn", "churn, static or stuck")
	n := flag.Int("n", 64, "churned entities")
	group := flag.Int("group", 8, "entities per transaction (a group)")
	deletes := flag.Bool("deletes", false, "churn: sometimes delete a group member instead of rewriting it")
	pause := flag.Duration("pause", 20*time.Microsecond, "churn: at most this pause between commits (random)")
	capacity := flag.Int("capacity", 0, "segment capacity (default: shmem's)")
	events := flag.Int("events", 0, "event ring size (default: shmem's)")
	keep := flag.Bool("keep", false, "do not unlink the segment on exit")
	flag.Parse()
	if *path == "" || *n <= 0 || *group <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	w, err := shmem.Create(*path, shmem.Options{Capacity: *capacity, EventRingSize: *events, NodeID: 1})
	if err != nil {
		fmt.Fprintln(os.Stderr, "shmwriter:", err)
		os.Exit(1)
	}
	var e shmem.Entity
	set := testpattern.NewSet(*n)
	w.Begin()
	for _, l := range testpattern.LongLens {
		testpattern.FillLong(&e, l)
		must(w.Put(&e))
	}
	for i := 0; i < *n; i++ {
		set.Fill(&e, i, 1)
		must(w.Put(&e))
	}
	w.SetMaster(1, 1)
	w.Commit()

	if *mode == "stuck" {
		freeze(*path, shmem.IDOf(testpattern.Name(0)))
	}

	var stop atomic.Bool
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; stop.Store(true) }()
	fmt.Println("ready")

	commits := 0
	lastBeat := time.Now()
	v := uint64(1)
	rng := rand.New(rand.NewPCG(1, 2))
	for !stop.Load() {
		if time.Since(lastBeat) > 100*time.Millisecond {
			w.Beat()
			lastBeat = time.Now()
		}
		if *mode != "churn" {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		v++
		var del func() bool
		if *deletes {
			del = func() bool { return rng.IntN(16) == 0 }
		}
		must(set.CommitGroup(w, &e, int(v)%testpattern.Groups(*n, *group), *group, v, del))
		commits++
		if *pause > 0 {
			d := time.Duration(rng.Int64N(int64(*pause) + 1))
			for t := time.Now(); time.Since(t) < d; {
			}
		}
	}
	w.Close()
	if !*keep {
		w.Unlink()
	}
	fmt.Fprintf(os.Stderr, "commits=%d\n", commits)
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "shmwriter:", err)
		os.Exit(1)
	}
}

// freeze leaves the slot of id with an odd seq, through a second mapping of
// the file and the documented layout, as a writer that stopped mid-write.
func freeze(path string, id uint64) {
	fd, err := unix.Open(path, unix.O_RDWR, 0)
	if err != nil {
		must(err)
	}
	var st unix.Stat_t
	must(unix.Fstat(fd, &st))
	m, err := unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	must(err)
	p := unsafe.Pointer(&m[0])
	u64 := func(off uintptr) *uint64 { return (*uint64)(unsafe.Add(p, off)) }
	slots := uintptr(atomic.LoadUint64(u64(L.HdrSlotsOff)))
	used := atomic.LoadUint64(u64(L.HdrSlotsUsed))
	for i := uintptr(0); i < uintptr(used); i++ {
		s := slots + i*L.SlotSize
		if atomic.LoadUint64(u64(s+L.SlotID)) == id {
			atomic.AddUint64(u64(s+L.SlotSeq), 1)
			return
		}
	}
	must(fmt.Errorf("entity %#x not found", id))
}

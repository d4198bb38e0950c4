package metrics

import (
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// processStart approximates the process's start time: package
// initialisation runs within milliseconds of exec.
var processStart = time.Now()

// RegisterProcess registers the standard process_* metrics (the names the
// Prometheus client libraries use, so stock dashboards and alerts work):
// CPU seconds, resident and virtual memory, open and maximum file
// descriptors, start time.
func RegisterProcess(r *Registry) {
	r.CounterFunc("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", func() float64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0
		}
		return tv(ru.Utime) + tv(ru.Stime)
	})
	r.GaugeFunc("process_resident_memory_bytes", "Resident memory size in bytes.", func() float64 { return statm(1) })
	r.GaugeFunc("process_virtual_memory_bytes", "Virtual memory size in bytes.", func() float64 { return statm(0) })
	r.GaugeFunc("process_open_fds", "Number of open file descriptors.", func() float64 {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			return 0
		}
		return float64(len(ents))
	})
	r.GaugeFunc("process_max_fds", "Maximum number of open file descriptors.", func() float64 {
		var rl syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0
		}
		return float64(rl.Cur)
	})
	r.GaugeFunc("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", func() float64 {
		return float64(processStart.UnixNano()) / 1e9
	})
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// statm returns field i of /proc/self/statm (in pages) in bytes.
func statm(i int) float64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if i >= len(f) {
		return 0
	}
	n, err := strconv.ParseUint(f[i], 10, 64)
	if err != nil {
		return 0
	}
	return float64(n) * float64(os.Getpagesize())
}

// RegisterGo registers Go runtime metrics under the client libraries'
// names: goroutines, OS threads, heap and total memory, the next GC
// target, GC cycles, GOMAXPROCS and go_info. They are read with
// runtime/metrics, which does not stop the world.
func RegisterGo(r *Registry) {
	read := func(name string) func() float64 {
		return func() float64 {
			s := []rtmetrics.Sample{{Name: name}}
			rtmetrics.Read(s)
			switch s[0].Value.Kind() {
			case rtmetrics.KindUint64:
				return float64(s[0].Value.Uint64())
			case rtmetrics.KindFloat64:
				return s[0].Value.Float64()
			}
			return 0
		}
	}
	r.GaugeFunc("go_goroutines", "Number of goroutines that currently exist.", read("/sched/goroutines:goroutines"))
	r.GaugeFunc("go_threads", "Number of OS threads created.", func() float64 { return float64(pprof.Lookup("threadcreate").Count()) })
	r.GaugeFunc("go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and still in use.", read("/memory/classes/heap/objects:bytes"))
	r.GaugeFunc("go_memstats_sys_bytes", "Number of bytes obtained from the system.", read("/memory/classes/total:bytes"))
	r.GaugeFunc("go_memstats_next_gc_bytes", "Heap size target of the next garbage collection.", read("/gc/heap/goal:bytes"))
	r.CounterFunc("go_gc_cycles_total", "Garbage collection cycles completed.", read("/gc/cycles/total:gc-cycles"))
	r.GaugeFunc("go_gomaxprocs", "GOMAXPROCS: OS threads that can run Go code at once.", func() float64 { return float64(runtime.GOMAXPROCS(0)) })
	r.GaugeFunc("go_info", "Information about the Go environment.", func() float64 { return 1 }, "version", runtime.Version())
}

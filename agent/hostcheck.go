package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Whether the kernel's DAMON runs memory-management schemes on this host.
//
// DAMON (Data Access MONitor) runs a kernel thread, kdamond, that samples
// which memory is used and acts on what is not: a "pageout" scheme reclaims
// it, others sort or migrate it. Over physical memory ("paddr") it works on
// the pages of every process, the agent's included (mlockall keeps them
// resident, not untouched): it takes each page's lock and walks the mappings
// that point to it under those mappings' locks. kdamond runs at nice 0, at
// the normal policy. On a host whose CPUs are busy it can be preempted, and
// kept off the CPU, while it holds such a lock; a thread of the agent that
// maps memory then waits for it holding the agent's memory-map lock for
// writing, and every page fault of the agent waits behind that — the
// real-time loop's first touch of a page included. Priority inheritance
// does not reach kernel read-write semaphores.
//
// Measured (docs/bench.md, "4 December 2026, afternoon"): five agents, two
// CPU burners, a report flood, the kernel's scheduler trace with the stacks
// of real-time threads that slept uninterruptibly. kdamond, preempted, did
// not run again for 885 ms; the first thread it woke was one of the
// agent's, which then woke the real-time loop, asleep 245 ms in the
// kernel. In other runs the loop slept 408 ms in a page fault
// (lock_mm_and_find_vma), woken by another thread of the agent that kdamond
// woke after 448 ms, and real-time threads slept 69–89 ms in mmap
// (vma_prepare's down_write), woken by kdamond: false downs each time. The
// Go runtime maps memory now and then whatever the agent does (its heap, the
// garbage collector's mark bits and queues, thread stacks), so the agent
// cannot stay clear of it; the host can. The agent says so at start.

// damonAdmin is DAMON's sysfs interface (Documentation/admin-guide/mm/damon/usage.rst).
const damonAdmin = "sys/kernel/mm/damon/admin/kdamonds"

// damonModules are DAMON's built-in schemes that a module parameter turns
// on instead of the sysfs interface.
var damonModules = []string{"damon_reclaim", "damon_lru_sort"}

// damonSchemes describes the DAMON schemes running on the host whose root
// file system is root ("/" but in tests): one "kdamond N: action,…"
// per running kdamond with schemes, and the name of each built-in scheme
// module that is enabled. Nothing when DAMON is absent, off or not
// readable.
func damonSchemes(root string) []string {
	var out []string
	dirs, _ := filepath.Glob(filepath.Join(root, damonAdmin, "[0-9]*")) // sorted
	for _, d := range dirs {
		if readTrim(filepath.Join(d, "state")) != "on" {
			continue
		}
		files, _ := filepath.Glob(filepath.Join(d, "contexts", "[0-9]*", "schemes", "[0-9]*", "action"))
		var actions []string
		for _, f := range files {
			if a := readTrim(f); a != "" && !slices.Contains(actions, a) {
				actions = append(actions, a)
			}
		}
		if len(actions) > 0 {
			slices.Sort(actions)
			out = append(out, fmt.Sprintf("kdamond %s: %s", filepath.Base(d), strings.Join(actions, ",")))
		}
	}
	for _, m := range damonModules {
		if readTrim(filepath.Join(root, "sys/module", m, "parameters/enabled")) == "Y" {
			out = append(out, m)
		}
	}
	return out
}

// readTrim is a small sysfs file's content without its newline ("" if it
// cannot be read).
func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// damonHint is the warning's advice.
const damonHint = "the kernel's DAMON runs memory schemes over this host's memory (kdamond, at nice 0): on a busy host it can be kept off the CPU while it holds locks of the agent's memory map, and the real-time loop then waits in the kernel at its next page fault (measured: 245–408 ms, false downs). On a cluster node turn it off (echo off > /sys/kernel/mm/damon/admin/kdamonds/N/state, or the module's enabled parameter), or keep it away from fmagent's memory"

// warnDAMON logs damonHint once at start when DAMON runs schemes, and
// keeps their count for the metrics.
func (a *agent) warnDAMON(root string) {
	s := damonSchemes(root)
	a.damonSchemes.Store(int64(len(s)))
	if len(s) > 0 {
		a.log.Warn(damonHint, "schemes", s)
	}
}

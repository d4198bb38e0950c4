package shmem_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The test segments of this package are /dev/shm/fmshm-test-PID-NAME (and
// the writer's hidden temporary files beside them). leftovers lists the
// ones of process pid that exist.
func leftovers(pid int) []string {
	var left []string
	ents, _ := os.ReadDir("/dev/shm")
	for _, e := range ents {
		if p, ok := testPID(e.Name()); ok && p == pid {
			left = append(left, filepath.Join("/dev/shm", e.Name()))
		}
	}
	return left
}

// testPID is the PID in a test segment's name.
func testPID(name string) (int, bool) {
	_, rest, ok := strings.Cut(name, "fmshm-test-")
	if !ok {
		return 0, false
	}
	pid, _, _ := strings.Cut(rest, "-")
	n, err := strconv.Atoi(pid)
	return n, err == nil
}

// removeDeadRunsSegments removes the test segments of earlier runs whose
// process is gone (a run that crashed could not clean up after itself).
func removeDeadRunsSegments() {
	ents, _ := os.ReadDir("/dev/shm")
	for _, e := range ents {
		if p, ok := testPID(e.Name()); ok && p != os.Getpid() {
			if _, err := os.Stat("/proc/" + strconv.Itoa(p)); os.IsNotExist(err) {
				os.Remove(filepath.Join("/dev/shm", e.Name()))
			}
		}
	}
}

// checkLeftovers turns a passing run into a failing one if it left a
// segment of its own in /dev/shm (and removes it).
func checkLeftovers(code int) int {
	left := leftovers(os.Getpid())
	for _, p := range left {
		os.Remove(p)
	}
	if len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: the tests left %d file(s) in /dev/shm: %s\n", len(left), strings.Join(left, " "))
		if code == 0 {
			code = 1
		}
	}
	return code
}

package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// A package's test segments are /dev/shm/<prefix>PID-... (and a writer's
// hidden temporary files beside them, which contain the same name). A
// TestMain calls RemoveDeadShm before the tests and CheckShmLeftovers after:
//
//	testutil.RemoveDeadShm("fmshm-test-")
//	os.Exit(testutil.CheckShmLeftovers("fmshm-test-", m.Run()))

// shmPID is the PID in a test segment's name, after prefix.
func shmPID(prefix, name string) (int, bool) {
	_, rest, ok := strings.Cut(name, prefix)
	if !ok {
		return 0, false
	}
	pid, _, _ := strings.Cut(rest, "-")
	n, err := strconv.Atoi(pid)
	return n, err == nil
}

// ShmLeftovers lists the test segments of process pid in /dev/shm.
func ShmLeftovers(prefix string, pid int) []string {
	var left []string
	ents, _ := os.ReadDir("/dev/shm")
	for _, e := range ents {
		if p, ok := shmPID(prefix, e.Name()); ok && p == pid {
			left = append(left, filepath.Join("/dev/shm", e.Name()))
		}
	}
	return left
}

// RemoveDeadShm removes the test segments of earlier runs whose process is
// gone (a run that crashed could not clean up after itself).
func RemoveDeadShm(prefix string) {
	ents, _ := os.ReadDir("/dev/shm")
	for _, e := range ents {
		if p, ok := shmPID(prefix, e.Name()); ok && p != os.Getpid() {
			if _, err := os.Stat("/proc/" + strconv.Itoa(p)); os.IsNotExist(err) {
				os.Remove(filepath.Join("/dev/shm", e.Name()))
			}
		}
	}
}

// CheckShmLeftovers turns a passing run (code 0) into a failing one if it
// left a test segment of its own in /dev/shm, and removes what it left.
func CheckShmLeftovers(prefix string, code int) int {
	left := ShmLeftovers(prefix, os.Getpid())
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

package shmem_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/wire"
)

// TestCreateOnFullTmpfs: a segment that does not fit in its tmpfs is
// refused by Create, with ENOSPC, instead of being created sparse and
// killing its writer with a SIGBUS the day the table grows into the
// missing pages; one that fits is filled to capacity without a fault.
// The tmpfs (512 KiB) is mounted in a mount namespace of the helper's own
// (unshare --mount), so nothing outside the test sees it.
func TestCreateOnFullTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root; CI runs as root")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("unshare (util-linux) not found: %v", err)
	}
	dir := t.TempDir()
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FMSHM_HELPER=fulltmpfs", "FMSHM_PATH="+dir)
	out, err := cmd.CombinedOutput()
	t.Logf("helper:\n%s", out)
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	for _, want := range []string{"refused: ", "no space left on device", "filled 64 of 64"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("helper output lacks %q", want)
		}
	}
}

// fullTmpfsHelper runs in its own mount namespace: it mounts a 512 KiB
// tmpfs on dir and creates two segments there.
func fullTmpfsHelper(dir string) int {
	if err := unix.Mount("none", dir, "tmpfs", 0, "size=512k"); err != nil {
		fmt.Println("error: mount:", err)
		return 1
	}
	// 4,096 entities need about 4 MiB: refused.
	w, err := shmem.Create(filepath.Join(dir, "big"), shmem.Options{Capacity: 4096})
	if err == nil {
		w.Close()
		fmt.Println("error: a 4 MiB segment was created on a 512 KiB tmpfs")
		return 1
	}
	if !errors.Is(err, unix.ENOSPC) {
		fmt.Println("error: not ENOSPC:", err)
		return 1
	}
	fmt.Println("refused:", err)
	if _, err := os.Stat(filepath.Join(dir, "big")); !os.IsNotExist(err) {
		fmt.Println("error: the refused segment was left behind:", err)
		return 1
	}
	// 64 entities fit (about 80 KiB): every one of them can be written.
	w, err = shmem.Create(filepath.Join(dir, "small"), shmem.Options{Capacity: 64, EventRingSize: 64})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	defer w.Close()
	n := 0
	for i := range 64 {
		e := shmem.Entity{Kind: wire.KindService, State: wire.StateUp}
		_ = e.SetName(fmt.Sprintf("svc/%d", i))
		if err := w.Put(&e); err != nil {
			fmt.Println("error:", err)
			return 1
		}
		n++
	}
	fmt.Printf("filled %d of 64\n", n)
	return 0
}

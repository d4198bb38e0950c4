package agent

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/shmem"
)

// TestShmCreateErrorNamesTheSettings: a segment refused because it does
// not fit in its tmpfs (shmem.Create allocates it whole; the refusal
// itself is shmem's TestCreateOnFullTmpfs) stops the start with the
// settings that size it, and keeps the cause for errors.Is; any other
// refusal is passed on as it is.
func TestShmCreateErrorNamesTheSettings(t *testing.T) {
	cfg := config.Default()
	cfg.Shm.Entities, cfg.Shm.Events = 100000, 8192
	full := &shmem.Error{Op: "create", Path: cfg.ShmPath(), Err: fmt.Errorf("fallocate: %w", unix.ENOSPC)}
	err := shmCreateError(full, cfg)
	if !errors.Is(err, unix.ENOSPC) {
		t.Errorf("%v: the cause is lost", err)
	}
	for _, want := range []string{"[shm] entities = 100000", "events = 8192", cfg.ShmPath(), "no space left on device"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	other := &shmem.Error{Op: "create", Path: cfg.ShmPath(), Err: shmem.ErrInUse}
	if err := shmCreateError(other, cfg); !errors.Is(err, shmem.ErrInUse) || strings.Contains(err.Error(), "[shm]") {
		t.Errorf("another refusal: %v", err)
	}
}

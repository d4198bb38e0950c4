package agent

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sysfsFile writes a sysfs-like file under root.
func sysfsFile(t *testing.T, root, path, content string) {
	t.Helper()
	p := filepath.Join(root, path)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(content+"\n"), 0o644))
}

func TestDAMONSchemesFromSysfs(t *testing.T) {
	root := t.TempDir()
	assert.Empty(t, damonSchemes(root), "no DAMON at all")

	k := "sys/kernel/mm/damon/admin/kdamonds/"
	sysfsFile(t, root, k+"nr_kdamonds", "4")
	// kdamond 0 runs: two contexts, a pageout named twice and a sort.
	sysfsFile(t, root, k+"0/state", "on")
	sysfsFile(t, root, k+"0/contexts/0/schemes/0/action", "pageout")
	sysfsFile(t, root, k+"0/contexts/0/schemes/1/action", "pageout")
	sysfsFile(t, root, k+"0/contexts/1/schemes/0/action", "lru_prio")
	// kdamond 1 is off: its schemes do nothing.
	sysfsFile(t, root, k+"1/state", "off")
	sysfsFile(t, root, k+"1/contexts/0/schemes/0/action", "pageout")
	// kdamond 2 runs without schemes: it only monitors.
	sysfsFile(t, root, k+"2/state", "on")
	sysfsFile(t, root, k+"2/contexts/0/schemes/nr_schemes", "0")
	// The built-in modules: one enabled, one not.
	sysfsFile(t, root, "sys/module/damon_reclaim/parameters/enabled", "Y")
	sysfsFile(t, root, "sys/module/damon_lru_sort/parameters/enabled", "N")

	assert.Equal(t, []string{"kdamond 0: lru_prio,pageout", "damon_reclaim"}, damonSchemes(root))

	sysfsFile(t, root, k+"0/state", "off")
	sysfsFile(t, root, "sys/module/damon_reclaim/parameters/enabled", "N")
	assert.Empty(t, damonSchemes(root), "everything off")
}

func TestDAMONWarnedAtStartAndCounted(t *testing.T) {
	root := t.TempDir()
	var logs bytes.Buffer
	a := &agent{log: slog.New(slog.NewTextHandler(&logs, nil))}

	a.warnDAMON(root)
	assert.Zero(t, a.damonSchemes.Load())
	assert.Empty(t, logs.String(), "no warning without DAMON")

	k := "sys/kernel/mm/damon/admin/kdamonds/0/"
	sysfsFile(t, root, k+"state", "on")
	sysfsFile(t, root, k+"contexts/0/schemes/0/action", "pageout")
	a.warnDAMON(root)
	assert.EqualValues(t, 1, a.damonSchemes.Load())
	assert.Contains(t, logs.String(), "level=WARN")
	assert.Contains(t, logs.String(), "DAMON")
	assert.Contains(t, logs.String(), "kdamond 0: pageout")
}

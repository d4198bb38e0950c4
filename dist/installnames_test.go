package dist

import (
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestInstallShipsWhatTheDocsName runs make install into a scratch root with
// a PREFIX and SYSCONFDIR of its own, and checks that every file the
// installed man pages, example configuration, example hook and unit name is one
// the install wrote: the example hook script (executable), hooks.md,
// security.md, plugins.md and every other page of /usr/share/doc/fmagent
// they cite (issue 11 review: the example config named a notify script and
// docs that nothing installed). The odd PREFIX also shows that make install
// rewrites those paths to its own, not the package's.
func TestInstallShipsWhatTheDocsName(t *testing.T) {
	_, err := exec.LookPath("make")
	require.NoError(t, err, "make is needed to run make install")
	tmp := t.TempDir()
	root := filepath.Join(tmp, "root")
	const prefix, sysconf = "/opt/fmtest", "/opt/fmtest-etc"
	out, err := exec.Command("make", "-C", "..", "--no-print-directory", "install", "CGO_ENABLED=0",
		"BIN="+filepath.Join(tmp, "bin"), "DESTDIR="+root, "PREFIX="+prefix, "SYSCONFDIR="+sysconf).CombinedOutput()
	require.NoError(t, err, "make install:\n%s", out)
	named := checkNamedPathsInstalled(t, root, prefix, sysconf)
	for _, want := range []string{
		prefix + "/libexec/fmagent/notify-logger.sh",
		prefix + "/share/doc/fmagent/hooks.md",
		prefix + "/share/doc/fmagent/security.md",
		prefix + "/share/doc/fmagent/plugins.md",
		prefix + "/share/doc/fmagent/api.md",
		prefix + "/share/doc/fmagent/examples/fmagent.toml",
		prefix + "/include/fmshm.h",
		prefix + "/share/doc/fmagent/install.md",
		prefix + "/bin/fmagent",
		sysconf + "/fmagent/fmagent.toml",
	} {
		assert.Contains(t, named, want, "the installed docs name %s", want)
	}
	t.Logf("%d installed paths named by the man pages, the example config, the hook script and the unit, all installed", len(named))
}

// docPathRE finds absolute paths in man pages (after \- is unescaped) and
// in the config; mdRE finds the pages of the doc directory cited by name
// ("(install.md, api.md ...)").
var (
	docPathRE = regexp.MustCompile(`(?:^|[\s"'(=])(/[A-Za-z0-9_.+/<>-]*[A-Za-z0-9_/])`)
	mdRE      = regexp.MustCompile(`(?:^|[^A-Za-z0-9_/.-])([A-Za-z][A-Za-z0-9_-]*\.md)\b`)
)

// notShipped are paths the docs name under the install's directories that
// are not the install's files, and why.
var notShipped = map[string]string{
	"/fmagent/cluster.key":   "the operator writes it with fmagent -genkey",
	"/usr/local/bin/billing": "an operator's daemon in the [[daemons]] example",
}

// checkNamedPathsInstalled reads the man pages, the example configuration
// (both copies), the hook script and the unit as installed under root (PREFIX prefix,
// SYSCONFDIR sysconf), and checks that every path they name under prefix or
// sysconf exists under root, that they name no other /usr or /etc path
// (one make install would not have rewritten), and that every *.md page they
// cite is in the doc directory. It returns the paths it checked.
func checkNamedPathsInstalled(t *testing.T, root, prefix, sysconf string) []string {
	t.Helper()
	docdir := filepath.Join(root, prefix, "share/doc/fmagent")
	texts := map[string]string{}
	for _, page := range []string{"man8/fmagent.8.gz", "man8/fmctl.8.gz", "man5/fmagent.toml.5.gz"} {
		f, err := os.Open(filepath.Join(root, prefix, "share/man", page))
		require.NoError(t, err)
		z, err := gzip.NewReader(f)
		require.NoError(t, err, page)
		b, err := io.ReadAll(z)
		f.Close()
		require.NoError(t, err, page)
		texts[page] = strings.ReplaceAll(string(b), `\-`, "-")
	}
	for _, p := range []string{
		filepath.Join(sysconf, "fmagent/fmagent.toml"),
		filepath.Join(prefix, "share/doc/fmagent/examples/fmagent.toml"),
		filepath.Join(prefix, "libexec/fmagent/notify-logger.sh"),
		filepath.Join(prefix, "lib/systemd/system/fmagent.service"),
	} {
		b, err := os.ReadFile(filepath.Join(root, p))
		require.NoError(t, err, "%s is installed", p)
		texts[p] = string(b)
	}
	fi, err := os.Stat(filepath.Join(root, prefix, "libexec/fmagent/notify-logger.sh"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), fi.Mode().Perm(), "the example hook is executable: [[hooks]] command runs it")

	seen := map[string]bool{}
	var named []string
	for src, text := range texts {
		for _, m := range docPathRE.FindAllStringSubmatch(text, -1) {
			p := strings.TrimSuffix(m[1], ".")
			under := strings.HasPrefix(p, prefix+"/") || strings.HasPrefix(p, sysconf+"/")
			if !under && !strings.HasPrefix(p, "/usr/") && !strings.HasPrefix(p, "/etc/") {
				continue // runtime paths: /run, /var/lib, /dev/shm, /tmp, /proc
			}
			skip := false
			for suffix := range notShipped {
				skip = skip || strings.HasSuffix(p, suffix)
			}
			if skip || seen[p] {
				continue
			}
			seen[p] = true
			if !assert.True(t, under, "%s names %s, which make install PREFIX=%s SYSCONFDIR=%s did not rewrite to its own paths", src, p, prefix, sysconf) {
				continue
			}
			named = append(named, p)
			_, err := os.Stat(filepath.Join(root, p))
			assert.NoError(t, err, "%s names %s: it must be installed", src, p)
		}
		for _, m := range mdRE.FindAllStringSubmatch(text, -1) {
			assert.FileExists(t, filepath.Join(docdir, m[1]), "%s cites %s: it must be in %s", src, m[1], filepath.Join(prefix, "share/doc/fmagent"))
		}
		assert.NotRegexp(t, `(^|[^/])\bdocs/[a-z-]+\.md`, text, "%s names a page by its place in the source tree, not where it is installed", src)
	}
	return named
}

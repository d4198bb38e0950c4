package dist

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The Debian package's files and their modes (directories aside).
var debLayout = map[string]fs.FileMode{
	"etc/fmagent/fmagent.toml":                    0o644,
	"usr/bin/fmagent":                             0o755,
	"usr/bin/fmctl":                               0o755,
	"usr/lib/systemd/system/fmagent.service":      0o644,
	"usr/share/man/man8/fmagent.8.gz":             0o644,
	"usr/share/man/man8/fmctl.8.gz":               0o644,
	"usr/share/man/man5/fmagent.toml.5.gz":        0o644,
	"usr/share/bash-completion/completions/fmctl": 0o644,
	"usr/include/fmshm.h":                         0o644,
	"usr/share/doc/fmagent/examples/fmagent.toml": 0o644,
	"usr/libexec/fmagent/notify-logger.sh":        0o755,

	"usr/share/doc/fmagent/examples/grafana-dashboard.json": 0o644,
	"usr/share/doc/fmagent/examples/prometheus-alerts.yml":  0o644,
	"usr/share/doc/fmagent/install.md":                      0o644,
	"usr/share/doc/fmagent/alerting.md":                     0o644,
	"usr/share/doc/fmagent/hooks.md":                        0o644,
	"usr/share/doc/fmagent/security.md":                     0o644,
	"usr/share/doc/fmagent/plugins.md":                      0o644,
	"usr/share/doc/fmagent/api.md":                          0o644,
}

// TestDebInstall builds the package with `make deb`, unpacks it into a
// scratch root (dpkg -x: what dpkg -i writes, without touching this host's
// package database) and checks the layout, then starts the installed agent
// as the unit would — the unit's own ExecStart, with the installed binary
// and config — and runs the installed fmctl with no -socket: a fresh
// install must work first time (issue 11: the agent listened on
// /var/lib/fmagent/fmagent.sock while fmctl looked in /run/fmagent).
//
// The agent runs in a private mount and network namespace: /run,
// /var/lib and /dev/shm are empty tmpfs there (so the real default paths
// are used without touching the host's), /run/fmagent and /var/lib/fmagent
// are created as RuntimeDirectory= and StateDirectory= create them, and the
// default multicast groups and metrics port cannot meet another agent.
func TestDebInstall(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for the mount and network namespace the installed agent runs in; CI runs as root")
	}
	for _, tool := range []string{"make", "dpkg-deb", "unshare", "ip"} {
		_, err := exec.LookPath(tool)
		require.NoError(t, err, "%s is needed to build and try the package", tool)
	}
	tmp := t.TempDir()
	out, err := exec.Command("make", "-C", "..", "--no-print-directory", "deb",
		"BIN="+filepath.Join(tmp, "bin"), "DEBOUT="+filepath.Join(tmp, "out")).CombinedOutput()
	require.NoError(t, err, "make deb:\n%s", out)
	debs, _ := filepath.Glob(filepath.Join(tmp, "out", "fmagent_*.deb"))
	require.Len(t, debs, 1, "make deb built one package")
	deb := debs[0]

	// Control data.
	info, err := exec.Command("dpkg-deb", "-f", deb, "Package", "Version", "Architecture").Output()
	require.NoError(t, err)
	fields := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(info))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ": ")
		fields[k] = v
	}
	assert.Equal(t, "fmagent", fields["Package"])
	assert.Regexp(t, `^[0-9][A-Za-z0-9.+~]*$`, fields["Version"], "a valid Debian version")
	assert.Contains(t, deb, "_"+fields["Version"]+"_"+fields["Architecture"]+".deb")
	conf, err := exec.Command("dpkg-deb", "--ctrl-tarfile", deb).Output()
	require.NoError(t, err)
	ctrl := t.TempDir()
	untar := exec.Command("tar", "-x", "-C", ctrl)
	untar.Stdin = bytes.NewReader(conf)
	require.NoError(t, untar.Run())
	cf, err := os.ReadFile(filepath.Join(ctrl, "conffiles"))
	require.NoError(t, err)
	assert.Equal(t, "/etc/fmagent/fmagent.toml\n", string(cf), "the config is a conffile: upgrades keep the operator's")

	// The files, as dpkg would install them.
	root := filepath.Join(tmp, "root")
	out, err = exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput()
	require.NoError(t, err, "dpkg-deb -x: %s", out)
	for p, mode := range debLayout {
		fi, err := os.Stat(filepath.Join(root, p))
		if assert.NoError(t, err, p) {
			assert.Equal(t, mode, fi.Mode().Perm(), p)
		}
	}
	// Nothing else but documentation.
	require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() || strings.HasPrefix(rel, "usr/share/doc/fmagent/") {
			return nil
		}
		_, ok := debLayout[rel]
		assert.True(t, ok, "unexpected file in the package: %s", rel)
		return nil
	}))

	// The installed unit runs the installed binary with the installed
	// config, and every page its Documentation= names is installed.
	unit := readUnit(t, filepath.Join(root, "usr/lib/systemd/system/fmagent.service"))
	assert.Equal(t, "/usr/bin/fmagent -config /etc/fmagent/fmagent.toml", unit["[Service]ExecStart"])
	assert.Equal(t, "fmagent", unit["[Service]RuntimeDirectory"])
	assert.Equal(t, "fmagent", unit["[Service]StateDirectory"])
	for _, doc := range strings.Fields(unit["[Unit]Documentation"]) {
		m := regexp.MustCompile(`^man:([a-z.]+)\((\d)\)$`).FindStringSubmatch(doc)
		require.NotNil(t, m, "Documentation=%s: a man page", doc)
		page := filepath.Join(root, "usr/share/man", "man"+m[2], m[1]+"."+m[2]+".gz")
		assert.FileExists(t, page, "Documentation=%s", doc)
	}
	if _, err := exec.LookPath("man"); err == nil {
		for _, page := range []string{"man8/fmagent.8.gz", "man8/fmctl.8.gz", "man5/fmagent.toml.5.gz"} {
			cmd := exec.Command("man", "--warnings", "-l", filepath.Join(root, "usr/share/man", page))
			cmd.Env = append(os.Environ(), "MANWIDTH=80", "LC_ALL=C.UTF-8")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			text, err := cmd.Output()
			require.NoError(t, err, "man %s: %s", page, stderr.String())
			assert.Empty(t, stderr.String(), "roff warnings in %s", page)
			assert.Contains(t, string(text), "NAME", page)
		}
	}
	checkNamedPathsInstalled(t, root, "/usr", "/etc")
	out, err = exec.Command("bash", "-n", filepath.Join(root, "usr/share/bash-completion/completions/fmctl")).CombinedOutput()
	assert.NoError(t, err, "completion script: %s", out)
	// The installed header compiles from the installed include directory.
	if _, err := exec.LookPath("gcc"); err == nil {
		cmd := exec.Command("gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-I", filepath.Join(root, "usr/include"), "-x", "c", "-")
		cmd.Stdin = strings.NewReader("#include <fmshm.h>\nint main(void) { return 0; }\n")
		out, err := cmd.CombinedOutput()
		assert.NoError(t, err, "#include <fmshm.h>: %s", out)
	}

	// Stamped binaries; the installed config is good.
	bin := func(name string) string { return filepath.Join(root, "usr/bin", name) }
	out, err = exec.Command(bin("fmagent"), "-version").Output()
	require.NoError(t, err)
	assert.Regexp(t, `^fmagent \S+ `, string(out))
	assert.NotContains(t, string(out), "(devel)", "make stamps the version")
	out, err = exec.Command(bin("fmctl"), "version").Output()
	require.NoError(t, err)
	assert.NotContains(t, string(out), "(devel)", "make stamps the version")
	confPath := filepath.Join(root, "etc/fmagent/fmagent.toml")
	out, err = exec.Command(bin("fmagent"), "-check-config", confPath).CombinedOutput()
	require.NoError(t, err, "fmagent -check-config on the installed config: %s", out)
	assert.Contains(t, string(out), "socket /run/fmagent/fmagent.sock, state /var/lib/fmagent")

	// Start it as the unit would: ExecStart, its absolute paths taken from
	// the scratch root.
	var argv []string
	for _, a := range strings.Fields(unit["[Service]ExecStart"]) {
		if strings.HasPrefix(a, "/") {
			a = filepath.Join(root, a)
		}
		argv = append(argv, a)
	}
	res := filepath.Join(tmp, "res")
	require.NoError(t, os.Mkdir(res, 0o755))
	script := `set -u
mount --make-rprivate /
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=0755 tmpfs /var/lib
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
ip link set lo up
# What systemd does for RuntimeDirectory=fmagent, RuntimeDirectoryMode=0755
# and StateDirectory=fmagent, StateDirectoryMode=0700.
install -d -m 0755 /run/fmagent
install -d -m 0700 /var/lib/fmagent
"$@" > "$RES/agent.log" 2>&1 &
pid=$!
trap 'kill -KILL $pid 2>/dev/null' EXIT
ok=1
for i in $(seq 100); do
	if "$FMCTL" status > "$RES/status.txt" 2> "$RES/status.err"; then ok=0; break; fi
	sleep 0.1
done
echo $ok > "$RES/status.rc"
"$FMCTL" -o json status > "$RES/status.json" 2>&1
# The installed completion, against the running agent.
PATH="$(dirname "$FMCTL"):$PATH" bash -c 'source "$1"
COMP_WORDS=(fmctl st); COMP_CWORD=1; _fmctl; printf "cmd %s\n" "${COMPREPLY[@]}"
COMP_WORDS=(fmctl -o j); COMP_CWORD=2; _fmctl; printf "flag %s\n" "${COMPREPLY[@]}"' _ "$COMPLETION" > "$RES/complete.txt" 2>&1
stat -c '%n %a %F' /run/fmagent /run/fmagent/fmagent.sock /var/lib/fmagent > "$RES/modes.txt"
ls /dev/shm > "$RES/shm-before.txt"
kill -TERM $pid
wait $pid
echo $? > "$RES/agent.rc"
ls -A /run/fmagent > "$RES/run-after.txt"
ls -A /dev/shm > "$RES/shm-after.txt"
`
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", append([]string{"--mount", "--net", "sh", "-c", script, "sh"}, argv...)...)
	cmd.Env = append(os.Environ(), "RES="+res, "FMCTL="+bin("fmctl"), "FMAGENT_SOCKET=",
		"COMPLETION="+filepath.Join(root, "usr/share/bash-completion/completions/fmctl"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err = cmd.CombinedOutput()
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(res, name))
		return string(b)
	}
	require.NoError(t, err, "namespace run: %s\nagent log:\n%s", out, read("agent.log"))

	require.Equal(t, "0\n", read("status.rc"), "fmctl status with its defaults against the installed agent: %s\nagent log:\n%s", read("status.err"), read("agent.log"))
	assert.Regexp(t, `(?m)^node:\s+1$`, read("status.txt"))
	var st struct {
		Node uint32 `json:"node"`
		Shm  string `json:"shm"`
	}
	require.NoError(t, json.Unmarshal([]byte(read("status.json")), &st), read("status.json"))
	assert.Equal(t, uint32(1), st.Node)
	assert.Equal(t, "/dev/shm/fmagent-1-1", st.Shm)
	assert.Equal(t, "/run/fmagent 755 directory\n/run/fmagent/fmagent.sock 660 socket\n/var/lib/fmagent 700 directory\n", read("modes.txt"))
	assert.Equal(t, "fmagent-1-1\n", read("shm-before.txt"))
	assert.Contains(t, read("agent.log"), "socket=/run/fmagent/fmagent.sock")
	assert.Equal(t, "cmd status\nflag json\n", read("complete.txt"), "the installed bash completion (entity names: TestCompletion)")
	// SIGTERM, as systemctl stop: a clean exit that leaves nothing behind.
	assert.Equal(t, "0\n", read("agent.rc"), "agent log:\n%s", read("agent.log"))
	assert.Empty(t, read("run-after.txt"), "the socket is removed")
	assert.Empty(t, read("shm-after.txt"), "the segment is removed")
	t.Logf("installed %s (%d files): fmctl status:\n%s", filepath.Base(deb), len(debLayout), read("status.txt"))
}

// readUnit reads a unit file into "[Section]Key" -> value.
func readUnit(t *testing.T, path string) map[string]string {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	set := map[string]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		if l[0] == '[' {
			section = l
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		require.True(t, ok, "not key=value: %q", l)
		set[section+k] = v
	}
	require.NoError(t, sc.Err())
	return set
}

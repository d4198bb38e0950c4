package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// loadFlags loads the file at path as fmagent does (Flags.Load: the file,
// the flags, then the host checks).
func loadFlags(t *testing.T, path string) (*Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fl := RegisterFlags(fs)
	require.NoError(t, fs.Parse([]string{"-config", path}))
	c, err := fl.Load()
	if err != nil {
		return nil, err
	}
	return c, fl.CheckHost(c)
}

func TestGenerateKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k")
	require.NoError(t, GenerateKey(p))
	st, err := os.Stat(p)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	k, err := ReadKey(p)
	require.NoError(t, err)
	require.Len(t, k, 2*GenKeyLen, "hex digits")
	q := filepath.Join(t.TempDir(), "k2")
	require.NoError(t, GenerateKey(q))
	k2, err := ReadKey(q)
	require.NoError(t, err)
	require.NotEqual(t, k, k2)
	require.ErrorIs(t, GenerateKey(p), os.ErrExist, "never over an existing key")
}

// Key files and interfaces are refused with the file, the line of the key
// that names them, and the reason.
func TestKeyFileRefusedWithFileAndLine(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.key")
	require.NoError(t, GenerateKey(good))
	wide := filepath.Join(dir, "wide.key")
	require.NoError(t, GenerateKey(wide))
	require.NoError(t, os.Chmod(wide, 0o640))
	short := filepath.Join(dir, "short.key")
	require.NoError(t, os.WriteFile(short, []byte("tooshort\n"), 0o600))
	missing := filepath.Join(dir, "missing.key")

	for _, tc := range []struct {
		name, body, want string
	}{
		{"group-readable", fmt.Sprintf("node_id = 2\nkey_file = %q\n", wide), `:2:key_file = "` + wide + `": key file refused: ` + wide + `: mode 0640 lets group or others read it`},
		{"short", fmt.Sprintf("node_id = 2\n\nkey_file = %q\n", short), `:3:key_file = "` + short + `": key file refused: ` + short + `: 8 bytes, at least 16 needed`},
		{"missing", fmt.Sprintf("key_file = %q\n", missing), `:1:key_file = "` + missing + `": key file refused: open ` + missing + `: no such file or directory`},
		{"accept missing", fmt.Sprintf("key_file = %q\naccept_key_files = [%q]\n", good, missing), `:2:accept_key_files[0] = "` + missing + `": key file refused`},
		{"no interface", "node_id = 2\n[networks.b]\ninterface = \"nosuch0\"\n", `:3:networks.b.interface = "nosuch0": no such interface on this host`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeConfig(t, tc.body)
			_, err := loadFlags(t, p)
			require.Error(t, err)
			line, msg, _ := strings.Cut(tc.want[1:], ":")
			require.Contains(t, err.Error(), p+":"+line+":", "file and line")
			require.Contains(t, err.Error(), msg)
			if tc.name != "no interface" {
				require.ErrorIs(t, err, ErrKeyFile)
			}
		})
	}
	c, err := loadFlags(t, writeConfig(t, fmt.Sprintf("key_file = %q\n", good)))
	require.NoError(t, err)
	k, accept, open, err := c.Keys()
	require.NoError(t, err)
	require.False(t, open)
	require.Empty(t, accept)
	require.Len(t, k, 64)
}

// Without a key file the agent runs only when every network is loopback,
// or with insecure = true.
func TestNoKeyOnlyOnLoopbackOrInsecure(t *testing.T) {
	c, err := loadFlags(t, writeConfig(t, "node_id = 2\n"))
	require.NoError(t, err, "loopback networks, no key")
	k, _, open, err := c.Keys()
	require.NoError(t, err)
	require.True(t, open)
	require.Equal(t, InsecureKey(c.ClusterID), k)
	require.NotEqual(t, InsecureKey(1), InsecureKey(2), "clusters on one host stay apart")

	c.Networks[1].Interface = "eth9-not-loopback"
	_, _, _, err = c.Keys()
	var ce *Error
	require.True(t, errors.As(err, &ce))
	require.Equal(t, "networks.b.interface", ce.Key)
	require.Contains(t, ce.Reason, "no key_file is set")
	require.Contains(t, ce.Reason, "fmagent -genkey")

	c.Insecure = true
	_, _, open, err = c.Keys()
	require.NoError(t, err, "insecure = true")
	require.True(t, open)

	c.AcceptKeyFiles = []string{"/x"}
	_, _, _, err = c.Keys()
	require.ErrorContains(t, err, "accept_key_files: is set without key_file")
}

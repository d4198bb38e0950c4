package api_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/api"
)

func TestMain(m *testing.M) {
	if path := os.Getenv("FMAGENT_TEST_PERM_CHILD"); path != "" {
		os.Exit(permChild(path))
	}
	os.Exit(m.Run())
}

func TestAuthorizer(t *testing.T) {
	a, err := api.NewAuthorizer([]string{"4242", "root"}, []string{"4343"})
	require.NoError(t, err)
	assert.True(t, a.Allowed(api.Cred{UID: 0, GID: 9999}), "root is always allowed")
	assert.True(t, a.Allowed(api.Cred{UID: 4242, GID: 1}), "allowed user")
	assert.True(t, a.Allowed(api.Cred{UID: 1000, GID: 4343}), "allowed primary group")
	assert.True(t, a.Allowed(api.Cred{UID: 1000, GID: 1000, Groups: []uint32{27, 4343}}), "allowed supplementary group")
	assert.False(t, a.Allowed(api.Cred{UID: 65534, GID: 65534}))
	assert.False(t, a.Allowed(api.Cred{UID: 1000, GID: 1000, Groups: []uint32{27}}))

	empty, err := api.NewAuthorizer(nil, nil)
	require.NoError(t, err)
	assert.False(t, empty.Allowed(api.Cred{UID: 1000, GID: 1000}), "an empty allow-list allows only root")
	assert.True(t, empty.Allowed(api.Cred{UID: 0}))

	var none *api.Authorizer
	assert.True(t, none.Allowed(api.Cred{UID: 1000}), "no Authorizer: the socket mode is the access control")

	// Names are resolved with os/user; unknown names are an error.
	_, err = api.NewAuthorizer([]string{"no-such-user-fmagent-test"}, nil)
	assert.Error(t, err)
	_, err = api.NewAuthorizer(nil, []string{"no-such-group-fmagent-test"})
	assert.Error(t, err)
	if u, err := user.Current(); err == nil {
		a, err := api.NewAuthorizer([]string{u.Username}, nil)
		require.NoError(t, err)
		uid, _ := strconv.Atoi(u.Uid)
		assert.True(t, a.Allowed(api.Cred{UID: uint32(uid), GID: 4242}))
	}
}

// TestPermissionDenied runs a server whose allow-list excludes the caller:
// writes get permission_denied, reads work, and the connection survives.
// Not running as root, the caller's real credentials are excluded; as root
// (always allowed) the credentials the server reads are replaced by
// nobody's. TestPermissionSetuidChild covers root with real credentials.
func TestPermissionDenied(t *testing.T) {
	auth, err := api.NewAuthorizer([]string{"4242"}, []string{"4343"})
	require.NoError(t, err)
	ts := startServer(t, func(s *api.Server) {
		s.Authorizer = auth
		if os.Geteuid() == 0 {
			api.SetPeerCred(s, func(c *net.UnixConn) (api.Cred, error) {
				cred, err := api.PeerCred(c)
				cred.UID, cred.GID, cred.Groups = 65534, 65534, nil
				return cred, err
			})
		}
	})
	c := dialRaw(t, ts.Path)
	writes := []struct {
		op   api.Op
		body string
	}{
		{api.OpRegister, `{"name":"a","kind":"service"}`},
		{api.OpUnregister, `{"name":"a"}`},
		{api.OpReport, `{"name":"a"}`},
		{api.OpRaise, `{"name":"a","cause":"c","severity":"minor"}`},
		{api.OpClear, `{"name":"a","cause":"c"}`},
		{api.OpSetState, `{"name":"a","state":"down"}`},
		{api.OpSwitchover, `{}`},
	}
	for i, w := range writes {
		e := c.doErr(w.op, uint32(i), w.body)
		assert.ErrorIs(t, e, api.ErrPermission, "%v", w.op)
		assert.Contains(t, e.Message, "may not")
		c.do(api.OpStatus, 100, ``, nil) // the connection survives; reads work
	}
	c.do(api.OpList, 101, `{}`, nil)
	assert.Empty(t, ts.Fake.Calls(), "no denied write reached the handler")
}

// TestPermissionSetuidChild checks authorization end to end with real
// kernel credentials: a child process running as nobody (uid 65534) writes
// to a server that does not allow it, then to one that allows its group.
// It needs root to change uid; without root, TestPermissionDenied already
// runs with real credentials, and this test checks the same through a child
// process of the caller's own uid, which must be denied too.
func TestPermissionSetuidChild(t *testing.T) {
	root := os.Geteuid() == 0
	childUID, childGID := uint32(65534), uint32(65534)
	if !root {
		childUID, childGID = uint32(os.Getuid()), uint32(os.Getgid())
	}
	deny, err := api.NewAuthorizer([]string{"4242"}, []string{"4343"})
	require.NoError(t, err)
	allow, err := api.NewAuthorizer(nil, []string{strconv.Itoa(int(childGID))})
	require.NoError(t, err)

	// Everything the child touches must be reachable by it.
	dir, err := os.MkdirTemp("", "fmagent-perm-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	listen := func(name string, a *api.Authorizer) string {
		path := filepath.Join(dir, name)
		ts := startServerAt(t, path, 0o666, a)
		_ = ts
		return path
	}
	denyPath := listen("deny.sock", deny)
	allowPath := listen("allow.sock", allow)

	bin := filepath.Join(dir, "api.test")
	copyFile(t, os.Args[0], bin, 0o755)
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), "FMAGENT_TEST_PERM_CHILD="+denyPath+","+allowPath)
	if root {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: childUID, Gid: childGID}}
	}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "child: %s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := []string{
		fmt.Sprintf("uid %d", childUID),
		"deny register: permission_denied",
		"deny status: ok",
		"allow register: ok",
	}
	assert.Equal(t, want, lines)
}

// permChild is the child process of TestPermissionSetuidChild.
func permChild(paths string) int {
	deny, allow, _ := strings.Cut(paths, ",")
	fmt.Printf("uid %d\n", os.Getuid())
	call := func(path string, op api.Op, body string) string {
		nc, err := net.Dial("unix", path)
		if err != nil {
			return "dial: " + err.Error()
		}
		defer nc.Close()
		if _, err := nc.Write(api.AppendFrame(nil, api.Header{Version: 1, Op: op, ID: 1}, []byte(body))); err != nil {
			return err.Error()
		}
		h, b, err := api.ReadFrame(bufio.NewReader(nc))
		if err != nil && err != io.EOF {
			return err.Error()
		}
		if h.Flags&api.FlagError != 0 {
			var e api.Error
			json.Unmarshal(b, &e)
			return e.Code
		}
		return "ok"
	}
	fmt.Println("deny register:", call(deny, api.OpRegister, `{"name":"child","kind":"process"}`))
	fmt.Println("deny status:", call(deny, api.OpStatus, ``))
	fmt.Println("allow register:", call(allow, api.OpRegister, `{"name":"child","kind":"process"}`))
	return 0
}

func startServerAt(t *testing.T, path string, mode os.FileMode, a *api.Authorizer) *testServer {
	t.Helper()
	ts := startServer(t, func(s *api.Server) { s.Authorizer = a })
	// startServer listens in its own temp dir; add a listener at path too.
	ln, err := api.Listen(path, mode)
	require.NoError(t, err)
	go ts.Serve(ln)
	return ts
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	require.NoError(t, err)
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())
}

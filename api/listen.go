package api

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// DefaultSocketPath is where the agent listens unless configured otherwise.
const DefaultSocketPath = "/run/fmagent/fmagent.sock"

// sockets remembers, for each listener made by Listen, the path and file it
// created, so that Server.Shutdown can remove exactly that file.
var sockets sync.Map // *net.UnixListener -> socketFile

type socketFile struct {
	path string
	fi   os.FileInfo
}

// Listen creates the unix socket path with the given file mode and listens
// on it. The parent directory is created (mode 0755) if missing.
//
// An existing socket file is removed only if it is stale: nothing answers a
// connect on it. If an agent is listening there, Listen fails with an error
// matching syscall.EADDRINUSE; a file that is not a socket is never removed.
//
// The socket never exists with another mode: it is bound under a private
// temporary directory next to path, chmod-ed, then hard-linked into place
// (which fails rather than replace a socket another process created
// meanwhile). The listener's Addr therefore names the temporary path. The
// listener does not unlink path when closed; Server.Shutdown removes it if
// it is still this listener's socket, and the next Listen removes it if stale.
func Listen(path string, mode os.FileMode) (*net.UnixListener, error) {
	return ListenOwned(path, mode, -1, -1)
}

// ListenOwned is Listen with the socket file owned by uid and gid (-1
// keeps the process's), set before the socket appears at path. The
// directory it creates is 0755: the socket's own mode decides who connects.
func ListenOwned(path string, mode os.FileMode, uid, gid int) (*net.UnixListener, error) {
	if path == "" {
		return nil, errors.New("api: empty socket path")
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("api: socket directory: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	if len(dir)+len("/.fmsock0123456789/s") >= maxSunPath {
		return listenInPlace(path, mode, uid, gid)
	}
	tmpdir, err := os.MkdirTemp(dir, ".fmsock")
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	defer os.RemoveAll(tmpdir)
	tmp := filepath.Join(tmpdir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("api: listen: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, error) {
		ln.Close()
		return nil, fmt.Errorf("api: listen on %s: %w", path, err)
	}
	if uid >= 0 || gid >= 0 {
		if err := os.Lchown(tmp, uid, gid); err != nil {
			return fail(err)
		}
	}
	if err := os.Chmod(tmp, mode.Perm()); err != nil {
		return fail(err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			err = fmt.Errorf("%w (created by another process meanwhile)", syscall.EADDRINUSE)
		}
		return fail(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	sockets.Store(ln, socketFile{path: path, fi: fi})
	return ln, nil
}

// maxSunPath is the size of sockaddr_un.sun_path on Linux, NUL included.
const maxSunPath = 108

// listenInPlace is Listen when the temporary path would be too long for a
// socket address: bind at path, then chmod (the socket briefly has the mode
// the umask gives it).
func listenInPlace(path string, mode os.FileMode, uid, gid int) (*net.UnixListener, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("api: listen: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	fi, err := os.Lstat(path)
	if err == nil && (uid >= 0 || gid >= 0) {
		err = os.Lchown(path, uid, gid)
	}
	if err == nil {
		err = os.Chmod(path, mode.Perm())
	}
	if err != nil {
		ln.Close()
		os.Remove(path)
		return nil, fmt.Errorf("api: listen on %s: %w", path, err)
	}
	sockets.Store(ln, socketFile{path: path, fi: fi})
	return ln, nil
}

// removeStale removes path if it is a socket nobody listens on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("api: %s exists and is not a socket; not removing it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("api: %s: another process is listening: %w", path, syscall.EADDRINUSE)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("api: %s exists and cannot tell whether it is stale: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("api: removing stale socket: %w", err)
	}
	return nil
}

// removeSocket removes the socket file Listen created for ln, if it is still
// that file.
func removeSocket(ln *net.UnixListener) {
	v, ok := sockets.LoadAndDelete(ln)
	if !ok {
		return
	}
	sf := v.(socketFile)
	if fi, err := os.Lstat(sf.path); err == nil && os.SameFile(fi, sf.fi) {
		os.Remove(sf.path)
	}
}

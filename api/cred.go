package api

import (
	"encoding/binary"
	"fmt"
	"net"
	"os/user"
	"slices"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Cred is who is on the other end of a connection, as the kernel recorded it
// when the client connected (SO_PEERCRED, SO_PEERGROUPS). It does not change
// for the life of the connection.
type Cred struct {
	PID    int32
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups (SO_PEERGROUPS); nil if unknown
}

// PeerCred reads the credentials of the peer of a unix socket connection.
func PeerCred(c *net.UnixConn) (Cred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Cred{}, err
	}
	var cred Cred
	var uerr, gerr error
	err = raw.Control(func(fd uintptr) {
		var u *unix.Ucred
		u, uerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if uerr != nil {
			return
		}
		cred = Cred{PID: u.Pid, UID: u.Uid, GID: u.Gid}
		cred.Groups, gerr = peerGroups(int(fd))
	})
	if err != nil {
		return Cred{}, err
	}
	if uerr != nil {
		return Cred{}, fmt.Errorf("api: SO_PEERCRED: %w", uerr)
	}
	if gerr != nil {
		// Supplementary groups are only used to grant write access; without
		// them the caller is judged on uid and primary gid alone.
		cred.Groups = nil
	}
	return cred, nil
}

// peerGroups reads SO_PEERGROUPS (Linux 4.13+): the peer's supplementary
// groups at connect time, as an array of gid_t.
func peerGroups(fd int) ([]uint32, error) {
	buf := make([]byte, 64*4)
	for {
		n := uint32(len(buf))
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		if errno == unix.ERANGE && int(n) > len(buf) {
			buf = make([]byte, n)
			continue
		}
		if errno != 0 {
			return nil, errno
		}
		gs := make([]uint32, 0, n/4)
		for i := 0; i+4 <= int(n); i += 4 {
			gs = append(gs, binary.NativeEndian.Uint32(buf[i:]))
		}
		return gs, nil
	}
}

// Authorizer decides who may write: Register, Unregister, Report, Raise,
// Clear, SetState and Switchover. Reads (Get, List, Watch, Status) only need
// access to the socket, which its file mode controls. Root (uid 0) may
// always write; so may the allowed users, and any process whose primary or
// supplementary group is an allowed group.
//
// A nil *Authorizer allows every caller: the socket's file mode is then the
// only access control.
type Authorizer struct {
	uids   []uint32
	gids   []uint32
	grants []Grant // per-op grants (grants.go)
}

// NewAuthorizer resolves the allowed user and group names (or numeric IDs)
// once, with os/user, so that no name service is consulted per connection.
// An unknown name is an error: a typo in the configuration must not silently
// lock out (or let in) anyone.
func NewAuthorizer(users, groups []string) (*Authorizer, error) {
	a := &Authorizer{}
	for _, name := range users {
		id, err := lookupID(name, func(n string) (string, error) {
			u, err := user.Lookup(n)
			if err != nil {
				return "", err
			}
			return u.Uid, nil
		})
		if err != nil {
			return nil, fmt.Errorf("api: allowed user %q: %w", name, err)
		}
		a.uids = append(a.uids, id)
	}
	for _, name := range groups {
		id, err := lookupID(name, func(n string) (string, error) {
			g, err := user.LookupGroup(n)
			if err != nil {
				return "", err
			}
			return g.Gid, nil
		})
		if err != nil {
			return nil, fmt.Errorf("api: allowed group %q: %w", name, err)
		}
		a.gids = append(a.gids, id)
	}
	return a, nil
}

// lookupID accepts a decimal ID as is, and resolves anything else by name.
func lookupID(name string, lookup func(string) (string, error)) (uint32, error) {
	if id, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(id), nil
	}
	s, err := lookup(name)
	if err != nil {
		return 0, err
	}
	id, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("non-numeric id %q", s)
	}
	return uint32(id), nil
}

// Allowed reports whether c may write.
func (a *Authorizer) Allowed(c Cred) bool {
	if a == nil || c.UID == 0 {
		return true
	}
	if slices.Contains(a.uids, c.UID) || slices.Contains(a.gids, c.GID) {
		return true
	}
	for _, g := range c.Groups {
		if slices.Contains(a.gids, g) {
			return true
		}
	}
	return false
}

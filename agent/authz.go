package agent

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/wire"
)

// foreignCheck refuses op on e for a caller who may not act on entities
// this node does not own as a client (api.Authorizer.MayForeign): an
// entity owned by another node (an allowed user on node 2 unregistering
// node 1's service), or this node's own node and link entities, whose
// state the agent decides from heartbeats (fmctl down node/2 would send
// node 2 into fence and reincarnation cycles). mu held.
func (a *agent) foreignCheck(cred api.Cred, op api.Op, e *table.Entity) error {
	var why string
	switch {
	case e.Owner != a.self:
		why = "is owned by another node"
	case e.Kind == wire.KindNode || e.Kind == wire.KindLink:
		why = "is this node's own " + string(api.KindOf(e.Kind)) + " entity, kept by the agent"
	default:
		return nil
	}
	var auth *api.Authorizer
	if a.srv != nil {
		auth = a.srv.Authorizer
	}
	if auth.MayForeign(cred, op) {
		return nil
	}
	return api.Errorf(api.ErrPermission, "%q %s (node %d): uid %d may not %s it (root, the agent's user, or an [[api.grants]] with foreign = true may)",
		e.Name, why, e.Owner, cred.UID, op)
}

// newAuthorizer builds the API's authorizer from [api]: nil (the socket's
// mode alone decides) when no allow list and no grant is configured.
func newAuthorizer(c config.API) (*api.Authorizer, error) {
	if len(c.AllowUsers) == 0 && len(c.AllowGroups) == 0 && len(c.Grants) == 0 {
		return nil, nil
	}
	auth, err := api.NewAuthorizer(c.AllowUsers, c.AllowGroups)
	if err != nil {
		return nil, err
	}
	for i, g := range c.Grants {
		if err := auth.AddGrant(g.Users, g.Groups, g.Ops, g.Foreign); err != nil {
			return nil, fmt.Errorf("api.grants[%d]: %w", i, err)
		}
	}
	return auth, nil
}

// apiLimits are the client limits of [api].
func apiLimits(c config.API) api.Limits {
	return api.Limits{MaxConns: c.MaxConns, MaxConnsPerUID: c.MaxConnsPerUID, IdleTimeout: c.IdleTimeout,
		FrameTimeout: c.FrameTimeout, WriteRate: c.WriteRate, WriteBurst: c.WriteBurst}
}

// listenAPI listens on the socket with the configured mode, owner and
// group, and says at start who can connect.
func listenAPI(path string, c config.API, log *slog.Logger) (*net.UnixListener, error) {
	uid, gid := -1, -1
	if c.SocketOwner != "" {
		u, err := lookupNumeric(c.SocketOwner, func(n string) (string, error) {
			u, err := user.Lookup(n)
			if err != nil {
				return "", err
			}
			return u.Uid, nil
		})
		if err != nil {
			return nil, fmt.Errorf("api.socket_owner %q: %w", c.SocketOwner, err)
		}
		uid = u
	}
	if c.SocketGroup != "" {
		g, err := lookupNumeric(c.SocketGroup, func(n string) (string, error) {
			g, err := user.LookupGroup(n)
			if err != nil {
				return "", err
			}
			return g.Gid, nil
		})
		if err != nil {
			return nil, fmt.Errorf("api.socket_group %q: %w", c.SocketGroup, err)
		}
		gid = g
	}
	mode := c.SocketFileMode()
	if mode == 0 {
		mode = 0o660
	}
	ln, err := api.ListenOwned(path, mode, uid, gid)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			log.Info("API socket", "path", path, "mode", fmt.Sprintf("%04o", fi.Mode().Perm()), "uid", st.Uid, "gid", st.Gid)
		}
	}
	if (len(c.AllowUsers) > 0 || len(c.Grants) > 0) && mode&0o006 == 0 {
		log.Warn("api: allow_users or grants name users, but the socket's mode lets only its owner and group connect: users outside the group cannot reach the socket (set api.socket_group or api.socket_mode)", "mode", fmt.Sprintf("%04o", mode))
	}
	return ln, nil
}

func lookupNumeric(name string, lookup func(string) (string, error)) (int, error) {
	if id, err := strconv.ParseUint(name, 10, 32); err == nil {
		return int(id), nil
	}
	s, err := lookup(name)
	if err != nil {
		return 0, err
	}
	id, err := strconv.ParseUint(s, 10, 32)
	return int(id), err
}

// Bounds on process registrations: one pidfd per watched process (shared
// by its registrations), at most maxWatchedProcs of them, and at most
// maxProcRegistrations registrations; one more is refused with busy
// (22,044 registrations used to exhaust the fd limit, after which
// registrations succeeded with entities that would never go down).
const (
	maxWatchedProcs      = 4096
	maxProcRegistrations = 16384
)

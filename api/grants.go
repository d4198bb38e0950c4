package api

import (
	"fmt"
	"os"
	"slices"
)

// Grant lets some users and groups perform some write ops. With Foreign
// they may also act on entities the node does not own as a client would:
// entities owned by another node, and the agent's own node and link
// entities (node/N, node/N/link/x), whose state the agent itself decides.
type Grant struct {
	uids, gids []uint32
	ops        []Op
	foreign    bool
}

// writeOps are the ops a grant may name.
var writeOps = []Op{OpRegister, OpUnregister, OpReport, OpRaise, OpClear, OpSetState, OpSwitchover}

// OpByName returns the write op named name ("raise", "set_state", ...).
func OpByName(name string) (Op, bool) {
	for _, o := range writeOps {
		if o.String() == name {
			return o, true
		}
	}
	return 0, false
}

// AddGrant lets the users and groups (names or numeric IDs, resolved once)
// perform ops (names: register, unregister, report, raise, clear,
// set_state, switchover; none: all of them), and with foreign act on
// entities this node does not own as a client (see Grant).
func (a *Authorizer) AddGrant(users, groups, ops []string, foreign bool) error {
	b, err := NewAuthorizer(users, groups)
	if err != nil {
		return err
	}
	g := Grant{uids: b.uids, gids: b.gids, foreign: foreign}
	for _, n := range ops {
		o, ok := OpByName(n)
		if !ok {
			return fmt.Errorf("api: grant: unknown op %q", n)
		}
		g.ops = append(g.ops, o)
	}
	if len(g.ops) == 0 {
		g.ops = writeOps
	}
	a.grants = append(a.grants, g)
	return nil
}

func (g *Grant) has(c Cred) bool {
	if slices.Contains(g.uids, c.UID) || slices.Contains(g.gids, c.GID) {
		return true
	}
	for _, gid := range c.Groups {
		if slices.Contains(g.gids, gid) {
			return true
		}
	}
	return false
}

// privileged: root, or the user the agent runs as (who could as well
// write its files).
func privileged(c Cred) bool { return c.UID == 0 || int(c.UID) == os.Geteuid() }

// MayOp reports whether c may perform the write op o: root and the agent's
// own user always may; the allowed users and groups may perform every
// write op; a grant's users and groups the grant's ops. A nil Authorizer
// allows everyone who can open the socket.
func (a *Authorizer) MayOp(c Cred, o Op) bool {
	if a == nil || privileged(c) || a.Allowed(c) {
		return true
	}
	for i := range a.grants {
		if slices.Contains(a.grants[i].ops, o) && a.grants[i].has(c) {
			return true
		}
	}
	return false
}

// MayForeign reports whether c may perform o on an entity this node does
// not own as a client (owned by another node, or the node's own node and
// link entities): root and the agent's own user, and a grant with foreign
// set that names o. Never anyone else, whatever the socket lets in.
func (a *Authorizer) MayForeign(c Cred, o Op) bool {
	if privileged(c) {
		return true
	}
	if a == nil {
		return false
	}
	for i := range a.grants {
		if a.grants[i].foreign && slices.Contains(a.grants[i].ops, o) && a.grants[i].has(c) {
			return true
		}
	}
	return false
}

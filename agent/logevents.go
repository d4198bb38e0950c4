package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os/user"
	"strconv"
	"sync"
	"time"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/transport"
	"github.com/fmagent/fmagent/wire"
)

// Logs an operator reads at 3 a.m. (issue 11): what changes the cluster
// (a peer lost, a master change, fencing, a split network, a split brain,
// misconfiguration) is logged at WARN, once; what repeats (bad packets,
// stalls) is aggregated; every line carries the node ID (Run adds it to the
// logger); every write through the API leaves an audit line.

// Tunables, variables so that tests can shorten them.
var (
	// rejectLogEvery: a source of bad packets (wrong key, other cluster,
	// other version, a duplicate node ID) is logged at most this often.
	rejectLogEvery = time.Minute
	// stallLogEvery: stalls after the first are summed up at most this often.
	stallLogEvery = time.Minute
)

// eventLog is the state of the aggregated and rate-limited log lines.
type eventLog struct {
	mu      sync.Mutex // the receive loops log rejects without a.mu's help
	rejects map[rejectKey]*rejectCount

	// Stalls (mu of the agent held: they come from Tick).
	stallLogged time.Time
	stallCount  int
	stallWorst  time.Duration
	stallSince  time.Time
}

type rejectKey struct {
	reason string
	from   netip.Addr // the sender's IP: its group and unicast sockets have different ports
}

type rejectCount struct {
	logged time.Time
	count  int // since logged
}

// rejectExplained are the rejection reasons that mean a misconfigured
// sender, with what to tell the operator.
var rejectExplained = map[string]string{
	"auth":      "packets fail authentication: a node with another cluster key (key_file), or forged packets",
	"cluster":   "packets of another cluster_id on this network: another cluster shares the multicast group and port",
	"version":   "packets of another protocol version: a node running an incompatible fmagent",
	"duplicate": "packets from another node using this node's node_id",
}

// warnRejected logs a rejected packet whose reason points at a
// misconfigured sender, at most once per rejectLogEvery per sender IP
// and reason, with how many more came in between. Safe without a.mu.
func (a *agent) warnRejected(m *transport.Message, err error) {
	reason := wire.Reason(err)
	if errors.Is(err, core.ErrDuplicateID) {
		reason = "duplicate"
	}
	what, ok := rejectExplained[reason]
	if !ok {
		return
	}
	now := time.Now()
	l := &a.evlog
	l.mu.Lock()
	if l.rejects == nil {
		l.rejects = make(map[rejectKey]*rejectCount)
	}
	k := rejectKey{reason, m.From.Addr()}
	rc, ok := l.rejects[k]
	if !ok {
		if len(l.rejects) > 4096 { // a flood of forged sources: start again
			clear(l.rejects)
		}
		rc = &rejectCount{}
		l.rejects[k] = rc
	}
	rc.count++
	if !rc.logged.IsZero() && now.Sub(rc.logged) < rejectLogEvery {
		l.mu.Unlock()
		return
	}
	n := rc.count
	rc.count, rc.logged = 0, now
	l.mu.Unlock()
	a.log.Warn(what, "from", m.From.String(), "net", netName(m.Net), "reason", reason, "packets", n,
		"next_report_in", rejectLogEvery.String())
}

// stalled aggregates the core's stall events: the first is logged at once,
// later ones summed up at most once per stallLogEvery. mu held.
func (a *agent) stalled(gap string) {
	d, _ := time.ParseDuration(gap)
	now := time.Now()
	l := &a.evlog
	if l.stallCount == 0 {
		l.stallSince = now
	}
	l.stallCount++
	l.stallWorst = max(l.stallWorst, d)
	a.log.Debug("stalled", "gap", gap)
	if !l.stallLogged.IsZero() && now.Sub(l.stallLogged) < stallLogEvery {
		return
	}
	if l.stallLogged.IsZero() {
		a.log.Warn("this agent stalled (scheduling, a paused VM, GC); judging peers deferred; further stalls are summed up every "+stallLogEvery.String(),
			"gap", gap)
	} else {
		a.log.Warn("this agent stalled repeatedly; judging peers was deferred each time",
			"stalls", l.stallCount, "since", l.stallSince.UTC().Format(time.RFC3339), "worst_gap", l.stallWorst.String())
	}
	l.stallLogged, l.stallCount, l.stallWorst = now, 0, 0
}

// logEvent logs one core event at the level its consequence deserves.
func (a *agent) logEvent(e *core.Event) {
	switch e.Kind {
	case core.EvRejected:
		if a.log.Enabled(context.Background(), slog.LevelDebug) {
			a.log.Debug("rejected", "reason", e.Reason)
		}
	case core.EvElected:
		a.log.Warn("elected master", "epoch", e.Epoch)
	case core.EvSteppedDown:
		a.log.Warn("stepped down: another master outranks this one", "master", e.Node, "epoch", e.Epoch)
	case core.EvFollowing:
		a.log.Warn("following master", "master", e.Node, "epoch", e.Epoch)
	case core.EvMasterLost:
		a.log.Warn("master lost", "epoch", e.Epoch)
	case core.EvPeerUp:
		a.log.Info("peer up", "peer", e.Node, "net", netName(e.Net))
	case core.EvPeerDown:
		if e.Bound > 0 {
			a.log.Warn("peer down", "peer", e.Node, "reason", e.Reason, "unheard", e.Unheard, "bound", e.Bound)
		} else {
			a.log.Warn("peer down", "peer", e.Node, "reason", e.Reason)
		}
	case core.EvLinkUp:
		a.log.Info("link up", "peer", e.Node, "net", netName(e.Net))
	case core.EvLinkDown:
		a.log.Warn("link down", "peer", e.Node, "net", netName(e.Net))
	case core.EvStale:
		a.log.Warn("stale: no word from a master for longer than the stale timeout", "stale_timeout", a.cfg.Timing.StaleTimeout)
	case core.EvFresh:
		a.log.Info("fresh: a master again")
	case core.EvReincarnated:
		a.log.Warn("fenced by the cluster: rejoining under a new incarnation", "incarnation", core.ShortInc(a.core.Incarnation()), "reason", e.Reason)
	case core.EvSnapshotApplied:
		a.log.Info("table replaced by a snapshot from the master")
	case core.EvTxnSuspect:
		a.log.Warn("a member did not acknowledge a transaction in time", "peer", e.Node)
	case core.EvStalled:
		a.stalled(e.Reason)
	case core.EvPartitioned:
		a.log.Warn("network partitioned: its members cannot all hear each other", "net", netName(e.Net), "parts", e.Reason,
			"alarm", core.NetName(e.Net)+" "+core.PartitionedCause)
	case core.EvPartitionHealed:
		a.log.Warn("network whole again", "net", netName(e.Net))
	case core.EvDuplicateNode:
		if a.core.Refused() {
			a.log.Error(e.Reason)
		} else {
			a.log.Warn(e.Reason, "duplicate_node_id", e.Node)
		}
	case core.EvTimingMismatch:
		a.log.Warn("timing mismatch: "+e.Reason, "peer", e.Node)
	case core.EvWaitingQuorum:
		a.log.Warn("no master: "+e.Reason, "hint", "fmctl raise and other writes answer no_master until then")
	case core.EvQuorumReached:
		a.log.Warn("quorum reached: a master again", "master", e.Node, "epoch", e.Epoch)
	case core.EvSplitBrain:
		a.log.Warn(e.Reason, "other_master", e.Node, "other_epoch", e.Epoch)
	case core.EvSplitBrainHealed:
		a.log.Warn(e.Reason, "master", e.Node, "epoch", e.Epoch)
	default:
		a.log.Info("event", "kind", e.Kind.String(), "node", e.Node, "reason", e.Reason)
	}
}

// audit logs one write made through the API: who (uid, user name, pid),
// from which node (the logger's node attribute), what, and the verdict.
func (a *agent) audit(cred api.Cred, op, name string, attrs []any, res *api.ReportResult, err error) {
	args := []any{"op", op, "entity", name, "uid", cred.UID, "user", userName(cred.UID), "pid", cred.PID}
	args = append(args, attrs...)
	switch {
	case err != nil:
		args = append(args, "verdict", "error", "err", err.Error())
	case res != nil:
		args = append(args, "verdict", res.Verdict, "seq", res.Seq)
	default:
		args = append(args, "verdict", "ok")
	}
	a.log.Info("audit", args...)
}

// userName resolves a uid to a name (cached; "" if it has none).
func userName(uid uint32) string {
	if v, ok := userNames.Load(uid); ok {
		return v.(string)
	}
	name := ""
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		name = u.Username
	}
	userNames.Store(uid, name)
	return name
}

var userNames sync.Map

// sevAttr is the severity attribute of an audit line.
func sevAttr(s api.Severity) []any {
	if s == "" {
		return nil
	}
	return []any{"severity", string(s)}
}

func causeAttr(cause string) []any {
	if cause == "" {
		return nil
	}
	return []any{"cause", cause}
}

package core

import (
	"time"

	"github.com/fmagent/fmagent/wire"
)

// appliedKeep is how many applied requests a node remembers (appliedReqs).
const appliedKeep = 4096

// A snapshot carries, after the table, the marks of the requests applied
// in the last marksWindow intervals, at most marksKeep of them (the newest):
// the node whose table it replaces remembers them as if it had applied
// them. A retransmission comes every five intervals until it is answered;
// one that outlives two masters (the second synced its table by snapshot
// from the first) is what the marks are for (TestRetransmissionAfterASnapshot).
// Each master change takes a detection bound (five intervals at the
// profiles' misses) and a claim, so two of them and the retransmissions
// between fit in some twenty intervals: the window is five times that.
// Bounded because a claim's snapshot goes out just before the old
// master's down, which waits behind it at every follower: it grows by at
// most marksKeep changes of 75 bytes (about 15 datagrams, 17 marks each)
// in a flood of a thousand requests a second or more, by a datagram at
// ten a second, and by nothing on a quiet cluster. A request
// retransmitted for longer than that (its reporter cut off from every
// master, not fenced), or pushed out by a flood, is decided again by a
// master that synced its table since it was applied.
const (
	marksWindow = 100 // intervals
	marksKeep   = 256
)

// appliedReqs remembers the clients' requests whose changes this node
// applied to its table, as the master that applied them marked them
// (wire.Change.Req): the reporter, the request's ID, and the seq and
// version of the change marked (the master's answer, for a group of one
// change, as nearly every request's is). A node that becomes master answers a
// retransmission of one of them from here (masterState.inherited, decide)
// instead of deciding it again: the reporter never got the answer (lost,
// or the master died first) and sends the request to the next master,
// which applied it once already, through the replication, and may have
// applied a later write over it since. Decided again, a raise undid an
// acknowledged clear made in between (TestRetransmissionToTheNextMaster).
//
// It is written on the apply path without allocating, and read only when
// the node becomes master or sends a snapshot. Only what the table holds
// counts: a snapshot replaces the table, and with it what this remembers,
// with the marks the snapshot carries (appendMarks, wire.ChangeApplied).
type appliedReqs struct {
	ring []appliedReq // appliedKeep entries (init)
	next int
	n    int
}

type appliedReq struct {
	key appliedKey
	seq uint64
	ver wire.WriteVersion
	at  int64 // the marked change's At: when the master decided it
	// displaced: the request was a raise that displaced a less severe
	// alarm (wire.ChangeReqDisplaced), answered ackDisplaced.
	displaced bool
}

// appliedKey names a request across masters: its reporter and its ID
// (which holds the low bits of the reporter's incarnation: newReportID).
type appliedKey struct {
	from wire.NodeID
	id   uint64
}

func (a *appliedReqs) init() { a.ring = make([]appliedReq, appliedKeep) }

// put records the request change c marks (c.Req not zero), or the mark c
// is (wire.ChangeApplied, from a snapshot).
func (a *appliedReqs) put(c *wire.Change) {
	a.ring[a.next] = appliedReq{key: appliedKey{c.By, c.Req}, seq: c.Seq, ver: c.Ver, at: c.At, displaced: c.Flags&wire.ChangeReqDisplaced != 0}
	a.next = (a.next + 1) % len(a.ring)
	a.n = min(a.n+1, len(a.ring))
}

// reset forgets everything (the table was replaced).
func (a *appliedReqs) reset() { a.next, a.n = 0, 0 }

// newest returns the i-th newest request remembered (0: the newest; i <
// a.n).
func (a *appliedReqs) newest(i int) *appliedReq {
	j := a.next - 1 - i
	if j < 0 {
		j += len(a.ring)
	}
	return &a.ring[j]
}

// memo is the answer a request remembered was given.
func (r *appliedReq) memo() ackMemo {
	m := ackMemo{seq: r.seq, ver: r.ver, code: ackOK}
	if r.displaced {
		m.code = ackDisplaced
	}
	return m
}

// index fills m (cleared first) with what a remembers, the later of two
// marks of one request winning.
func (a *appliedReqs) index(m map[appliedKey]ackMemo) map[appliedKey]ackMemo {
	if m == nil {
		m = make(map[appliedKey]ackMemo, a.n)
	}
	clear(m)
	for i := a.n - 1; i >= 0; i-- {
		r := a.newest(i)
		m[r.key] = r.memo()
	}
	return m
}

// find returns what a remembers of request k, the latest mark winning. It
// reads the whole ring (4,096 entries, a few microseconds): only for a
// request of a reporter's earlier life (decide), whose answer the master
// then keeps. It walks the ring's two runs as slices, not with newest: the
// bounds check and the branch per entry made the scan 1.5-2 times as slow
// (BenchmarkAppliedFind).
func (a *appliedReqs) find(k appliedKey) (ackMemo, bool) {
	newer, older := a.ring[:a.next], a.ring[a.next:]
	if a.n < len(a.ring) {
		older = nil // not yet wrapped: nothing past next
	}
	for _, run := range [2][]appliedReq{newer, older} {
		for i := len(run) - 1; i >= 0; i-- {
			if r := &run[i]; r.key == k {
				return r.memo(), true
			}
		}
	}
	return ackMemo{}, false
}

// appendMarks appends to dst, oldest first, the marks (wire.ChangeApplied)
// of the newest requests remembered, at most keep of them, decided no
// earlier than window before now.
func (a *appliedReqs) appendMarks(dst []wire.Change, now time.Time, window time.Duration, keep int) []wire.Change {
	since := now.Add(-window).UnixNano()
	k := 0
	for k < min(a.n, keep) && a.newest(k).at >= since {
		k++
	}
	for i := k - 1; i >= 0; i-- {
		r := a.newest(i)
		c := wire.Change{Seq: r.seq, Kind: wire.ChangeApplied, By: r.key.from, Req: r.key.id, Ver: r.ver, At: r.at}
		if r.displaced {
			c.Flags = wire.ChangeReqDisplaced
		}
		dst = append(dst, c)
	}
	return dst
}

// markRequest marks, in a group whose only request was applied (answered
// ackOK, or ackDisplaced: a raise that made room), the last change made on
// the reporter's behalf with the request's ID (wire.Change.Req), and with
// how it was answered (wire.ChangeReqDisplaced).
func markRequest(cs []wire.Change, a reportRef, code uint8) {
	for i := len(cs) - 1; i >= 0; i-- {
		if cs[i].By == a.from {
			cs[i].Req = a.id
			if code == ackDisplaced {
				cs[i].Flags |= wire.ChangeReqDisplaced
			}
			return
		}
	}
}

// AppliedRequests calls fn, oldest first, for every request this node
// remembers its table applying (appliedReqs): the reporter, the request's
// ID and the seq of the change marked with it. For the simulator's check
// that no request is applied twice (netsim, InvAppliedOnce).
func (n *Node) AppliedRequests(fn func(from wire.NodeID, id, seq uint64)) {
	a := &n.applied
	for i := a.n - 1; i >= 0; i-- {
		r := a.newest(i)
		fn(r.key.from, r.key.id, r.seq)
	}
}

package core

import "github.com/fmagent/fmagent/wire"

// appliedKeep is how many applied requests a node remembers (appliedReqs).
const appliedKeep = 4096

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
// the node becomes master. Only what the table holds counts: a snapshot
// replaces the table, and with it what this remembers.
type appliedReqs struct {
	ring []appliedReq // appliedKeep entries (init)
	next int
	n    int
}

type appliedReq struct {
	key appliedKey
	seq uint64
	ver wire.WriteVersion
}

// appliedKey names a request across masters: its reporter and its ID
// (which holds the low bits of the reporter's incarnation: newReportID).
type appliedKey struct {
	from wire.NodeID
	id   uint64
}

func (a *appliedReqs) init() { a.ring = make([]appliedReq, appliedKeep) }

// put records the request change c marks (c.Req not zero).
func (a *appliedReqs) put(c *wire.Change) {
	a.ring[a.next] = appliedReq{key: appliedKey{c.By, c.Req}, seq: c.Seq, ver: c.Ver}
	a.next = (a.next + 1) % len(a.ring)
	a.n = min(a.n+1, len(a.ring))
}

// reset forgets everything (the table was replaced).
func (a *appliedReqs) reset() { a.next, a.n = 0, 0 }

// index fills m (cleared first) with what a remembers, the later of two
// marks of one request winning.
func (a *appliedReqs) index(m map[appliedKey]ackMemo) map[appliedKey]ackMemo {
	if m == nil {
		m = make(map[appliedKey]ackMemo, a.n)
	}
	clear(m)
	start := (a.next - a.n + len(a.ring)) % len(a.ring)
	for i := 0; i < a.n; i++ {
		r := &a.ring[(start+i)%len(a.ring)]
		m[r.key] = ackMemo{seq: r.seq, ver: r.ver, code: ackOK}
	}
	return m
}

// markRequest marks, in a group whose only request was applied (answered
// ackOK), the last change made on the reporter's behalf with the request's
// ID (wire.Change.Req).
func markRequest(cs []wire.Change, a reportRef) {
	for i := len(cs) - 1; i >= 0; i-- {
		if cs[i].By == a.from {
			cs[i].Req = a.id
			return
		}
	}
}

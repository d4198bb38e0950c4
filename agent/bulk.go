package agent

import (
	"net/netip"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/transport"
	"github.com/fmagent/fmagent/wire"
)

// bulkMin is the number of unicast, non-priority packets in one Ready from
// which they are handed to the bulk sender instead of being sent under the
// lock: a snapshot of a 20,000-entity table is ~200 datagrams, whose
// sendmsgs held the lock (and so the heartbeats) for milliseconds (issue 8).
const bulkMin = 8

// bulkJob is one Ready's bulk packets, copied out of the core's buffers
// (valid only until the next call into the core) with their destinations
// resolved under the lock.
type bulkJob struct {
	data []byte // the packets, back to back
	pkts []bulkPkt
}

type bulkPkt struct {
	off, n int
	net    wire.Net
	to     netip.AddrPort
}

// bulkPackets counts the packets of rd that the bulk sender takes.
func bulkPackets(rd *core.Ready) int {
	k := 0
	for i := range rd.Packets {
		if isBulk(&rd.Packets[i]) {
			k++
		}
	}
	return k
}

func isBulk(p *core.Packet) bool { return p.To != 0 && !p.Prio }

// queueBulk copies rd's bulk packets into a job for the bulk sender. mu
// held, on the real-time loop. The job and its buffers are one the sender
// gave back (bulkFree) when there is one, grown at once to the size of
// the packets if it is too small: a copy appended packet by packet
// reallocated a snapshot's buffer a dozen times, and under mlockall each
// new page is a fault the loop waits for (11 % of the agents' CPU under a
// registration storm of 4,000 entities, perf).
func (a *agent) queueBulk(rd *core.Ready) {
	var job *bulkJob
	select {
	case job = <-a.bulkFree:
	default:
		job = &bulkJob{}
	}
	size, n := 0, 0
	for i := range rd.Packets {
		if p := &rd.Packets[i]; isBulk(p) {
			size += len(p.Data)
			n += wire.NumNets
		}
	}
	if cap(job.data) < size {
		job.data = make([]byte, 0, size)
	}
	if cap(job.pkts) < n {
		job.pkts = make([]bulkPkt, 0, n)
	}
	job.data, job.pkts = job.data[:0], job.pkts[:0]
	for i := range rd.Packets {
		p := &rd.Packets[i]
		if !isBulk(p) {
			continue
		}
		off := len(job.data)
		job.data = append(job.data, p.Data...)
		for n := wire.Net(0); n < wire.NumNets; n++ {
			if p.Nets&(1<<n) == 0 {
				continue
			}
			to, ok := a.addrs[n][p.To]
			if !ok {
				a.m.noAddr.Inc()
				continue
			}
			job.pkts = append(job.pkts, bulkPkt{off: off, n: len(p.Data), net: n, to: to})
		}
	}
	select {
	case a.bulkq <- job:
	default:
		// The sender is behind by a whole queue of snapshots: this one is
		// dropped, as a datagram lost on the wire would be (the peer asks
		// again).
		a.m.bulkDropped.Inc()
		a.bulkDone(job)
	}
}

// bulkDone gives a job whose packets are sent (or dropped) back for the
// next queueBulk; beyond what bulkFree holds, to the garbage collector.
func (a *agent) bulkDone(job *bulkJob) {
	select {
	case a.bulkFree <- job:
	default:
	}
}

// bulkLoop sends the queued bulk packets off the lock, with a sender of its
// own (a Sender's buffers are not shared between goroutines). A job's
// packets go network by network, each run of them to one peer in one
// sendmmsg per transport.MaxBatch (WriteBatchTo): a snapshot of 64
// datagrams took half the time of one sendmsg each on lo
// (BenchmarkUnicastBurst in transport).
func (a *agent) bulkLoop(q <-chan *bulkJob) {
	snd := a.tr.NewSender()
	batch := make([][]byte, 0, transport.MaxBatch)
	for job := range q {
		for n := wire.Net(0); n < wire.NumNets; n++ {
			var to netip.AddrPort
			for _, p := range job.pkts {
				if p.net != n {
					continue
				}
				if len(batch) > 0 && p.to != to {
					_, _ = snd.WriteBatchTo(n, to, batch, false)
					batch = batch[:0]
				}
				to = p.to
				batch = append(batch, job.data[p.off:p.off+p.n])
			}
			if len(batch) > 0 {
				_, _ = snd.WriteBatchTo(n, to, batch, false)
				batch = batch[:0]
			}
		}
		a.bulkDone(job)
	}
}

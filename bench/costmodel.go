package bench

import (
	"math/bits"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/agent/core"
	"github.com/fmagent/fmagent/netsim"
)

// Cost is what one node of an idle N-node cluster sends and receives, as
// counted on the simulator (netsim runs the real core; each datagram a
// node's Ready hands to the transport is counted once per network it goes
// on, and once per node it reaches).
type Cost struct {
	Nodes    int           `json:"nodes"`
	Interval time.Duration `json:"interval_ns"`
	Misses   int           `json:"misses"`
	// Per node and second, the mean over the nodes (the master sends a
	// little more than the others, so Max is given too).
	SentPerS     float64 `json:"sent_per_second"`
	RecvPerS     float64 `json:"received_per_second"`
	MaxSentPerS  float64 `json:"max_sent_per_second"`
	SentBytesPS  float64 `json:"sent_bytes_per_second"`
	RecvBytesPS  float64 `json:"received_bytes_per_second"`
	MeanDatagram float64 `json:"mean_datagram_bytes"`
	// Window is the simulated time counted, after the cluster formed.
	Window time.Duration `json:"window_ns"`
	// SimCPUPerRecv is the simulating thread's CPU time over the window
	// (CLOCK_THREAD_CPUTIME_ID, the goroutine locked to its thread) divided
	// by the datagrams delivered: the core's Step of a datagram plus the
	// simulator's own queueing and copying.
	SimCPUPerRecv time.Duration `json:"sim_cpu_per_received_ns"`
}

// CostModel simulates an idle cluster of n nodes with the given timing
// for window (after 100 intervals to let it form) and counts every
// datagram. The simulator's cost grows with n²: at 64 nodes, 100 intervals
// take about 10 s of CPU.
func CostModel(n int, interval time.Duration, misses int, window time.Duration) Cost {
	s := netsim.New(netsim.Options{Seed: 1, Nodes: n, Interval: interval, Misses: misses})
	sent := make([]uint64, n)
	recv := make([]uint64, n)
	sentB := make([]uint64, n)
	recvB := make([]uint64, n)
	counting := false
	s.OnReady = func(from *netsim.Node, rd *core.Ready) {
		if !counting {
			return
		}
		for _, p := range rd.Packets {
			nets := uint64(bits.OnesCount8(uint8(p.Nets)))
			sent[from.ID-1] += nets
			sentB[from.ID-1] += nets * uint64(len(p.Data))
			for _, to := range s.Nodes {
				if to.ID == from.ID || p.To != 0 && p.To != to.ID {
					continue
				}
				recv[to.ID-1] += nets
				recvB[to.ID-1] += nets * uint64(len(p.Data))
			}
		}
	}
	// Form: long enough for the election and the first snapshots.
	formed := netsim.Epoch0.Add(100 * interval)
	s.RunUntil(formed, nil)
	counting = true
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t0 := threadCPU()
	s.RunUntil(formed.Add(window), nil)
	cpu := threadCPU() - t0
	c := Cost{Nodes: n, Interval: interval, Misses: misses, Window: window}
	sec := window.Seconds()
	var ts, tr, tsb, trb uint64
	for i := range sent {
		ts, tr, tsb, trb = ts+sent[i], tr+recv[i], tsb+sentB[i], trb+recvB[i]
		c.MaxSentPerS = max(c.MaxSentPerS, float64(sent[i])/sec)
	}
	c.SentPerS = float64(ts) / float64(n) / sec
	c.RecvPerS = float64(tr) / float64(n) / sec
	c.SentBytesPS = float64(tsb) / float64(n) / sec
	c.RecvBytesPS = float64(trb) / float64(n) / sec
	if ts > 0 {
		c.MeanDatagram = float64(tsb) / float64(ts)
	}
	if tr > 0 {
		c.SimCPUPerRecv = cpu / time.Duration(tr)
	}
	return c
}

// threadCPU is the calling thread's CPU time.
func threadCPU() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

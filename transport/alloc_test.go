package transport

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/wire"
)

// Every send and receive path allocates nothing per packet.
func TestZeroAllocs(t *testing.T) {
	a, b, port := testGroups(t)
	t1 := openLo(t, loConfig(a, b, port))
	t2 := openLo(t, loConfig(a, b, port))
	require.NoError(t, t1.SetReadDeadline(time.Time{}))
	require.NoError(t, t2.SetReadDeadline(time.Time{}))
	s := t1.NewSender()
	pkt := make([]byte, 200)
	msgs := newMsgs(MaxBatch, wire.MaxDatagram)
	batch := make([][]byte, 16)
	for i := range batch {
		batch[i] = pkt
	}
	to := t2.LocalAddr(wire.NetB)

	check := func(name string, f func()) {
		t.Helper()
		f() // warm up
		if n := testing.AllocsPerRun(200, f); n != 0 {
			t.Errorf("%s: %v allocations per run, want 0", name, n)
		} else {
			t.Logf("%s: 0 allocations per run", name)
		}
	}
	read := func(tr *Transport, nt wire.Net, unicast bool, want int) {
		got := 0
		for got < want {
			var n int
			var err error
			if unicast {
				n, err = tr.ReadUnicastBatch(nt, msgs[:want-got])
			} else {
				n, err = tr.ReadBatch(nt, msgs[:want-got])
			}
			if err != nil {
				panic(err)
			}
			got += n
		}
	}
	check("Sender.Send + ReadBatch", func() {
		if err := s.Send(wire.NetA, pkt, false); err != nil {
			panic(err)
		}
		read(t2, wire.NetA, false, 1)
	})
	check("Sender.Send prio + ReadBatch", func() {
		if err := s.Send(wire.NetA, pkt, true); err != nil {
			panic(err)
		}
		read(t2, wire.NetA, false, 1)
	})
	check("Transport.Send + ReadBatch", func() {
		if err := t1.Send(wire.NetB, pkt, false); err != nil {
			panic(err)
		}
		read(t2, wire.NetB, false, 1)
	})
	check("Sender.SendTo + ReadUnicastBatch", func() {
		if err := s.SendTo(wire.NetB, to, pkt, false); err != nil {
			panic(err)
		}
		read(t2, wire.NetB, true, 1)
	})
	check("Sender.WriteBatchTo(16) + ReadUnicastBatch", func() {
		if _, err := s.WriteBatchTo(wire.NetB, to, batch, true); err != nil {
			panic(err)
		}
		read(t2, wire.NetB, true, len(batch))
	})
	check("Sender.Queue (group, peer, both networks) + Flush", func() {
		for nt := range wire.Net(wire.NumNets) {
			if err := s.Queue(nt, ToGroup, netip.AddrPort{}, pkt, true); err != nil {
				panic(err)
			}
			if err := s.Queue(nt, ToPeer, t2.LocalAddr(nt), pkt, false); err != nil {
				panic(err)
			}
		}
		if err := s.Flush(); err != nil {
			panic(err)
		}
		for nt := range wire.Net(wire.NumNets) {
			read(t2, nt, false, 1)
			read(t2, nt, true, 1)
		}
	})
	check("Stats", func() { _ = t1.Stats() })
}

// BenchmarkRoundTrip measures one datagram sent on lo and received by
// another transport (multicast, group socket), per iteration.
func BenchmarkRoundTrip(b *testing.B) {
	t1, t2 := benchPair(b)
	s := t1.NewSender()
	pkt := make([]byte, 200)
	msgs := newMsgs(1, wire.MaxDatagram)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := s.Send(wire.NetA, pkt, false); err != nil {
			b.Fatal(err)
		}
		if _, err := t2.ReadBatch(wire.NetA, msgs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRoundTripLocked is BenchmarkRoundTrip with the receiver on its
// own locked thread, as the agent runs it.
func BenchmarkRoundTripLocked(b *testing.B) {
	t1, t2 := benchPair(b)
	s2 := t2.NewSender()
	done := make(chan struct{})
	go RunLocked(ThreadOptions{}, func() { // echo server
		defer close(done)
		msgs := newMsgs(MaxBatch, wire.MaxDatagram)
		for {
			n, err := t2.ReadBatch(wire.NetA, msgs)
			if err != nil {
				return
			}
			for i := range n {
				_ = s2.SendTo(wire.NetA, msgs[i].From, msgs[i].Buf[:msgs[i].N], false)
			}
		}
	})
	s := t1.NewSender()
	pkt := make([]byte, 200)
	msgs := newMsgs(1, wire.MaxDatagram)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := s.Send(wire.NetA, pkt, false); err != nil {
			b.Fatal(err)
		}
		if _, err := t1.ReadUnicastBatch(wire.NetA, msgs); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	t2.Close()
	<-done
}

// BenchmarkXNetRoundTrip is the same round trip through x/net's
// ipv4.PacketConn (WriteTo with a preresolved *net.UDPAddr, ReadBatch), to
// show what the raw recvmmsg/sendmmsg path saves: x/net allocates a
// net.UDPAddr per datagram received, and more.
func BenchmarkXNetRoundTrip(b *testing.B) {
	t1, t2 := benchPair(b)
	send := ipv4.NewPacketConn(udpConn(b, t1.nets[0].uni.fd))
	recv := ipv4.NewPacketConn(udpConn(b, t2.nets[0].grp.fd))
	grp := t2.Group(wire.NetA)
	to := &net.UDPAddr{IP: grp.Addr().AsSlice(), Port: int(grp.Port())}
	pkt := make([]byte, 200)
	ms := []ipv4.Message{{Buffers: [][]byte{make([]byte, wire.MaxDatagram)}, OOB: ipv4.NewControlMessage(ipv4.FlagInterface | ipv4.FlagDst)}}
	var cm ipv4.ControlMessage
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := send.WriteTo(pkt, nil, to); err != nil {
			b.Fatal(err)
		}
		for {
			n, err := recv.ReadBatch(ms, 0)
			if err != nil {
				b.Fatal(err)
			}
			if n == 1 {
				if err := cm.Parse(ms[0].OOB[:ms[0].NN]); err != nil {
					b.Fatal(err)
				}
				if ms[0].Addr.(*net.UDPAddr).AddrPort().Port() == t1.LocalAddr(0).Port() {
					break
				}
			}
		}
	}
}

func benchGroups(b *testing.B) (netip.Addr, netip.Addr, int) { return testGroups(b) }

// benchPair opens two transports on the same groups of lo, closed when the
// benchmark ends.
func benchPair(b *testing.B) (*Transport, *Transport) {
	a, g, port := benchGroups(b)
	var ts [2]*Transport
	for i := range ts {
		t, err := Open(loConfig(a, g, port))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { t.Close() })
		ts[i] = t
	}
	return ts[0], ts[1]
}

// BenchmarkUnicastBurst is the bulk sender's work (a snapshot or a resend
// burst: many datagrams to one peer): one SendTo per datagram against
// WriteBatchTo (one sendmmsg per MaxBatch), 64 datagrams of 1,200 bytes per
// iteration, read back by the peer.
func BenchmarkUnicastBurst(b *testing.B) {
	t1, t2 := benchPair(b)
	s := t1.NewSender()
	to := t2.LocalAddr(wire.NetA)
	pkts := make([][]byte, MaxBatch)
	for i := range pkts {
		pkts[i] = make([]byte, 1200)
	}
	msgs := newMsgs(MaxBatch, wire.MaxDatagram)
	drain := func() {
		for got := 0; got < len(pkts); {
			n, err := t2.ReadUnicastBatch(wire.NetA, msgs[:len(pkts)-got])
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
	b.Run("SendTo", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, p := range pkts {
				if err := s.SendTo(wire.NetA, to, p, false); err != nil {
					b.Fatal(err)
				}
			}
			drain()
		}
	})
	b.Run("WriteBatchTo", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.WriteBatchTo(wire.NetA, to, pkts, false); err != nil {
				b.Fatal(err)
			}
			drain()
		}
	})
}

// udpConn is a *net.UDPConn on a duplicate of fd, for x/net's PacketConn
// (the transport's own sockets are plain descriptors).
func udpConn(tb testing.TB, fd int) *net.UDPConn {
	tb.Helper()
	dup, err := unix.Dup(fd)
	if err != nil {
		tb.Fatal(err)
	}
	f := os.NewFile(uintptr(dup), "dup")
	defer f.Close()
	pc, err := net.FilePacketConn(f)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pc.Close() })
	return pc.(*net.UDPConn)
}

// BenchmarkSendReady is what the real-time loop sends for one Ready of the
// master in a registration storm: the change to the group and the answer
// to the reporter, on both networks. mode=one-by-one is a sendmsg per
// datagram and network (the agent until 2 December 2026), mode=queued
// Queue and one Flush (a sendmmsg per network). The receiver's sockets are
// drained outside the timing.
func BenchmarkSendReady(b *testing.B) {
	t1, t2 := benchPair(b)
	pkt := make([]byte, 300)
	msgs := newMsgs(MaxBatch, wire.MaxDatagram)
	drain := func() {
		for nt := range wire.Net(wire.NumNets) {
			for _, uni := range []bool{false, true} {
				for {
					if k, _ := t2.TryReadBatch(nt, uni, msgs); k == 0 {
						break
					}
				}
			}
		}
	}
	for _, mode := range []string{"one-by-one", "queued"} {
		b.Run("mode="+mode, func(b *testing.B) {
			s := t1.NewSender()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				for nt := range wire.Net(wire.NumNets) {
					to := t2.LocalAddr(nt)
					if mode == "queued" {
						_ = s.Queue(nt, ToGroup, netip.AddrPort{}, pkt, false)
						_ = s.Queue(nt, ToPeer, to, pkt, false)
					} else {
						_ = s.Send(nt, pkt, false)
						_ = s.SendTo(nt, to, pkt, false)
					}
				}
				if mode == "queued" {
					_ = s.Flush()
				}
				if i%16 == 15 {
					b.StopTimer()
					drain()
					b.StartTimer()
				}
			}
		})
	}
}

package transport

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/wire"
)

func TestExchangeOnBothNetworks(t *testing.T) {
	a, b, port := testGroups(t)
	t1 := openLo(t, loConfig(a, b, port))
	t2 := openLo(t, loConfig(a, b, port))
	lo := loIndex(t)

	require.NoError(t, t1.Send(wire.NetA, []byte("from t1 on a"), false))
	require.NoError(t, t1.Send(wire.NetB, []byte("from t1 on b"), false))
	for _, nt := range []wire.Net{wire.NetA, wire.NetB} {
		require.NoError(t, t2.Send(nt, []byte("from t2 on both"), false))
	}

	for _, nt := range []wire.Net{wire.NetA, wire.NetB} {
		// t2 sees t1's datagram; its own comes back on lo and is dropped.
		got, _ := readN(t, t2, nt, false, 1)
		m := got[0]
		assert.Equal(t, fmt.Sprintf("from t1 on %c", 'a'+nt), string(m.Buf), "net %d", nt)
		assert.Equal(t, t1.LocalAddr(nt), m.From)
		assert.Equal(t, lo, m.IfIndex, "arrival interface must be lo's index")
		assert.Equal(t, nt, m.Net)
		assert.False(t, m.Unicast)
		assert.Equal(t, uint8(0), m.TOS)

		// t1 sees t2's datagram after dropping its own.
		got, _ = readN(t, t1, nt, false, 1)
		assert.Equal(t, "from t2 on both", string(got[0].Buf))
		assert.Equal(t, t2.LocalAddr(nt), got[0].From)
	}
	// t2's own datagrams are still queued: reading finds nothing else.
	expectNothing(t, t2, wire.NetA, false, 20*time.Millisecond)
	expectNothing(t, t2, wire.NetB, false, 20*time.Millisecond)
	s1, s2 := t1.Stats(), t2.Stats()
	for nt := range wire.NumNets {
		assert.Equal(t, uint64(1), s1.Nets[nt].DroppedSelf, "t1 net %d", nt)
		assert.Equal(t, uint64(1), s2.Nets[nt].DroppedSelf, "t2 net %d", nt)
		assert.Equal(t, uint64(1), s1.Nets[nt].SentPackets)
		assert.Equal(t, uint64(len("from t1 on a")), s1.Nets[nt].SentBytes)
		assert.Equal(t, uint64(1), s2.Nets[nt].RecvPackets)
		assert.Equal(t, uint64(len("from t1 on a")), s2.Nets[nt].RecvBytes)
		assert.Zero(t, s2.Nets[nt].DroppedWrongIface)
		assert.Zero(t, s2.Nets[nt].DroppedWrongGroup)
	}
	// Both LocalAddrs are on 127.0.0.1 (lo's address), on distinct ports.
	assert.Equal(t, netip.MustParseAddr("127.0.0.1"), t1.LocalAddr(wire.NetA).Addr())
	assert.NotEqual(t, t1.LocalAddr(wire.NetA), t1.LocalAddr(wire.NetB))
	assert.NotEqual(t, t1.LocalAddr(wire.NetA), t2.LocalAddr(wire.NetA))
}

// With both groups on lo, a datagram to group a must never be read as net b.
func TestNetworksStaySeparateOnOneInterface(t *testing.T) {
	a, b, port := testGroups(t)
	t1 := openLo(t, loConfig(a, b, port))
	t2 := openLo(t, loConfig(a, b, port))
	require.NoError(t, t1.Send(wire.NetA, []byte("only a"), false))
	expectNothing(t, t2, wire.NetB, false, 100*time.Millisecond)
	got, _ := readN(t, t2, wire.NetA, false, 1)
	assert.Equal(t, "only a", string(got[0].Buf))
	assert.Equal(t, wire.NetA, got[0].Net)
}

// Several agents on one host share the group port: each gets every datagram.
func TestSeveralAgentsShareTheGroupPort(t *testing.T) {
	a, b, port := testGroups(t)
	sender := openLo(t, loConfig(a, b, port))
	r1 := openLo(t, loConfig(a, b, port))
	r2 := openLo(t, loConfig(a, b, port))
	require.NoError(t, sender.Send(wire.NetB, []byte("fan-out"), false))
	for _, r := range []*Transport{r1, r2} {
		got, _ := readN(t, r, wire.NetB, false, 1)
		assert.Equal(t, "fan-out", string(got[0].Buf))
		assert.Equal(t, sender.LocalAddr(wire.NetB), got[0].From)
	}
}

func TestBatchReceive64(t *testing.T) {
	a, b, port := testGroups(t)
	t1 := openLo(t, loConfig(a, b, port))
	t2 := openLo(t, loConfig(a, b, port))
	pkts := make([][]byte, 64)
	for i := range pkts {
		pkts[i] = []byte(fmt.Sprintf("packet %03d", i))
	}
	for _, p := range pkts {
		require.NoError(t, t1.Send(wire.NetA, p, false))
	}
	time.Sleep(50 * time.Millisecond) // let loopback delivery finish

	got, calls := readN(t, t2, wire.NetA, false, 64)
	for i, m := range got {
		assert.Equal(t, fmt.Sprintf("packet %03d", i), string(m.Buf), "in order")
	}
	assert.Equal(t, 1, calls, "64 queued datagrams must come back in one recvmmsg")
	assert.Equal(t, uint64(64), t2.Stats().Nets[wire.NetA].RecvPackets)
}

func TestUnicastReply(t *testing.T) {
	a, b, port := testGroups(t)
	t1 := openLo(t, loConfig(a, b, port))
	t2 := openLo(t, loConfig(a, b, port))
	lo := loIndex(t)
	for _, nt := range []wire.Net{wire.NetA, wire.NetB} {
		require.NoError(t, t1.Send(nt, []byte("who is there"), false))
		got, _ := readN(t, t2, nt, false, 1)
		// Reply to the source address of the multicast datagram.
		require.NoError(t, t2.SendTo(nt, got[0].From, []byte("nack 5..9"), false))
		rep, _ := readN(t, t1, nt, true, 1)
		assert.Equal(t, "nack 5..9", string(rep[0].Buf))
		assert.Equal(t, t2.LocalAddr(nt), rep[0].From)
		assert.True(t, rep[0].Unicast)
		assert.Equal(t, nt, rep[0].Net)
		assert.Equal(t, lo, rep[0].IfIndex)
	}
	// Unicast to one agent never reaches the group sockets of another.
	expectNothing(t, t1, wire.NetA, false, 50*time.Millisecond)

	// A unicast burst.
	pkts := [][]byte{[]byte("s1"), []byte("s2"), []byte("s3")}
	n, err := t2.NewSender().WriteBatchTo(wire.NetB, t1.LocalAddr(wire.NetB), pkts, true)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	got, _ := readN(t, t1, wire.NetB, true, 3)
	for i, m := range got {
		assert.Equal(t, string(pkts[i]), string(m.Buf))
		assert.Equal(t, uint8(PriorityTOS), m.TOS)
	}
}

// Queued datagrams go nowhere until Flush, then each where it was queued
// for (the group, its heartbeat port, a peer), with its own priority, in
// order; more than MaxBatch for a network, or a datagram for another
// network, send what was queued first.
func TestQueueAndFlush(t *testing.T) {
	a, b, port := testGroups(t)
	t1 := openLo(t, loConfig(a, b, port))
	t2 := openLo(t, loConfig(a, b, port))
	s := t1.NewSender()
	none := netip.AddrPort{}
	require.NoError(t, s.Queue(wire.NetA, ToHeartbeat, none, []byte("beat"), false))
	require.NoError(t, s.Queue(wire.NetA, ToGroup, none, []byte("down"), true))
	require.NoError(t, s.Queue(wire.NetA, ToPeer, t2.LocalAddr(wire.NetA), []byte("answer"), false))
	require.NoError(t, s.Queue(wire.NetA, ToGroup, none, []byte("later"), false))
	expectNothing(t, t2, wire.NetA, false, 30*time.Millisecond)
	assert.Zero(t, t1.Stats().Nets[wire.NetA].SentPackets, "nothing sent before Flush")
	require.NoError(t, s.Queue(wire.NetB, ToGroup, none, []byte("on b"), true)) // sends net A's
	require.NoError(t, s.Flush())

	got, _ := readN(t, t2, wire.NetA, false, 2)
	assert.Equal(t, "down", string(got[0].Buf))
	assert.Equal(t, uint8(PriorityTOS), got[0].TOS)
	assert.Equal(t, "later", string(got[1].Buf))
	assert.Equal(t, uint8(0), got[1].TOS, "priority is per datagram")
	got, _ = readN(t, t2, wire.NetA, true, 1)
	assert.Equal(t, "answer", string(got[0].Buf))
	msgs := newMsgs(4, wire.MaxDatagram)
	k, err := t2.TryReadHeartbeats(wire.NetA, msgs)
	require.NoError(t, err)
	require.Equal(t, 1, k)
	assert.Equal(t, "beat", string(msgs[0].Buf[:msgs[0].N]))
	got, _ = readN(t, t2, wire.NetB, false, 1)
	assert.Equal(t, "on b", string(got[0].Buf))
	assert.Equal(t, uint8(PriorityTOS), got[0].TOS)
	st := t1.Stats()
	assert.Equal(t, uint64(4), st.Nets[wire.NetA].SentPackets)
	assert.Equal(t, uint64(1), st.Nets[wire.NetA].PriorityPackets)
	assert.Equal(t, uint64(1), st.Nets[wire.NetB].SentPackets)

	// More than a batch: all of it, in order.
	for i := range MaxBatch + 3 {
		require.NoError(t, s.Queue(wire.NetB, ToGroup, none, []byte(fmt.Sprint(i)), false))
	}
	require.NoError(t, s.Flush())
	got, _ = readN(t, t2, wire.NetB, false, MaxBatch+3)
	for i, m := range got {
		assert.Equal(t, fmt.Sprint(i), string(m.Buf))
	}
	// Bad input queues nothing.
	assert.ErrorIs(t, s.Queue(wire.NetA, ToGroup, none, make([]byte, wire.MaxDatagram+1), false), ErrTooLarge)
	assert.ErrorIs(t, s.Queue(wire.NetA, ToPeer, netip.MustParseAddrPort("[::1]:9"), []byte("x"), false), ErrNotIPv4)
	require.NoError(t, s.Flush())
	expectNothing(t, t2, wire.NetA, false, 20*time.Millisecond)
}

func TestPriorityMarking(t *testing.T) {
	a, b, port := testGroups(t)
	t1 := openLo(t, loConfig(a, b, port))
	t2 := openLo(t, loConfig(a, b, port))
	require.NoError(t, t1.Send(wire.NetA, []byte("normal"), false))
	require.NoError(t, t1.Send(wire.NetA, []byte("urgent"), true))
	require.NoError(t, t1.Send(wire.NetA, []byte("normal again"), false))
	got, _ := readN(t, t2, wire.NetA, false, 3)
	assert.Equal(t, uint8(0), got[0].TOS)
	assert.Equal(t, uint8(PriorityTOS), got[1].TOS, "priority datagram must carry TOS EF")
	assert.Equal(t, uint8(0), got[2].TOS, "priority must be per packet")
	st := t1.Stats()
	assert.Equal(t, uint64(1), st.Nets[wire.NetA].PriorityPackets)
	if kernelAtLeast(t, 6, 14) {
		assert.False(t, st.PrioCmsgFallback, "this kernel takes SO_PRIORITY as ancillary data")
	}
}

// oldKernelSender is a sender on t1 whose second cmsg is one no kernel
// accepts, as a kernel before 6.14 refuses SO_PRIORITY: it must fall back
// to IP_TOS alone. t2 receives.
func oldKernelSender(t *testing.T) (t1, t2 *Transport, s *Sender) {
	a, b, port := testGroups(t)
	t1 = openLo(t, loConfig(a, b, port))
	t2 = openLo(t, loConfig(a, b, port))
	s = t1.NewSender()
	putCmsg(s.oob[s.tosOnly:], unix.SOL_SOCKET, 0x7fff, 0)
	return t1, t2, s
}

func TestPriorityFallbackWithoutSOPriorityCmsg(t *testing.T) {
	t1, t2, s := oldKernelSender(t)
	require.NoError(t, s.Send(wire.NetA, []byte("urgent"), true))
	assert.True(t, t1.Stats().PrioCmsgFallback)
	got, _ := readN(t, t2, wire.NetA, false, 1)
	assert.Equal(t, "urgent", string(got[0].Buf))
	assert.Equal(t, uint8(PriorityTOS), got[0].TOS)
	assert.Equal(t, uint64(1), t1.Stats().Nets[wire.NetA].SentPackets)
	assert.Zero(t, t1.Stats().Nets[wire.NetA].SendErrors)
}

// The same fallback met in the middle of a batch: what was sent before the
// refused datagram is not sent again, what follows it is sent.
func TestPriorityFallbackMidBatch(t *testing.T) {
	t1, t2, s := oldKernelSender(t)
	for i, prio := range []bool{false, true, false, true} {
		require.NoError(t, s.Queue(wire.NetA, ToGroup, netip.AddrPort{}, []byte(fmt.Sprint(i)), prio))
	}
	require.NoError(t, s.Flush())
	assert.True(t, t1.Stats().PrioCmsgFallback)
	got, _ := readN(t, t2, wire.NetA, false, 4)
	for i, m := range got {
		assert.Equal(t, fmt.Sprint(i), string(m.Buf))
		assert.Equal(t, uint8(PriorityTOS)*uint8(i%2), m.TOS, "datagram %d", i)
	}
	expectNothing(t, t2, wire.NetA, false, 20*time.Millisecond)
	assert.Equal(t, uint64(4), t1.Stats().Nets[wire.NetA].SentPackets)
	assert.Equal(t, uint64(2), t1.Stats().Nets[wire.NetA].PriorityPackets)
}

// kernelAtLeast reports whether the running kernel is at least major.minor.
func kernelAtLeast(t *testing.T, major, minor int) bool {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	require.NoError(t, err)
	var ma, mi int
	_, err = fmt.Sscanf(string(b), "%d.%d", &ma, &mi)
	require.NoError(t, err)
	return ma > major || ma == major && mi >= minor
}

// A datagram whose arrival interface is not the network's is dropped and
// counted. Only lo may be used here, so the network's interface index is
// changed after Open instead: every datagram arriving on lo is then "wrong".
func TestWrongInterfaceIsDropped(t *testing.T) {
	a, b, port := testGroups(t)
	t1 := openLo(t, loConfig(a, b, port))
	t2 := openLo(t, loConfig(a, b, port))
	t2.nets[wire.NetA].ifindex = 1 << 20 // an interface that does not exist
	require.NoError(t, t1.Send(wire.NetA, []byte("via lo"), false))
	expectNothing(t, t2, wire.NetA, false, 100*time.Millisecond)
	assert.Equal(t, uint64(1), t2.Stats().Nets[wire.NetA].DroppedWrongIface)
	assert.Zero(t, t2.Stats().Nets[wire.NetA].RecvPackets)

	// Unicast is still taken on lo: same-host agents reach each other there.
	require.NoError(t, t1.SendTo(wire.NetA, t2.LocalAddr(wire.NetA), []byte("unicast"), false))
	got, _ := readN(t, t2, wire.NetA, true, 1)
	assert.Equal(t, "unicast", string(got[0].Buf))
}

func TestWrongGroupIsDropped(t *testing.T) {
	a, b, port := testGroups(t)
	t1 := openLo(t, loConfig(a, b, port))
	t2 := openLo(t, loConfig(a, b, port))
	t2.nets[wire.NetA].group4 = [4]byte{239, 1, 1, 1}
	require.NoError(t, t1.Send(wire.NetA, []byte("to a"), false))
	expectNothing(t, t2, wire.NetA, false, 100*time.Millisecond)
	assert.Equal(t, uint64(1), t2.Stats().Nets[wire.NetA].DroppedWrongGroup)
}

func TestTruncatedIsDropped(t *testing.T) {
	a, b, port := testGroups(t)
	t1 := openLo(t, loConfig(a, b, port))
	t2 := openLo(t, loConfig(a, b, port))
	require.NoError(t, t1.Send(wire.NetA, make([]byte, 100), false))
	require.NoError(t, t1.Send(wire.NetA, []byte("short"), false))
	msgs := newMsgs(4, 10)
	n, err := t2.ReadBatch(wire.NetA, msgs)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	assert.Equal(t, "short", string(msgs[0].Buf[:msgs[0].N]))
	assert.Equal(t, uint64(1), t2.Stats().Nets[wire.NetA].DroppedTruncated)
}

// Multicast to 239.0.0.0/8 leaves through lo because IP_MULTICAST_IF names
// lo, not because of a route: the test changes no route, and where the
// routing table sends 239/8 elsewhere (a default route through another NIC)
// a datagram sent without IP_MULTICAST_IF would leave there and come back,
// if at all, through IP_MULTICAST_LOOP with that NIC's index, which
// TestExchangeOnBothNetworks would refuse (IfIndex must be lo's).
func TestMulticastInterfaceIsSetExplicitly(t *testing.T) {
	a, b, port := testGroups(t)
	t1 := openLo(t, loConfig(a, b, port))
	t2 := openLo(t, loConfig(a, b, port))
	for nt := range wire.Net(wire.NumNets) {
		addr, err := unix.GetsockoptInet4Addr(t1.nets[nt].uni.fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF)
		require.NoError(t, err)
		assert.Equal(t, [4]byte{127, 0, 0, 1}, addr, "IP_MULTICAST_IF must be set on net %d", nt)
		assert.Equal(t, loIndex(t), t1.IfIndex(nt))
	}
	routes, err := os.ReadFile("/proc/net/route")
	require.NoError(t, err)
	t.Logf("IPv4 routes (none needed for 239/8 on lo):\n%s", routes)
	require.NoError(t, t1.Send(wire.NetA, []byte("no route needed"), false))
	got, _ := readN(t, t2, wire.NetA, false, 1)
	assert.Equal(t, "no route needed", string(got[0].Buf))
	assert.Equal(t, loIndex(t), got[0].IfIndex)
}

func TestCloseUnblocksRead(t *testing.T) {
	a, b, port := testGroups(t)
	t1 := openLo(t, loConfig(a, b, port))
	require.NoError(t, t1.SetReadDeadline(time.Time{}))
	done := make(chan error, 2)
	go func() {
		_, err := t1.ReadBatch(wire.NetA, newMsgs(1, 100))
		done <- err
	}()
	go func() {
		_, err := t1.ReadUnicastBatch(wire.NetB, newMsgs(1, 100))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, t1.Close())
	for range 2 {
		select {
		case err := <-done:
			assert.ErrorIs(t, err, net.ErrClosed)
		case <-time.After(5 * time.Second):
			t.Fatal("ReadBatch still blocked after Close")
		}
	}
	assert.Error(t, t1.Send(wire.NetA, []byte("x"), false))
	assert.NoError(t, t1.Close(), "Close twice")
}

func TestBadInput(t *testing.T) {
	a, b, port := testGroups(t)
	t1 := openLo(t, loConfig(a, b, port))
	assert.ErrorIs(t, t1.Send(2, []byte("x"), false), ErrBadNet)
	_, err := t1.ReadBatch(2, newMsgs(1, 10))
	assert.ErrorIs(t, err, ErrBadNet)
	assert.ErrorIs(t, t1.SendTo(wire.NetA, netip.MustParseAddrPort("[::1]:5"), []byte("x"), false), ErrNotIPv4)
	assert.ErrorIs(t, t1.Send(wire.NetA, make([]byte, wire.MaxDatagram+1), false), ErrTooLarge)
	_, err = t1.ReadBatch(wire.NetA, []Message{{}})
	assert.ErrorIs(t, err, ErrEmptyBuffer)
	n, err := t1.ReadBatch(wire.NetA, nil)
	assert.NoError(t, err)
	assert.Zero(t, n)
}

func TestOpenRefusals(t *testing.T) {
	a, b, port := testGroups(t)
	cases := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"unicast group", func(c *Config) { c.Nets[1].Group = netip.MustParseAddr("127.0.0.1") }, "network b: group 127.0.0.1 is not an IPv4 multicast address"},
		{"same group", func(c *Config) { c.Nets[1].Group = c.Nets[0].Group }, "use the same group"},
		{"no interface", func(c *Config) { c.Nets[0].Interface = "" }, "network a: no interface"},
		{"unknown interface", func(c *Config) { c.Nets[0].Interface = "nosuch0" }, `interface "nosuch0"`},
		{"bad port", func(c *Config) { c.Nets[0].Port = 70000 }, "port 70000 out of range"},
		{"bad ttl", func(c *Config) { c.Nets[0].TTL = 300 }, "TTL 300 out of range"},
		{"v6 source", func(c *Config) { c.Nets[0].Source = netip.MustParseAddr("::1") }, "not an IPv4 address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := loConfig(a, b, port)
			tc.edit(&cfg)
			tr, err := Open(cfg)
			if tr != nil {
				tr.Close()
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// The same group on both networks is fine when the ports differ.
func TestSameGroupDifferentPorts(t *testing.T) {
	a, _, port := testGroups(t)
	cfg := loConfig(a, a, port)
	cfg.Nets[1].Port = port + 2 // port + 1 is network a's heartbeat port
	t1 := openLo(t, cfg)
	t2 := openLo(t, cfg)
	require.NoError(t, t1.Send(wire.NetB, []byte("b"), false))
	expectNothing(t, t2, wire.NetA, false, 50*time.Millisecond)
	got, _ := readN(t, t2, wire.NetB, false, 1)
	assert.Equal(t, "b", string(got[0].Buf))
}

func TestSourceAndUnicastPort(t *testing.T) {
	a, b, port := testGroups(t)
	c, err := net.ListenPacket("udp4", "127.0.0.2:0")
	require.NoError(t, err)
	up := c.LocalAddr().(*net.UDPAddr).Port
	require.NoError(t, c.Close())
	cfg := loConfig(a, b, port)
	cfg.Nets[0].Source = netip.MustParseAddr("127.0.0.2")
	cfg.Nets[0].UnicastPort = up
	t1 := openLo(t, cfg)
	t2 := openLo(t, loConfig(a, b, port))
	assert.Equal(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), uint16(up)), t1.LocalAddr(wire.NetA))
	require.NoError(t, t1.Send(wire.NetA, []byte("from .2"), false))
	got, _ := readN(t, t2, wire.NetA, false, 1)
	assert.Equal(t, t1.LocalAddr(wire.NetA), got[0].From)
}

func TestParseOOB(t *testing.T) {
	// Two control messages as the kernel lays them out: IP_PKTINFO, IP_TOS.
	b := make([]byte, oobSize)
	pi := b[:32]
	putCmsgBytes(pi, 0 /*IPPROTO_IP*/, 8 /*IP_PKTINFO*/, []byte{7, 0, 0, 0, 127, 0, 0, 1, 239, 1, 2, 3})
	putCmsgBytes(b[32:], 0, 1 /*IP_TOS*/, []byte{0xb8})
	ifindex, dst, tos, stamp := parseOOB(b[:32+17])
	assert.Equal(t, 7, ifindex)
	assert.Equal(t, [4]byte{239, 1, 2, 3}, dst)
	assert.Equal(t, uint8(0xb8), tos)
	assert.Zero(t, stamp)
	// SO_TIMESTAMPNS after them: a struct timespec.
	ts := make([]byte, 16)
	binary.NativeEndian.PutUint64(ts[0:], 1764547200)
	binary.NativeEndian.PutUint64(ts[8:], 123456789)
	putCmsgBytes(b[56:], 1 /*SOL_SOCKET*/, 35 /*SO_TIMESTAMPNS*/, ts)
	_, _, _, stamp = parseOOB(b[:56+32])
	assert.Equal(t, int64(1764547200123456789), stamp)
	// Garbage lengths stop the walk without panicking.
	ifindex, _, _, _ = parseOOB([]byte{200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0})
	assert.Zero(t, ifindex)
	ifindex, _, _, _ = parseOOB(nil)
	assert.Zero(t, ifindex)
}

func putCmsgBytes(b []byte, level, typ int32, data []byte) {
	l := 16 + len(data)
	b[0] = byte(l)
	for i := 1; i < 8; i++ {
		b[i] = 0
	}
	putLE32(b[8:], uint32(level))
	putLE32(b[12:], uint32(typ))
	copy(b[16:], data)
}

func putLE32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

// Heartbeats go to the heartbeat socket only (the group socket, which the
// real-time loop waits for, never sees them, nor the heartbeat socket
// anything else), stamped with the time the kernel received them: a
// heartbeat read 30 ms after it arrived is judged by its arrival.
func TestHeartbeatSocketStampsArrival(t *testing.T) {
	a, b, port := testGroups(t)
	t1 := openLo(t, loConfig(a, b, port))
	t2 := openLo(t, loConfig(a, b, port))
	assert.Equal(t, port+1, int(t2.HeartbeatGroup(wire.NetA).Port()))
	for nt := range wire.Net(wire.NumNets) {
		sent := time.Now()
		require.NoError(t, t1.SendHeartbeat(nt, []byte("beat")))
		require.NoError(t, t1.Send(nt, []byte("change"), true))
		time.Sleep(30 * time.Millisecond)
		read := time.Now()
		msgs := newMsgs(4, wire.MaxDatagram)
		k, err := t2.TryReadHeartbeats(nt, msgs)
		require.NoError(t, err)
		require.Equal(t, 1, k, "net %d: the heartbeat on the heartbeat socket", nt)
		m := msgs[0]
		assert.Equal(t, "beat", string(m.Buf[:m.N]))
		assert.Equal(t, t1.LocalAddr(nt), m.From)
		assert.Equal(t, nt, m.Net)
		assert.False(t, m.Unicast)
		require.False(t, m.At.IsZero(), "no SO_TIMESTAMPNS stamp")
		assert.False(t, m.At.Before(sent.Add(-time.Millisecond)), "stamped %v before it was sent", sent.Sub(m.At))
		assert.True(t, m.At.Before(read.Add(-20*time.Millisecond)), "stamped %v before it was read: the read time, not the arrival", read.Sub(m.At))
		got, _ := readN(t, t2, nt, false, 1)
		assert.Equal(t, "change", string(got[0].Buf), "net %d: the group socket has the change and not the heartbeat", nt)
		assert.True(t, got[0].At.IsZero())
		k, err = t2.TryReadHeartbeats(nt, msgs)
		require.NoError(t, err)
		assert.Zero(t, k)
		expectNothing(t, t2, nt, false, 20*time.Millisecond)
	}
	// Our own heartbeats come back on lo and are dropped, counted.
	k, err := t1.TryReadHeartbeats(wire.NetA, newMsgs(4, wire.MaxDatagram))
	require.NoError(t, err)
	assert.Zero(t, k)
	assert.NotZero(t, t1.Stats().Nets[wire.NetA].DroppedSelf)
}

// A heartbeat port equal to the group port, or shared by the two networks
// on one group, is refused: the sockets could not be told apart.
func TestHeartbeatPortClash(t *testing.T) {
	a, b, port := testGroups(t)
	cfg := loConfig(a, b, port)
	cfg.Nets[0].HeartbeatPort = port
	_, err := Open(cfg)
	require.ErrorContains(t, err, "heartbeat port is the group port")
	cfg = loConfig(a, a, port)
	cfg.Nets[1].Port = port + 1
	cfg.Nets[1].HeartbeatPort = port + 2
	_, err = Open(cfg)
	require.ErrorContains(t, err, "could not be told apart")
}

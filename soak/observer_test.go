package soak

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/internal/testutil"
)

// The observer keeps the times the kernel received the datagrams, not the
// times it read them: two datagrams 80 ms apart, both read at once after
// the second, are one gap of about 80 ms — a silence over a 50 ms bound;
// and what was queued before reset is not observed.
func TestObserverKernelStamps(t *testing.T) {
	ga, gb, port := testutil.MulticastNet(t)
	o, err := newObserver(ga.String(), gb.String(), port, 7)
	require.NoError(t, err)
	defer o.close()

	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer c.Close()
	p := ipv4.NewPacketConn(c)
	lo, err := net.InterfaceByName("lo")
	require.NoError(t, err)
	require.NoError(t, p.SetMulticastInterface(lo))
	require.NoError(t, p.SetMulticastLoopback(true))
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(ga, uint16(port)))

	// The kernel turns receive timestamps on for the whole machine a
	// moment after the first socket asks (a deferred static key); until
	// then a datagram is stamped when it is read. Wait for a datagram
	// stamped when it came.
	buf, oob := make([]byte, 64), make([]byte, 64)
	require.Eventually(t, func() bool {
		if _, err := c.WriteTo([]byte("warm-up"), to); err != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
		_, oobn, _, _, err := unix.Recvmsg(o.fd, buf, oob, 0)
		at, ok := kernelStamp(oob[:oobn])
		return err == nil && ok && time.Since(at) >= 15*time.Millisecond
	}, 5*time.Second, time.Millisecond, "receive timestamps")

	// Queued before reset: not observed (it would be a 30 ms gap).
	_, err = c.WriteTo([]byte("stale"), to)
	require.NoError(t, err)
	time.Sleep(30 * time.Millisecond)
	o.reset(50 * time.Millisecond)

	_, err = c.WriteTo([]byte("one"), to)
	require.NoError(t, err)
	time.Sleep(80 * time.Millisecond)
	_, err = c.WriteTo([]byte("two"), to)
	require.NoError(t, err)

	// Both are queued; only now does the observer read.
	o.start()
	time.Sleep(50 * time.Millisecond)
	gaps, silences := o.stop()
	require.Len(t, gaps, 1, "one source, two datagrams after reset")
	assert.GreaterOrEqual(t, gaps[0], 75*time.Millisecond, "the kernel's times, not the reads'")
	assert.Less(t, gaps[0], 30*time.Second, "a time, not garbage (the bound is no timing claim)")
	require.Len(t, silences, 1)
	assert.Equal(t, 0, silences[0].node, "not a datagram of the cluster: no sender")
	assert.Equal(t, gaps[0], silences[0].to.Sub(silences[0].from))
}

package transport

import (
	"errors"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/fmagent/fmagent/wire"
)

// ListenTCP: a TCP listener at the unicast socket's address and port,
// handed over once; none on a network that did not ask for one.
func TestListenTCP(t *testing.T) {
	a, b, port := testGroups(t)
	cfg := loConfig(a, b, port)
	cfg.Nets[wire.NetA].ListenTCP = true
	tr := openLo(t, cfg)
	ln, err := tr.TakeTCPListener(wire.NetA)
	require.NoError(t, err)
	defer ln.Close()
	assert.Equal(t, tr.LocalAddr(wire.NetA), ln.Addr().(*net.TCPAddr).AddrPort(), "the unicast socket's address and port")
	_, err = tr.TakeTCPListener(wire.NetA)
	assert.Error(t, err, "taken already")
	_, err = tr.TakeTCPListener(wire.NetB)
	assert.Error(t, err, "not asked for on b")

	// It accepts.
	c, err := net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
	require.NoError(t, err)
	c.Close()
}

// An ephemeral unicast port whose TCP number is taken is given back and
// another tried, up to tcpAttempts; a fixed one is kept, without a
// listener, and TakeTCPListener says why.
func TestListenTCPPortTaken(t *testing.T) {
	a, b, port := testGroups(t)
	calls := 0
	inUse := func(n int) func(string, *net.TCPAddr) (*net.TCPListener, error) {
		calls = 0
		return func(network string, at *net.TCPAddr) (*net.TCPListener, error) {
			calls++
			if calls <= n {
				return nil, &net.OpError{Op: "listen", Net: network, Addr: at, Err: unix.EADDRINUSE}
			}
			return net.ListenTCP(network, at)
		}
	}
	defer func(f func(string, *net.TCPAddr) (*net.TCPListener, error)) { listenTCP = f }(listenTCP)

	// Three ports taken, the fourth free.
	listenTCP = inUse(3)
	cfg := loConfig(a, b, port)
	cfg.Nets[wire.NetA].ListenTCP = true
	tr := openLo(t, cfg)
	ln, err := tr.TakeTCPListener(wire.NetA)
	require.NoError(t, err)
	assert.Equal(t, tr.LocalAddr(wire.NetA), ln.Addr().(*net.TCPAddr).AddrPort())
	assert.Equal(t, 4, calls)
	ln.Close()
	tr.Close()

	// Every one taken: Open still succeeds, without a listener.
	listenTCP = inUse(tcpAttempts)
	tr = openLo(t, cfg)
	_, err = tr.TakeTCPListener(wire.NetA)
	assert.True(t, errors.Is(err, unix.EADDRINUSE), "%v", err)
	assert.Equal(t, tcpAttempts, calls)
	tr.Close()

	// A fixed port whose TCP port is really taken: kept, not changed.
	listenTCP = net.ListenTCP
	held, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer held.Close()
	cfg.Nets[wire.NetA].Source = held.Addr().(*net.TCPAddr).AddrPort().Addr()
	cfg.Nets[wire.NetA].UnicastPort = held.Addr().(*net.TCPAddr).Port
	tr = openLo(t, cfg)
	defer tr.Close()
	assert.Equal(t, held.Addr().(*net.TCPAddr).Port, int(tr.LocalAddr(wire.NetA).Port()))
	_, err = tr.TakeTCPListener(wire.NetA)
	assert.True(t, errors.Is(err, unix.EADDRINUSE), "%v", err)
}

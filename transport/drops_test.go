package transport

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sockDrops counts what the kernel dropped on a full socket: a UDP socket
// with a small receive buffer that nobody reads, sent more than it holds.
func TestSockDropsCountsOverflow(t *testing.T) {
	rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	raw, err := rc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	raw.Control(func(f uintptr) {
		fd = int(f)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
	})
	if d := sockDrops(fd); d != 0 {
		t.Fatalf("drops before any datagram: %d", d)
	}
	sc, err := net.DialUDP("udp4", nil, rc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	for range 200 {
		sc.Write(make([]byte, 512))
	}
	deadline := time.Now().Add(5 * time.Second)
	for sockDrops(fd) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if d := sockDrops(fd); d == 0 {
		t.Fatal("200 datagrams into a 4 kB receive buffer, none counted dropped")
	} else {
		t.Logf("%d of 200 datagrams dropped", d)
	}
}

// Drops runs on the real-time path: it allocates nothing.
func TestSockDropsAllocatesNothing(t *testing.T) {
	rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	f, err := rc.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	if a := testing.AllocsPerRun(100, func() { sockDrops(fd) }); a != 0 {
		t.Fatalf("sockDrops allocates %v times", a)
	}
}

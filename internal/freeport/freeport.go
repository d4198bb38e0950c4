// Package freeport finds a TCP port for a listener that a test or a
// benchmark starts in another process a moment later: one below the
// kernel's ephemeral range (net.ipv4.ip_local_port_range), so that no
// outgoing connection can take it as its source port in between. (A port
// the kernel picked, ":0", is an ephemeral one: on 3 December 2026 an
// agent's exit watch dialled from it before the agent that was to listen
// on it had started, its metrics endpoint was not opened, and a run of
// bench-e2e was lost.)
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowest is the lowest port TCP chooses from.
const lowest = 10000

// TCP returns a port that was free for TCP on host a moment ago, below the
// ephemeral range; the kernel's choice if that range starts too low to
// leave room under it.
func TCP(host string) (int, error) {
	if hi := ephemeralLow(); hi > lowest+1000 {
		for range 200 {
			p := lowest + rand.IntN(hi-lowest)
			ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
			if err == nil {
				ln.Close()
				return p, nil
			}
		}
		return 0, errors.New("freeport: no free TCP port found below the ephemeral range")
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("freeport: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768,
// Linux's default, if it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

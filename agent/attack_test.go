package agent

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/ipv4"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/client"
	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/internal/testutil"
	"github.com/fmagent/fmagent/shmem"
	"github.com/fmagent/fmagent/wire"
)

// attackScale multiplies the number of packets and clients of
// TestAttacks (make attack runs it with a larger one).
var attackScale = flag.Int("attack-scale", 1, "TestAttacks: packets and clients × this")

// metricsOf scrapes one agent's /metrics into name{labels} → value.
func metricsOf(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	m, err := scrapeMetrics(addr)
	require.NoError(t, err)
	return m
}

// scrapeMetrics is metricsOf for a caller that waits for the endpoint.
func scrapeMetrics(addr string) (map[string]float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

func freePort(t *testing.T) int {
	t.Helper()
	return testutil.FreeTCPPort(t)
}

func processFDs() int {
	es, _ := os.ReadDir("/proc/self/fd")
	return len(es)
}

func processRSSkB() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// TestAttacks starts a three-node cluster with a key and attacks it from a
// non-member (a socket of this process that does not have the key) and
// from local clients, then checks: no agent failed, no election (same
// master and epoch), no entity changed state, every rejected packet counted
// under its reason, client limits counted, and fds bounded. Agents run in
// this process: the RSS and fd figures it logs are the process's.
func TestAttacks(t *testing.T) {
	scale := *attackScale
	const perOwner = 16 // entities node 1's clients may create
	dir := t.TempDir()
	key := filepath.Join(dir, "cluster.key")
	require.NoError(t, config.GenerateKey(key))
	ga, gb, port := testNet(t)
	cluster := uint32(time.Now().UnixNano()%(1<<30) + 1000)
	var cfgs []*config.Config
	for id := 1; id <= 3; id++ {
		cfg := newTestConfig(t, id, cluster, ga, gb, port, dir)
		cfg.KeyFile = key
		// Three agents and the attacker share this process and a loaded
		// machine, under -race in make test: a 500 ms detection bound keeps
		// scheduler stalls (the real-time issue's business; at load 15 under
		// -race the process stalled past 200 ms in 2 runs of 7) from reading
		// as failures here, while an attack that wedged a loop (the floods
		// last seconds) still fails the test.
		cfg.Timing.Misses = 50
		cfg.Metrics.Listen = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		cfg.API.IdleTimeout, cfg.API.FrameTimeout = 2*time.Second, 500*time.Millisecond
		cfg.API.WriteRate, cfg.API.WriteBurst = 100, 50
		cfg.Shm.EntitiesPerOwner = perOwner
		cfgs = append(cfgs, cfg)
		runNode(t, cfg)
	}
	ids := []int{1, 2, 3}
	require.Eventually(t, func() bool {
		for _, c := range cfgs {
			if !upIn(c, ids) {
				return false
			}
		}
		return true
	}, 30*time.Second, 10*time.Millisecond, "cluster formed")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, cfgs[0].Paths.Socket)
	require.NoError(t, err)
	defer cl.Close()
	st0, err := cl.Status(ctx)
	require.NoError(t, err)
	snapshot := func() map[string]wire.State {
		r, err := shmem.Open(cfgs[1].ShmPath())
		require.NoError(t, err)
		defer r.Close()
		m := map[string]wire.State{}
		r.Range(func(e *shmem.Entity) bool { m[e.NameString()] = e.State; return true })
		return m
	}
	// The baseline is the formed table: every node's links are judged up
	// too (the master does that a detection time after it hears a peer).
	require.Eventually(t, func() bool {
		m := snapshot()
		for _, id := range ids {
			for _, l := range []string{"a", "b"} {
				if m[fmt.Sprintf("node/%d/link/%s", id, l)] != wire.StateUp {
					return false
				}
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "links judged up")
	table0 := snapshot()
	fds0, rss0 := processFDs(), processRSSkB()
	before := metricsOf(t, cfgs[0].Metrics.Listen)

	// The non-member: sends to both groups on lo.
	lo, err := net.InterfaceByName("lo")
	require.NoError(t, err)
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer c.Close()
	pc := ipv4.NewPacketConn(c)
	require.NoError(t, pc.SetMulticastInterface(lo))
	require.NoError(t, pc.SetMulticastLoopback(true))
	// Heartbeats to the heartbeat port (port + 1), where they meet the MAC;
	// anything else to the group port. A heartbeat sent to the group port
	// is refused before the MAC as "socket" (TestHeartbeatOnlyThroughHeartbeatSocket).
	dsts := func(b []byte) []*net.UDPAddr {
		p := port
		if wire.PeekType(b) == wire.TypeHeartbeat {
			p = port + 1
		}
		return []*net.UDPAddr{{IP: ga.AsSlice(), Port: p}, {IP: gb.AsSlice(), Port: p}}
	}
	send := func(b []byte) {
		for _, d := range dsts(b) {
			c.WriteTo(b, d)
		}
	}
	wrongKey := wire.NewCodec(cluster, []byte("not-the-cluster-key-0123456789"))
	otherCluster := wire.NewCodec(cluster+1, []byte("not-the-cluster-key-0123456789"))
	hb := func(codec *wire.Codec, sender wire.NodeID, seq uint64) []byte {
		h := wire.Header{Sender: sender, Incarnation: 1, Epoch: 1001, Seq: seq}
		b, err := codec.AppendHeartbeat(nil, &h, &wire.Heartbeat{Role: wire.RoleMaster, Master: sender, Priority: 255, Eligible: true})
		require.NoError(t, err)
		return b
	}
	n := 2000 * scale
	attacks := []struct {
		name   string
		reason string
		pkt    func(i int) []byte
	}{
		{"random bytes", "", func(i int) []byte { b := make([]byte, 20+i%1200); rand.Read(b); return b }},
		{"truncated", "short", func(i int) []byte { return hb(wrongKey, 9, uint64(i+1))[:30] }},
		{"wrong magic", "magic", func(i int) []byte { b := hb(wrongKey, 9, uint64(i+1)); b[0] ^= 0xff; return b }},
		{"wrong version", "version", func(i int) []byte { b := hb(wrongKey, 9, uint64(i+1)); b[2] = 99; return b }},
		{"other cluster", "cluster", func(i int) []byte { return hb(otherCluster, 9, uint64(i+1)) }},
		{"forged master, wrong key", "auth", func(i int) []byte { return hb(wrongKey, 1, uint64(1<<40+i)) }},
		{"invented node IDs", "auth", func(i int) []byte { return hb(wrongKey, wire.NodeID(5000+i), 1) }},
		{"snapshot requests, wrong key", "auth", func(i int) []byte {
			h := wire.Header{Sender: 2, Incarnation: 1 << 62, Seq: uint64(i + 1)}
			b, _ := wrongKey.AppendNack(nil, &h, &wire.Nack{})
			return b
		}},
	}
	for _, a := range attacks {
		m0 := metricsOf(t, cfgs[0].Metrics.Listen)
		for i := range n {
			send(a.pkt(i))
		}
		// Until node 1 has dealt with what reached it: its counts stop
		// moving (on a loaded machine, or under the race detector, that
		// takes longer than sending).
		const overflow = "fmagent_receive_overflow_total"
		accounted := func(m map[string]float64) float64 {
			s := m[overflow]
			for _, r := range rejectReasons {
				s += m[`fmagent_packets_rejected_total{reason="`+r+`"}`]
			}
			return s
		}
		m1 := metricsOf(t, cfgs[0].Metrics.Listen)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
			m2 := metricsOf(t, cfgs[0].Metrics.Listen)
			settled := accounted(m2) == accounted(m1)
			m1 = m2
			if settled {
				break
			}
		}
		var counts []string
		total := 0.0
		for _, r := range rejectReasons {
			k := `fmagent_packets_rejected_total{reason="` + r + `"}`
			if d := m1[k] - m0[k]; d > 0 {
				counts = append(counts, fmt.Sprintf("%s=%.0f", r, d))
				total += d
			}
		}
		dropped := m1[overflow] - m0[overflow]
		t.Logf("attack %-30s %d packets × 2 networks: node 1 rejected %s, its kernel dropped %.0f (receive buffers full); process RSS %d kB, fds %d (load: %s)",
			a.name, n, strings.Join(counts, " "), dropped, processRSSkB(), processFDs(), loadavg())
		require.Positive(t, total, "%s: counted", a.name)
		if a.reason != "" {
			// Every datagram that reached node 1 is accounted for: rejected
			// and counted under the attack's reason, or dropped by the
			// kernel before the agent could read it (and counted so).
			k := `fmagent_packets_rejected_total{reason="` + a.reason + `"}`
			require.Positive(t, m1[k]-m0[k], "%s: counted as %s", a.name, a.reason)
			require.GreaterOrEqual(t, m1[k]-m0[k]+dropped, 0.9*float64(n), "%s: most counted as %s or as kernel drops", a.name, a.reason)
		}
	}

	// Local clients: half-sent frames, a connection flood, a raise flood.
	// Their time budget starts now: the floods above are sent by this
	// process too, and on a loaded machine (load 18 on 2 cores seen) the
	// sending alone took a minute.
	cancel()
	ctx, cancel = context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var conns []net.Conn
	for range 200 * scale {
		nc, err := net.Dial("unix", cfgs[0].Paths.Socket)
		if err != nil {
			continue
		}
		nc.Write(api.AppendFrame(nil, api.Header{Version: api.Version, Op: api.OpStatus, ID: 1}, []byte(`{}`))[:10])
		conns = append(conns, nc)
	}
	time.Sleep(time.Second) // past the frame timeout
	for _, nc := range conns {
		nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := io.ReadAll(nc) // a busy frame if refused, then EOF
		require.False(t, errors.Is(err, os.ErrDeadlineExceeded), "half-frame connection closed")
		nc.Close()
	}
	_, err = cl.Register(ctx, "svc/attack", client.KindService)
	require.NoError(t, err)
	raw, err := net.Dial("unix", cfgs[0].Paths.Socket)
	require.NoError(t, err)
	br := bufio.NewReader(raw)
	throttled := 0
	// Pipelined, as a flooding client would: each acknowledged write waits
	// for the master and a table save, so one at a time stays under the
	// rate by itself.
	go func() {
		for i := range 300 * scale {
			if _, err := raw.Write(api.AppendFrame(nil, api.Header{Version: api.Version, Op: api.OpRaise, ID: uint32(i + 1)},
				[]byte(fmt.Sprintf(`{"name":"svc/attack","cause":"c%d","severity":"minor"}`, i%4)))); err != nil {
				return
			}
		}
	}()
	for range 300 * scale {
		h, body, err := api.ReadFrame(br)
		require.NoError(t, err)
		if h.Flags&api.FlagError != 0 && strings.Contains(string(body), `"throttled"`) {
			throttled++
		}
	}
	raw.Close()
	require.Positive(t, throttled, "the raise flood was throttled")

	// A registration flood from one client: past entities_per_owner every
	// registration is answered limit, and nothing is created.
	registered, limited := 1, 0 // svc/attack
	for i := range 3 * perOwner {
		_, err := cl.Register(ctx, fmt.Sprintf("svc/flood-%d", i), client.KindService)
		if err != nil {
			require.ErrorIs(t, err, api.ErrLimit, "registration %d", i)
			limited++
			continue
		}
		registered++
	}
	t.Logf("registration flood: %d registered, %d answered limit (entities_per_owner %d)", registered, limited, perOwner)
	require.Equal(t, perOwner, registered, "node 1's clients hold exactly their limit")

	after := metricsOf(t, cfgs[0].Metrics.Listen)
	t.Logf("local clients: %d half frames, 300×%d raises: api refused frame_timeout=%.0f throttled=%.0f conns=%.0f; process RSS %d kB (start %d), fds %d (start %d)",
		len(conns), scale, after[`fmagent_api_refused_total{reason="frame_timeout"}`]-before[`fmagent_api_refused_total{reason="frame_timeout"}`],
		after[`fmagent_api_refused_total{reason="throttled"}`]-before[`fmagent_api_refused_total{reason="throttled"}`],
		after[`fmagent_api_refused_total{reason="conns"}`]-before[`fmagent_api_refused_total{reason="conns"}`],
		processRSSkB(), rss0, processFDs(), fds0)
	ft := after[`fmagent_api_refused_total{reason="frame_timeout"}`] - before[`fmagent_api_refused_total{reason="frame_timeout"}`]
	refused := after[`fmagent_api_refused_total{reason="conns"}`] - before[`fmagent_api_refused_total{reason="conns"}`]
	require.GreaterOrEqual(t, ft+refused, float64(len(conns)), "every half-frame connection closed by the frame timeout or refused by the connection limit")

	for k, v := range after {
		if strings.HasPrefix(k, "fmagent_events_total") && v != before[k] {
			t.Logf("%s: %.0f → %.0f", k, before[k], v)
		}
	}
	// Nothing changed: same master and epoch, no election, no false down.
	st1, err := cl.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, st0.Master, st1.Master, "no master change")
	require.Equal(t, st0.Epoch, st1.Epoch, "no election")
	table1 := snapshot()
	delete(table1, "svc/attack")
	for i := range 3 * perOwner {
		delete(table1, fmt.Sprintf("svc/flood-%d", i))
	}
	require.Equal(t, table0, table1, "no entity changed state, none appeared")
	require.Equal(t, before[`fmagent_events_total{kind="election"}`], after[`fmagent_events_total{kind="election"}`])
	require.LessOrEqual(t, processFDs(), fds0+20, "fds back to bounded")
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

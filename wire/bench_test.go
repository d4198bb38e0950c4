package wire

import "testing"

// Benchmarks of the per-packet paths. Bytes/s is datagram bytes.

func BenchmarkHeartbeatEncode(b *testing.B) {
	c := newTestCodec()
	h := testHeader()
	m := fullHeartbeat()
	buf := make([]byte, 0, MaxDatagram)
	pkt, _ := c.AppendHeartbeat(buf, &h, m)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		h.Seq++
		if _, err := c.AppendHeartbeat(buf[:0], &h, m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHeartbeatOpenDecode(b *testing.B) {
	c := newTestCodec()
	h := testHeader()
	pkt, err := c.AppendHeartbeat(nil, &h, fullHeartbeat())
	if err != nil {
		b.Fatal(err)
	}
	var m Heartbeat
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		_, body, err := c.Open(pkt)
		if err != nil {
			b.Fatal(err)
		}
		if err := DecodeHeartbeat(body, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// updateBenchChanges is a full datagram of typical changes.
func updateBenchChanges() []Change { return testChanges(20, 40, 16) }

func BenchmarkUpdateEncode(b *testing.B) {
	c := newTestCodec()
	h := testHeader()
	cs := updateBenchChanges()
	buf := make([]byte, 0, MaxDatagram)
	pkt, n, _ := c.AppendUpdate(buf, &h, cs)
	b.SetBytes(int64(len(pkt)))
	b.ReportMetric(float64(n), "changes/op")
	b.ReportAllocs()
	for b.Loop() {
		h.Seq++
		if _, _, err := c.AppendUpdate(buf[:0], &h, cs); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUpdateOpenDecode(b *testing.B) {
	c := newTestCodec()
	h := testHeader()
	pkt, n, err := c.AppendUpdate(nil, &h, updateBenchChanges())
	if err != nil {
		b.Fatal(err)
	}
	var m Update
	b.SetBytes(int64(len(pkt)))
	b.ReportMetric(float64(n), "changes/op")
	b.ReportAllocs()
	for b.Loop() {
		_, body, err := c.Open(pkt)
		if err != nil {
			b.Fatal(err)
		}
		if err := DecodeUpdate(body, &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReplayAdmit(b *testing.B) {
	var w ReplayWindow
	var seq uint64
	b.ReportAllocs()
	for b.Loop() {
		seq++
		if err := w.Admit(1, seq); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenForged is the cost of dropping a packet with a bad MAC: the
// price of a flood from someone without the key.
func BenchmarkOpenForged(b *testing.B) {
	c := newTestCodec()
	h := testHeader()
	pkt, err := c.AppendHeartbeat(nil, &h, fullHeartbeat())
	if err != nil {
		b.Fatal(err)
	}
	pkt[len(pkt)-1] ^= 1
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.Open(pkt); err == nil {
			b.Fatal("forged packet opened")
		}
	}
}

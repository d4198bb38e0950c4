package testutil

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/config"
)

// Writers and a reader at once: the race detector would see an unguarded
// buffer, and every line must arrive whole.
func TestSyncBufferConcurrent(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				_, err := b.Write([]byte("line " + strconv.Itoa(w) + "\n"))
				assert.NoError(t, err)
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	lines := b.Lines()
	require.Len(t, lines, 800)
	for _, l := range lines {
		require.Regexp(t, `^line [0-3]$`, l)
	}
}

func TestSyncBufferLines(t *testing.T) {
	var b SyncBuffer
	assert.Nil(t, b.Lines(), "nothing written: no lines, not one empty line")
	b.Write([]byte("a\n\nb\n"))
	assert.Equal(t, []string{"a", "", "b"}, b.Lines())
}

func TestJSONLines(t *testing.T) {
	var b SyncBuffer
	b.Write([]byte(`{"level":"WARN","msg":"peer lost","node":3}` + "\n"))
	b.Write([]byte("not json\n"))
	b.Write([]byte(`{"level":"INFO","msg":"master elected","node":1}` + "\n"))
	b.Write([]byte(`{"level":"INFO","msg":42}` + "\n"))
	b.Write([]byte(`{"level":"INFO","msg":"peer lost again"}` + "\n"))
	got := b.JSONLines("peer lost")
	require.Len(t, got, 2)
	assert.Equal(t, float64(3), got[0]["node"])
	assert.Equal(t, "peer lost again", got[1]["msg"])
	assert.Len(t, b.JSONLines(""), 3, "every line with a string msg")
}

func TestWithin(t *testing.T) {
	var n atomic.Int32
	start := time.Now()
	assert.True(t, Within(5*time.Second, func() bool { return n.Add(1) == 3 }))
	assert.Equal(t, int32(3), n.Load(), "asked until true, no more")
	assert.Less(t, time.Since(start), 5*time.Second)

	n.Store(0)
	start = time.Now()
	assert.False(t, Within(60*time.Millisecond, func() bool { n.Add(1); return false }))
	assert.GreaterOrEqual(t, time.Since(start), 60*time.Millisecond, "waits the whole time")
	assert.GreaterOrEqual(t, n.Load(), int32(3), "polled, and once more after the deadline")

	assert.True(t, Within(0, func() bool { return true }), "a true condition needs no time")
}

// fakeTB records what WaitFor reports instead of failing this test.
type fakeTB struct {
	testing.TB
	failed string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = format
	_ = args
}

func TestWaitForFailsSayingWhat(t *testing.T) {
	f := &fakeTB{TB: t}
	WaitFor(f, 30*time.Millisecond, "the impossible", func() bool { return false })
	assert.Contains(t, f.failed, "timed out")
	f.failed = ""
	WaitFor(f, time.Second, "the possible", func() bool { return true })
	assert.Empty(t, f.failed)
}

func TestContextEndsWithTest(t *testing.T) {
	var ctxDone <-chan struct{}
	t.Run("inner", func(t *testing.T) {
		ctx := Context(t, time.Hour)
		ctxDone = ctx.Done()
		require.NoError(t, ctx.Err())
	})
	select {
	case <-ctxDone:
	default:
		t.Fatal("the context outlived its test")
	}
	ctx := Context(t, 10*time.Millisecond)
	<-ctx.Done()
}

func TestFreePorts(t *testing.T) {
	p := FreeUDPPort(t)
	c, err := net.ListenPacket("udp4", "127.0.0.1:"+strconv.Itoa(p))
	require.NoError(t, err, "the port given is free to bind")
	c.Close()
	addr := FreeTCPAddr(t)
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	ln.Close()
}

func TestMulticastNet(t *testing.T) {
	seen := map[[2]byte]bool{}
	for i := 0; i < 50; i++ {
		a, b, port := MulticastNet(t)
		require.True(t, a.IsMulticast() && b.IsMulticast(), "%v %v", a, b)
		require.NotEqual(t, a, b, "one group per network")
		a4, b4 := a.As4(), b.As4()
		require.Equal(t, [2]byte{239, 255}, [2]byte{a4[0], a4[1]}, "administratively scoped")
		require.Equal(t, a4[2]+1, b4[2])
		require.Positive(t, port)
		seen[[2]byte{a4[2], a4[3]}] = true
	}
	assert.Greater(t, len(seen), 40, "groups differ from test to test")
}

func TestNetConfig(t *testing.T) {
	n := NewNet(t)
	dir := t.TempDir()
	c1, c2 := n.Config(1, dir), n.Config(2, dir)
	for i, c := range []*config.Config{c1, c2} {
		require.NoError(t, c.Validate(), "node %d", i+1)
		assert.Equal(t, uint32(i+1), c.NodeID)
		assert.Equal(t, n.Cluster, c.ClusterID)
		assert.Equal(t, n.A, c.Networks[0].Group)
		assert.Equal(t, n.B, c.Networks[1].Group)
		assert.Equal(t, n.Port, c.Networks[0].Port)
		assert.Equal(t, n.Port, c.Networks[1].Port)
		assert.Empty(t, c.Metrics.Listen, "no two test agents fight for the metrics port")
		assert.True(t, strings.HasPrefix(c.Paths.Socket, c.Paths.StateDir+"/"))
		assert.True(t, strings.HasPrefix(c.Paths.StateDir, dir+"/"))
	}
	assert.NotEqual(t, c1.Paths.StateDir, c2.Paths.StateDir)
	assert.NotEqual(t, c1.Paths.Shm, c2.Paths.Shm)
	assert.NotEqual(t, NewNet(t).Cluster, NewNet(t).Cluster, "(once in 2^30 this is a false alarm)")
}

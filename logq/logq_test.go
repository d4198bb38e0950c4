package logq

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/internal/testutil"
)

// lockedBuffer is an output that can be held: a write waits while gate is
// held.
type lockedBuffer struct {
	gate sync.Mutex
	testutil.SyncBuffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.gate.Lock()
	defer l.gate.Unlock()
	return l.SyncBuffer.Write(p)
}

func line(i int) []byte { return []byte(fmt.Sprintf("line %04d\n", i)) }

// Every line comes out, in order, by Close at the latest; after Close a
// write goes straight out.
func TestWritesComeOutInOrder(t *testing.T) {
	var out lockedBuffer
	w := New(&out, 1<<20, 5*time.Millisecond)
	var want strings.Builder
	for i := range 1000 {
		n, err := w.Write(line(i))
		require.NoError(t, err)
		require.Equal(t, len(line(i)), n)
		want.Write(line(i))
	}
	require.True(t, w.Close(time.Second))
	require.Equal(t, want.String(), out.String())
	_, _ = w.Write([]byte("after\n"))
	require.Equal(t, want.String()+"after\n", out.String(), "after Close, written at once")
}

// An output that does not take anything (a journal that does not keep up)
// never blocks a writer: what fits is queued, the rest dropped and counted,
// and once the output takes lines again the queued ones come out and then
// the drop is reported.
func TestWriteNeverBlocksOnAStuckOutput(t *testing.T) {
	var out lockedBuffer
	out.gate.Lock() // the output is stuck
	const limit = 100 * 10
	w := New(&out, limit, 2*time.Millisecond)
	var mu sync.Mutex
	var reported uint64
	w.OnDrop(func(n uint64) {
		mu.Lock()
		reported += n
		mu.Unlock()
		_, _ = w.Write([]byte("dropped\n"))
	})
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for i := range 300 {
			_, _ = w.Write(line(i))
			if i == 150 {
				time.Sleep(5 * time.Millisecond) // a flush begins and blocks on the output
			}
		}
	}()
	select {
	case <-wrote:
	case <-time.After(10 * time.Second): // a liveness bound: a write that waits for the output never returns
		t.Fatal("Write blocked on a stuck output")
	}

	out.gate.Unlock()
	require.True(t, w.Close(5*time.Second))
	got := out.String()
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	mu.Lock()
	dropped := reported
	mu.Unlock()
	require.Positive(t, dropped, "writes were dropped")
	require.Equal(t, "dropped", lines[len(lines)-1], "the drop is reported after what was queued before it")
	written := 0
	prev := -1
	for _, l := range lines {
		if l == "dropped" {
			continue
		}
		written++
		var i int
		_, err := fmt.Sscanf(l, "line %d", &i)
		require.NoError(t, err, l)
		require.Greater(t, i, prev, "in order")
		prev = i
	}
	require.Equal(t, 300, written+int(dropped), "every write came out or was counted as dropped")
}

// Queuing a line allocates nothing once the two buffers have grown.
func TestWriteAllocatesNothing(t *testing.T) {
	var out lockedBuffer
	w := New(&out, 1<<20, 2*time.Millisecond)
	defer w.Close(time.Second)
	l := line(1)
	for range 3 {
		for range 300 {
			_, _ = w.Write(l)
		}
		time.Sleep(20 * time.Millisecond)
	}
	allocs := testing.AllocsPerRun(200, func() { _, _ = w.Write(l) })
	assert.Zero(t, allocs)
}

// An idle Writer's goroutine sleeps: it wakes once for a burst of lines
// (the first kicks it, the rest join its write a period later), and not at
// all while nothing is written. A ticker woke it every period.
func TestIdleWriterDoesNotWake(t *testing.T) {
	var out lockedBuffer
	w := New(&out, 1<<20, time.Millisecond)
	defer w.Close(time.Second)
	time.Sleep(50 * time.Millisecond)
	assert.Zero(t, w.wakes.Load(), "woken with nothing written")

	for i := range 100 {
		_, _ = w.Write(line(i))
	}
	require.Eventually(t, func() bool { return strings.Count(out.String(), "\n") == 100 }, 10*time.Second, time.Millisecond)
	woken := w.wakes.Load()
	assert.LessOrEqual(t, woken, uint64(10), "a burst is written in a few writes, not one per line")
	assert.Positive(t, woken)
	time.Sleep(50 * time.Millisecond)
	assert.Equal(t, woken, w.wakes.Load(), "woken again with nothing written")
}

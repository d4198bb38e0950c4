package netsim

import (
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"testing"
)

// -fulltrace prints a replayed seed's whole trace, whether the seed passes
// or fails: `go test ./netsim/ -run 'TestChaos$' -seed N -fulltrace`. (A
// failing seed prints its last 200 lines anyway.) It is not called -trace
// because go test keeps that name for the runtime's execution trace.
var flagTrace = flag.Bool("fulltrace", false, "with -seed: print the seed's whole trace, even when it passes")

// writeTrace writes s's whole trace to w, between two lines that say
// which seed it is.
func writeTrace(w io.Writer, seed uint64, s *Sim) {
	fmt.Fprintf(w, "--- trace of seed %d\n%s\n--- end of the trace of seed %d\n", seed, s.Trace(math.MaxInt), seed)
}

// traceIfAsked is what -fulltrace adds to a replay.
func traceIfAsked(seed uint64, s *Sim) {
	if *flagTrace && s != nil {
		writeTrace(os.Stdout, seed, s)
	}
}

// The trace -fulltrace prints is the whole story and the same on every run of
// a seed: what the simulator's one-command replay promises.
func TestChaosTraceDeterministic(t *testing.T) {
	seeds := []uint64{1, 2, 3}
	if testing.Short() {
		seeds = seeds[:1]
	}
	co := DefaultChaos
	co.Trace = true
	for _, seed := range seeds {
		var traces [2]string
		for i := range traces {
			res, s, err := RunChaos(seed, co)
			if err != nil {
				t.Fatalf("seed %d (%d nodes): %v", seed, res.Nodes, err)
			}
			var b strings.Builder
			writeTrace(&b, seed, s)
			traces[i] = b.String()
		}
		if traces[0] != traces[1] {
			t.Fatalf("seed %d: two runs gave different traces", seed)
		}
		if n := strings.Count(traces[0], "\n"); n < 50 {
			t.Fatalf("seed %d: a trace of %d lines is not the whole story", seed, n)
		}
	}
}

package wire

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReplayWindow(t *testing.T) {
	type step struct {
		inc, seq uint64
		ok       bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"seq 0 never", []step{{0, 0, false}, {1, 0, false}, {1, 1, true}, {1, 0, false}}},
		{"zero value admits incarnation 0", []step{{0, 1, true}, {0, 2, true}, {0, 1, false}}},
		{"in order", []step{{5, 1, true}, {5, 2, true}, {5, 3, true}}},
		{"duplicate", []step{{5, 1, true}, {5, 1, false}, {5, 2, true}, {5, 2, false}, {5, 1, false}}},
		{"reordered within window", []step{{5, 10, true}, {5, 8, true}, {5, 9, true}, {5, 8, false}, {5, 7, true}}},
		{"window edge", []step{
			{5, 200, true},
			{5, 200 - ReplayWidth + 1, true}, // oldest still inside
			{5, 200 - ReplayWidth + 1, false},
			{5, 200 - ReplayWidth, false}, // just outside
		}},
		{"big jump forgets", []step{{5, 1, true}, {5, 2, true}, {5, 1000, true}, {5, 999, true}, {5, 2, false}, {5, 1000 - ReplayWidth + 1, true}}},
		{"jump of 64 keeps words straight", []step{{5, 100, true}, {5, 164, true}, {5, 100, false}, {5, 101, true}, {5, 37, true}, {5, 36, false}}},
		{"jump of 127", []step{{5, 1, true}, {5, 128, true}, {5, 1, false}, {5, 2, true}}},
		{"new incarnation resets", []step{{5, 1000, true}, {6, 1, true}, {6, 1, false}, {6, 2, true}, {5, 1001, false}}},
		{"old incarnation is replay", []step{{6, 1, true}, {5, 1, false}, {5, 99999, false}, {0, 2, false}}},
		{"max values", []step{{^uint64(0), ^uint64(0), true}, {^uint64(0), ^uint64(0) - 1, true}, {^uint64(0), ^uint64(0), false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w ReplayWindow
			for i, s := range tt.steps {
				before := w
				err := w.Check(s.inc, s.seq)
				require.Equal(t, before, w, "Check must not change state")
				if s.ok {
					require.NoError(t, err, "step %d (%d,%d)", i, s.inc, s.seq)
				} else {
					require.ErrorIs(t, err, ErrReplay, "step %d (%d,%d)", i, s.inc, s.seq)
				}
				require.Equal(t, err, w.Admit(s.inc, s.seq))
				if err != nil {
					require.Equal(t, before, w, "a rejected packet must not change state")
				}
			}
		})
	}
}

// TestReplayWindowModel compares the window with a set of every pair ever
// admitted, over random traffic with reordering, duplicates and restarts.
func TestReplayWindowModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		var w ReplayWindow
		var inc, top uint64
		seen := map[[2]uint64]bool{}
		for range 5000 {
			i, s := inc, top
			switch r := rng.IntN(100); {
			case r < 2:
				i++ // restart
				s = 1 + rng.Uint64N(3)
			case r < 4 && inc > 0:
				i-- // stale incarnation
			case r < 50:
				s += 1 + rng.Uint64N(3)
			case r < 55:
				s += 60 + rng.Uint64N(140) // jumps across words and past the window
			default:
				back := rng.Uint64N(ReplayWidth + 20)
				if back >= s {
					back = s - 1
				}
				s -= back
			}
			if s == 0 {
				s = 1
			}
			var want bool
			switch {
			case i > inc:
				want = true
			case i < inc:
				want = false
			default:
				want = s > top || (top-s < ReplayWidth && !seen[[2]uint64{i, s}])
			}
			err := w.Admit(i, s)
			require.Equal(t, want, err == nil, "round %d: admit (%d,%d) with inc %d top %d", round, i, s, inc, top)
			if err == nil {
				seen[[2]uint64{i, s}] = true
				if i > inc {
					inc, top = i, s
				} else if s > top {
					top = s
				}
			}
		}
	}
}

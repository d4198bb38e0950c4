package bench

import (
	"errors"
	"testing"
	"time"
)

func TestParseProfiles(t *testing.T) {
	ps, err := ParseProfiles("10msx5, 4ms×5,default")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 3 {
		t.Fatalf("got %d profiles", len(ps))
	}
	if ps[0].Interval != 10*time.Millisecond || ps[0].Misses != 5 || ps[0].Name != "" {
		t.Errorf("10msx5: %+v", ps[0])
	}
	if ps[1].Bound() != 20*time.Millisecond {
		t.Errorf("4ms×5: bound %v", ps[1].Bound())
	}
	if ps[2].Name != "default" || ps[2].Bound() <= 0 {
		t.Errorf("default: %+v", ps[2])
	}
	for _, bad := range []string{"", "0msx5", "4msx", "xx5", "no-such-profile"} {
		if _, err := ParseProfiles(bad); !errors.Is(err, ErrProfile) {
			t.Errorf("%q: err %v, want ErrProfile", bad, err)
		}
	}
}

// TestClientNeverOnTheMaster: the benchmark's client writes to an agent
// other than the master's for every master a formation can elect, so a
// report's samples always take the master's hop.
func TestClientNeverOnTheMaster(t *testing.T) {
	for nodes := 2; nodes <= 9; nodes++ {
		for master := 1; master <= nodes; master++ {
			c := clientNodeFor(master, nodes)
			if c == master || c < 1 || c > nodes {
				t.Errorf("%d nodes, master %d: client on node %d", nodes, master, c)
			}
		}
	}
}

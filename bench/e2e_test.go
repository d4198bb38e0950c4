package bench

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	MaybeHelper() // the baseline's receivers are this test binary run again
	os.Exit(m.Run())
}

// logWriter sends progress lines to t.Log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// TestE2EShort runs a short version of the e2e measurement (bench/cmd/e2e)
// on three real agents, so that it cannot rot: every sample must be seen in
// every node's shared memory (every baseline datagram by every receiver),
// and the killed agent must be seen down by every survivor and come back.
// It checks no timing: the machine running the tests is shared and noisy.
func TestE2EShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real agents")
	}
	bin, err := BuildAgent(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const samples, kills = 30, 2
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, Config{
		Nodes: 3, Samples: samples, Warmup: 2, Kills: kills,
		Agent: bin, Gap: time.Millisecond, Log: logWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	var sum strings.Builder
	res.Summary(&sum)
	WriteMedians(&sum, []*Result{res})
	t.Log("\n" + sum.String())

	if len(res.Failures) > 0 {
		t.Errorf("%d samples not observed everywhere: %v", len(res.Failures), res.Failures)
	}
	if res.Master < 1 || res.Master > 3 {
		t.Errorf("master %d", res.Master)
	}
	for _, f := range Figures {
		d := f.Get(res)
		want := samples
		if strings.Contains(f.Name, "kill") || strings.Contains(f.Name, "survivor") {
			want = kills
		}
		if len(d) != want {
			t.Errorf("%s: %d samples, want %d", f.Name, len(d), want)
		}
	}
	// Causality, on the monotonic clock: nothing is seen before it is done.
	for name, d := range map[string]Dist{
		"report": res.Report, "report return": res.ReportReturn, "down total": res.DownTotal,
		"baseline": res.Baseline, "baseline first": res.BaselineFirst, "detection": res.DetectDist(),
	} {
		for _, v := range d {
			if v <= 0 {
				t.Errorf("%s: sample %v", name, v)
			}
		}
	}
	for _, k := range res.Kills {
		if k.Victim == k.Master || k.Victim < 1 || k.Victim > 3 {
			t.Errorf("kill %+v: the victim must be a node other than the master", k)
		}
	}
}

func TestQuantile(t *testing.T) {
	var d Dist
	for i := 1; i <= 200; i++ {
		d = append(d, time.Duration(201-i)) // unsorted on purpose
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 100}, {0.9, 180}, {0.99, 198}, {1, 200}, {0.001, 1}} {
		if got := d.Quantile(c.q); got != c.want {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if d[0] != 200 {
		t.Error("Quantile sorted the caller's samples")
	}
	if (Dist{}).P99() != 0 {
		t.Error("empty Dist")
	}
}

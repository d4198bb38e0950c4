package persist

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// slotSaverEnv makes this test binary a saver (TestMain): it saves tables
// of ever higher seq into the directory the variable names, and prints
// each seq once SaveTable has returned (what the agent acknowledges).
const slotSaverEnv = "FMAGENT_PERSIST_SLOT_SAVER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(slotSaverEnv); dir != "" {
		os.Exit(slotSaver(dir))
	}
	os.Exit(m.Run())
}

func slotSaver(dir string) int {
	tb := bigTable(4000)
	start := uint64(0)
	if t, err := LoadTable(dir); err == nil && t != nil {
		start = t.Seq
	}
	out := bufio.NewWriter(os.Stdout)
	for seq := start + 1; ; seq++ {
		tb.Seq = seq
		tb.Entities = tb.Entities[:3000+int(seq%1000)] // sizes that differ from save to save
		if err := SaveTable(dir, tb); err != nil {
			fmt.Fprintln(os.Stderr, "save:", err)
			return 1
		}
		fmt.Fprintln(out, seq)
		out.Flush()
	}
}

// A process killed with SIGKILL at a random moment, mid-save as often as
// not (a fatal signal can cut a large write short after some pages):
// the table loads, whole, at a seq no older than the last save that had
// returned, every time, and the saver started again continues from it.
func TestTableSlotsSurviveKills(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 11))
	for round := range 30 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), slotSaverEnv+"="+dir)
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		acked := make(chan uint64, 1<<16)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if n, err := strconv.ParseUint(sc.Text(), 10, 64); err == nil {
					acked <- n
				}
			}
			close(acked)
		}()
		// Let it save a few times, then kill it at a random moment.
		first := <-acked
		time.Sleep(time.Duration(rng.IntN(20000)) * time.Microsecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		last := first
		for n := range acked {
			last = n
		}
		got, err := LoadTable(dir)
		require.NoError(t, err, "round %d: after a kill", round)
		require.NotNil(t, got)
		require.GreaterOrEqual(t, got.Seq, last, "round %d: the last acknowledged save", round)
		require.Len(t, got.Entities, 3000+int(got.Seq%1000), "round %d: whole", round)
	}
}

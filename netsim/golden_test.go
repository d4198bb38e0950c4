package netsim

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var flagUpdate = flag.Bool("update", false, "rewrite the golden transcripts under testdata/ with what the code prints now")

func transcripts(t *testing.T) []string {
	files, err := filepath.Glob("testdata/*.txt")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	return files
}

func readTranscript(t *testing.T, file string) []TranscriptCase {
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	cases, err := ReadTranscript(f)
	require.NoError(t, err, file)
	return cases
}

func runTranscript(t *testing.T, file string, cases []TranscriptCase) []TranscriptCase {
	_, got, err := RunTranscript(cases)
	require.NoError(t, err, file)
	return got
}

// TestGolden replays every transcript under testdata/ (one per row of the
// fault model, in the style of go.etcd.io/raft's testdata with rafttest):
// each command runs on the simulator and must print exactly the text that
// follows its "----" line. `go test ./netsim -run Golden -update` rewrites
// them; review the diff like code.
func TestGolden(t *testing.T) {
	for _, file := range transcripts(t) {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			t.Parallel()
			cases := readTranscript(t, file)
			got := runTranscript(t, file, cases)
			if *flagUpdate {
				require.NoError(t, os.WriteFile(file, []byte(FormatTranscript(got)), 0o644))
				return
			}
			for i := range cases {
				require.Equal(t, cases[i].Out, got[i].Out, "%s:%d: %s", file, cases[i].Line, cases[i].Cmd)
			}
		})
	}
}

// TestGoldenDeterministic runs each transcript twice: the same commands
// (and so the same seed) must print the same trace, byte for byte.
func TestGoldenDeterministic(t *testing.T) {
	for _, file := range transcripts(t) {
		cases := readTranscript(t, file)
		a := FormatTranscript(runTranscript(t, file, cases))
		b := FormatTranscript(runTranscript(t, file, cases))
		require.Equal(t, a, b, file)
	}
}

// TestGoldenFormat checks that a transcript read and written again is the
// same file, so -update regenerates a transcript byte for byte.
func TestGoldenFormat(t *testing.T) {
	for _, file := range transcripts(t) {
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		require.Equal(t, string(b), FormatTranscript(readTranscript(t, file)), file)
	}
}

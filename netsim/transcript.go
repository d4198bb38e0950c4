package netsim

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// A TranscriptCase is one command of a golden transcript with the comment
// lines before it and the output that follows its "----" line (up to the
// next blank line). See Script for the commands and golden_test.go for how
// the transcripts under testdata/ are checked and rewritten.
type TranscriptCase struct {
	Comments []string
	Cmd      string
	Out      string
	Line     int
}

// ReadTranscript parses a transcript.
func ReadTranscript(r io.Reader) ([]TranscriptCase, error) {
	var cases []TranscriptCase
	var cur TranscriptCase
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		l := sc.Text()
		if l == "" || strings.HasPrefix(l, "#") {
			cur.Comments = append(cur.Comments, l)
			continue
		}
		cur.Cmd, cur.Line = l, n
		if !sc.Scan() || sc.Text() != "----" {
			return nil, fmt.Errorf("line %d: want ---- after the command %q", n+1, l)
		}
		n++
		var out []string
		for sc.Scan() {
			n++
			if sc.Text() == "" {
				break
			}
			out = append(out, sc.Text())
		}
		cur.Out = strings.Join(out, "\n")
		cases = append(cases, cur)
		cur = TranscriptCase{}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(cur.Comments) > 0 {
		return nil, fmt.Errorf("line %d: comments after the last command", n)
	}
	return cases, nil
}

// RunTranscript runs the commands of cases on a new Script and returns the
// cases with the output each printed now.
func RunTranscript(cases []TranscriptCase) (*Script, []TranscriptCase, error) {
	sc := new(Script)
	got := make([]TranscriptCase, len(cases))
	for i, c := range cases {
		out, err := sc.Do(c.Cmd)
		if err != nil {
			return sc, nil, fmt.Errorf("line %d: %s: %w", c.Line, c.Cmd, err)
		}
		got[i] = c
		got[i].Out = out
	}
	return sc, got, nil
}

// FormatTranscript writes cases back in the transcript format; reading and
// formatting a transcript gives the same bytes.
func FormatTranscript(cases []TranscriptCase) string {
	var b strings.Builder
	for _, c := range cases {
		for _, l := range c.Comments {
			b.WriteString(l + "\n")
		}
		b.WriteString(c.Cmd + "\n----\n")
		if c.Out != "" {
			b.WriteString(c.Out + "\n")
		}
		b.WriteString("\n")
	}
	return b.String()
}

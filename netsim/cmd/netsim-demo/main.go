// Command netsim-demo plays a golden transcript of the deterministic
// simulator and narrates it: each comment, each command and what it made
// happen. By default it plays netsim/testdata/demo.txt (a five-node cluster:
// election, a client alarm, the master killed, a partition of one network,
// then of both, and the heal), which `go test ./netsim -run Golden` checks
// line for line; -script plays any other transcript. It exits 1 if the
// cluster's tables do not agree at the end.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/fmagent/fmagent/netsim"
)

func main() {
	script := flag.String("script", "netsim/testdata/demo.txt", "transcript to play (see netsim/testdata)")
	flag.Parse()
	f, err := os.Open(*script)
	if err != nil {
		fmt.Fprintln(os.Stderr, "netsim-demo:", err)
		os.Exit(2)
	}
	cases, err := netsim.ReadTranscript(f)
	f.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "netsim-demo: %s: %v\n", *script, err)
		os.Exit(2)
	}
	var sc netsim.Script
	for _, c := range cases {
		for _, l := range c.Comments {
			if l != "" {
				fmt.Println(strings.TrimSpace(strings.TrimPrefix(l, "#")))
			}
		}
		fmt.Println("> " + c.Cmd)
		out, err := sc.Do(c.Cmd)
		if err != nil {
			fmt.Fprintf(os.Stderr, "netsim-demo: %s:%d: %v\n", *script, c.Line, err)
			os.Exit(2)
		}
		if out != "" {
			fmt.Println(out)
		}
		fmt.Println()
	}
	if sc.Sim == nil {
		return
	}
	digests := map[uint64]bool{}
	for _, n := range sc.Sim.Nodes {
		if n.Up && !n.Paused {
			digests[n.Core.Table().Digest()] = true
		}
	}
	if len(digests) != 1 {
		fmt.Println("FAILED: the running nodes' tables do not agree")
		os.Exit(1)
	}
	fmt.Println("all tables agree.")
}

#!/usr/bin/env bash
# scripts/gotest.sh LOG [go test flags and packages]: what `make test` runs
# for the suite. go test's output is streamed as usual and kept in LOG; when
# it fails, the failures are printed again at the end: which tests, and the
# lines that say why (t.Fatal/t.Error lines, testify's blocks, panics, data
# races, time-outs), without the agents' logs around them.
#
# Why: a failed agent test prints the logs of every agent it ran, thousands
# of lines, and a CI page that keeps the head and the tail of the output
# cuts the one line that says what failed (a CI run of 3 December failed
# TestFullClusterRestartKeepsTable and showed only its agents' logs).
set -uo pipefail

log=${1:?usage: gotest.sh LOG [go test arguments]}
shift
mkdir -p "$(dirname "$log")"

"${GO:-go}" test "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
	echo
	echo "=== go test failed (exit $rc). The failures again (the whole output is in $log):"
	awk '
		/level=(DEBUG|INFO|WARN|ERROR)/ { blk = 0; next }   # an agent log line
		/^[ \t]+Error Trace:/ { blk = 1 }                      # testify: up to its Messages line
		blk && /^[^ \t]/ { blk = 0 }
		blk || /^[ \t]*--- FAIL|^[ \t]+[A-Za-z0-9_.]+\.go:[0-9]+: |^panic:|^fatal error:|DATA RACE|^FAIL[ \t]|test timed out/ {
			print substr($0, 1, 400)
		}
	' "$log" | tail -n 200
fi
exit "$rc"

#!/usr/bin/env bash
# fmagent demo (what `make demo` runs after `make build`): three agents on
# loopback, the two networks standing in as two multicast groups on `lo`.
#
#   1. start nodes 1-3 (10 ms heartbeats, 5 misses: a 50 ms detection bound)
#   2. wait until every node sees one master and 3 members up
#   3. show node 1's status and entities
#   4. raise an alarm on node 2 with fmctl, show it on node 3
#   5. stop a non-master agent (SIGSTOP: silent, as a hung host) and measure
#      the time until every survivor's shared memory shows it down
#      (fmagent-probe), against the bound; let it go on (SIGCONT): told it is
#      down, it comes back under a new incarnation
#   6. kill -9 it: its kernel closes its exit-watch connection to the master,
#      which sees it down at once, not at the bound
#
# Everything runs from a temporary directory that is removed on exit, with a
# random cluster ID, multicast groups and port, so the demo does not disturb
# (nor hear) other agents on the host. No root needed.
#
# Environment: BIN (default ./bin) holds fmagent, fmctl and fmagent-probe.
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=${BIN:-./bin}
FMAGENT=$BIN/fmagent
FMCTL=$BIN/fmctl
PROBE=$BIN/fmagent-probe
INTERVAL=10ms
MISSES=5
BOUND=50ms # INTERVAL × MISSES

if [ -t 1 ]; then
	say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
	say() { printf '\n== %s\n' "$*"; }
fi
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

for b in "$FMAGENT" "$FMCTL" "$PROBE"; do
	[ -x "$b" ] || die "$b not found: run 'make build' first (or set BIN)"
done

# Multicast on lo. Linux delivers multicast on the loopback device even
# without its MULTICAST flag (transport's package doc), so the flag is only
# set when we can (root); without root the demo goes on, and explains if the
# cluster does not form.
LO_HINT=""
if ! ip link show lo 2>/dev/null | grep -q MULTICAST; then
	if [ "$(id -u)" = 0 ]; then
		ip link set lo multicast on
		echo "demo: lo lacked the MULTICAST flag; ran 'ip link set lo multicast on'"
	else
		LO_HINT=" (lo lacks the MULTICAST flag and this is not root: if multicast on lo does not work on this kernel, run 'sudo ip link set lo multicast on')"
	fi
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fmagent-demo.XXXXXX")
CLUSTER=$((RANDOM * 4 + 1000))
X=$((RANDOM % 200 + 20))
Y=$((RANDOM % 250 + 1))
GA=239.255.$X.$Y
GB=239.255.$((X + 1)).$Y
PORT=$((20000 + RANDOM % 20000))
SHM_PREFIX=fmagent-demo-$$
declare -a PIDS=()

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	for p in "${PIDS[@]}"; do
		[ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		[ -n "$p" ] && wait "$p" 2>/dev/null || true
	done
	rm -f /dev/shm/"$SHM_PREFIX"-* 2>/dev/null || true
	if [ "$rc" != 0 ] && [ -d "$TMP" ]; then
		for i in 1 2 3; do
			[ -f "$TMP/n$i.log" ] && { echo "--- node $i log (last 20 lines)"; tail -n 20 "$TMP/n$i.log"; }
		done
	fi
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sock() { echo "$TMP/n$1/fmagent.sock"; }
shm() { echo "/dev/shm/$SHM_PREFIX-$1"; }
ctl() { local n=$1; shift; "$FMCTL" -socket "$(sock "$n")" "$@"; }

# One cluster key for the three nodes (mode 0600). Without one the agents
# would still run here, every network being loopback, but with a warning:
# their packets would be authenticated with a key anyone can compute.
"$FMAGENT" -genkey "$TMP/cluster.key"

say "starting 3 agents (cluster $CLUSTER, groups $GA and $GB port $PORT on lo, interval $INTERVAL × misses $MISSES)"
for i in 1 2 3; do
	mkdir -p "$TMP/n$i"
	cat >"$TMP/n$i.toml" <<EOF
node_id = $i
cluster_id = $CLUSTER
priority = 100
allow_alone = false
key_file = "$TMP/cluster.key"

[networks.a]
interface = "lo"
group = "$GA"
port = $PORT
loopback = true

[networks.b]
interface = "lo"
group = "$GB"
port = $PORT
loopback = true

[timing]
profile = "custom"
interval = "$INTERVAL"
misses = $MISSES
stale_timeout = "10s"

[paths]
state_dir = "$TMP/n$i"
socket = "$(sock "$i")"
shm = "$SHM_PREFIX-$i"

[metrics]
listen = ""
EOF
	"$FMAGENT" -config "$TMP/n$i.toml" 2>"$TMP/n$i.log" &
	PIDS[$i]=$!
	echo "node $i: pid ${PIDS[$i]}, socket $(sock "$i"), shared memory $(shm "$i")"
done

# status_ok N: node N's status shows a master and 3 members up; prints the master.
status_ok() {
	local out
	out=$(ctl "$1" status 2>/dev/null) || return 1
	local master ups
	master=$(awk '$1 == "master:" { print $2 }' <<<"$out")
	ups=$(awk 'seen && $4 == "up" { n++ } $1 == "NODE" { seen = 1 } END { print n + 0 }' <<<"$out")
	[ -n "$master" ] && [ "$master" != none ] && [ "$ups" = 3 ] || return 1
	echo "$master"
}

say "waiting for one master and 3 members on every node"
start=$(date +%s%N)
MASTER=""
for _ in $(seq 1 200); do
	for i in 1 2 3; do
		kill -0 "${PIDS[$i]}" 2>/dev/null || die "node $i exited: $(tail -n 3 "$TMP/n$i.log")$LO_HINT"
	done
	m1=$(status_ok 1) && m2=$(status_ok 2) && m3=$(status_ok 3) && [ "$m1" = "$m2" ] && [ "$m2" = "$m3" ] && {
		MASTER=$m1
		break
	}
	sleep 0.05
done
[ -n "$MASTER" ] || die "the cluster did not form within 10 s$LO_HINT"
echo "cluster formed in $(( ($(date +%s%N) - start) / 1000000 )) ms; master: node $MASTER"

say "fmctl status (node 1)"
ctl 1 status
say "fmctl entities (node 1)"
ctl 1 entities

say "fmctl raise node/2 -cause demo-overheat -severity major (on node 2)"
ctl 2 raise node/2 -cause demo-overheat -severity major
say "fmctl alarms and fmctl get node/2 (on node 3)"
ctl 3 alarms
ctl 3 get node/2

# Kill a node that is not the master (the highest such ID).
VICTIM=""
for i in 3 2 1; do
	if [ "$i" != "$MASTER" ]; then VICTIM=$i; break; fi
done
SURVIVORS=()
for i in 1 2 3; do [ "$i" != "$VICTIM" ] && SURVIVORS+=("$i"); done
say "SIGSTOP node $VICTIM (pid ${PIDS[$VICTIM]}: silent, as a hung host); measuring until node/$VICTIM is down in nodes ${SURVIVORS[*]}' shared memory"
"$PROBE" -kill "${PIDS[$VICTIM]}" -signal STOP -entity "node/$VICTIM" -bound "$BOUND" -timeout 5s \
	"$(shm "${SURVIVORS[0]}")" "$(shm "${SURVIVORS[1]}")"
say "SIGCONT node $VICTIM: told it is down, it comes back under a new incarnation"
kill -CONT "${PIDS[$VICTIM]}"
back=""
for _ in $(seq 1 200); do
	m=$(status_ok "${SURVIVORS[0]}") && status_ok "${SURVIVORS[1]}" >/dev/null && status_ok "$VICTIM" >/dev/null && { back=$m; break; }
	sleep 0.05
done
[ -n "$back" ] || die "node $VICTIM did not come back within 10 s"
for _ in $(seq 1 200); do
	ctl "$VICTIM" status | grep -q '^exit watch: *connected to master' && break
	sleep 0.05
done
echo "node $VICTIM up again on every node; $(ctl "$VICTIM" status | grep '^exit watch:')"

say "kill -9 node $VICTIM (pid ${PIDS[$VICTIM]}); measuring until node/$VICTIM is down in nodes ${SURVIVORS[*]}' shared memory"
disown "${PIDS[$VICTIM]}" # no "Killed" job notice from bash
"$PROBE" -kill "${PIDS[$VICTIM]}" -entity "node/$VICTIM" -bound "$BOUND" -timeout 5s \
	"$(shm "${SURVIVORS[0]}")" "$(shm "${SURVIVORS[1]}")"
PIDS[$VICTIM]=""

say "fmctl status (node ${SURVIVORS[0]}, after the kill)"
ctl "${SURVIVORS[0]}" status
say "fmctl entities -state down (node ${SURVIVORS[1]})"
ctl "${SURVIVORS[1]}" entities -state down

say "done: stopping the agents"

#!/usr/bin/env bash
# Issue 20's state-sync benchmark: a 4-validator network (PROTOCOL hotstuff or pbft) with
# EXTRA funded accounts runs empty blocks as fast as consensus goes (genesis heartbeat_ms = 1)
# until it holds BLOCKS blocks; validator 3 is stopped and its whole data directory deleted;
# it restarts empty. Reported: the time from its restart until its height reaches the tip the
# others had at that moment, until it sends its first vote (CAIRN_VOTE_LOG), whether it got
# there by state sync (cairn_state_syncs_total) and the sync's own duration from its log.
#
#   docs/bench/state-sync.sh [PROTOCOL] [BLOCKS] [EXTRA]   (defaults: hotstuff 10000 100000;
#                                                            needs target/release)
set -euo pipefail
PROTO=${1:-hotstuff}
BLOCKS=${2:-10000}
EXTRA=${3:-100000}
BIN=$(cd "$(dirname "$0")/../.." && pwd)/target/release
WORK=$(mktemp -d /tmp/cairn-state-sync.XXXX)
trap 'pkill -f "cairnd run --home $WORK" 2>/dev/null || true' EXIT
BASE=$(( 27600 + (RANDOM % 50) * 10 ))
API=$((BASE + 1000))

height() { curl -s --max-time 2 "http://127.0.0.1:$1/v1/status" | python3 -c 'import sys,json; print(json.load(sys.stdin)["height"])' 2>/dev/null || echo 0; }
metric() { curl -s --max-time 2 "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1==m {print $2}' ; }
now() { date +%s.%N; }

"$BIN/cairnd" testnet --validators 4 --protocol "$PROTO" --out "$WORK/net" --accounts 2 \
    --extra-accounts "$EXTRA" --base-port "$BASE" > /dev/null
for g in "$WORK/net/genesis.json" "$WORK"/net/validator-*/genesis.json; do
  python3 - "$g" <<'PY'
import json, sys
p = sys.argv[1]
g = json.load(open(p))
g.setdefault("params", {})["heartbeat_ms"] = 1
json.dump(g, open(p, "w"), indent=2)
PY
done
start() { # validator, extra env
  env ${2:-} "$BIN/cairnd" run --home "$WORK/net/validator-$1" >> "$WORK/validator-$1.log" 2>&1 &
}
for i in 0 1 2 3; do start $i; done
t_build=$(now)
until [ "$(height $API)" -ge "$BLOCKS" ]; do sleep 2; done
build_s=$(echo "$(now) - $t_build" | bc)
pkill -f "cairnd run --home $WORK/net/validator-3" || true
sleep 1
rm -rf "$WORK/net/validator-3/data"
tip=$(height $API)
t0=$(now)
start 3 "CAIRN_VOTE_LOG=$WORK/votes-3.log"
until [ "$(height $((API + 3)))" -ge "$tip" ]; do sleep 0.1; done
caught_s=$(echo "$(now) - $t0" | bc)
until [ -s "$WORK/votes-3.log" ]; do sleep 0.1; done
vote_s=$(echo "$(now) - $t0" | bc)
syncs=$(metric $((API + 3)) cairn_state_syncs_total)
sync_line=$(grep -o 'seconds=[0-9.]*' "$WORK/validator-3.log" | tail -1 || true)
printf 'protocol=%s accounts=%s blocks_at_restart=%s build_s=%.0f catch_up_to_tip_s=%.2f first_vote_s=%.2f state_syncs=%s sync_%s\n' \
  "$PROTO" "$((EXTRA + 2))" "$tip" "$build_s" "$caught_s" "$vote_s" "${syncs:-?}" "${sync_line:-seconds=?}"

#!/usr/bin/env bash
# Issue 19's state-scale benchmark: a 4-validator HotStuff testnet with few accounts, then one
# with EXTRA funded accounts, one after the other on this machine; for each: startup time
# (validator start until height 1), idle block rate, median of 30 sequential
# `cairn transfer --wait`, and the validators' resident memory.
#
#   docs/bench/state-scale.sh [EXTRA]      (default EXTRA=800000; needs target/release)
set -euo pipefail
EXTRA=${1:-800000}
BIN=$(cd "$(dirname "$0")/../.." && pwd)/target/release
WORK=$(mktemp -d /tmp/cairn-state-scale.XXXX)
trap 'pkill -f "cairnd run --home $WORK" 2>/dev/null || true' EXIT

height() { curl -s "http://127.0.0.1:$1/v1/status" | python3 -c 'import sys,json; print(json.load(sys.stdin)["height"])' 2>/dev/null || echo 0; }

run_case() {
  local name=$1 extra=$2 base=$3
  local dir=$WORK/$name
  local t0=$(date +%s.%N)
  "$BIN/cairnd" testnet --validators 4 --protocol hotstuff --out "$dir" --accounts 2 \
      --extra-accounts "$extra" --base-port "$base" > /dev/null
  local t1=$(date +%s.%N)
  for i in 0 1 2 3; do
    "$BIN/cairnd" run --home "$dir/validator-$i" > "$dir/validator-$i.log" 2>&1 &
  done
  local api=$((base + 1000))
  until [ "$(height $api)" -ge 1 ]; do sleep 0.1; done
  local t2=$(date +%s.%N)
  sleep 5
  local h0=$(height $api); sleep 10; local h1=$(height $api)
  local to
  to=$(python3 -c "import json; print(json.load(open('$dir/wallets/wallet-1.json')).get('address',''))" 2>/dev/null || true)
  [ -n "$to" ] || to=$("$BIN/cairn" --key "$dir/wallets/wallet-1.json" address)
  local times=()
  for k in $(seq 1 30); do
    local s=$(date +%s%N)
    "$BIN/cairn" --node "http://127.0.0.1:$api" --key "$dir/wallets/wallet-0.json" \
        transfer --to "$to" --amount 1 --wait > /dev/null
    times+=($(( ($(date +%s%N) - s) / 1000 )))
  done
  local median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 15,16p | awk '{s+=$1} END {printf "%.1f", s/2/1000}')
  local rss=0
  for pid in $(pgrep -f "cairnd run --home $dir/"); do
    rss=$((rss + $(awk '/VmRSS/ {print $2}' /proc/$pid/status)))
  done
  pkill -f "cairnd run --home $dir/" || true
  sleep 1
  printf '%-8s accounts=%-8s testnet_s=%.1f start_to_height1_s=%.1f idle_blocks_per_s=%.2f transfer_wait_median_ms=%s rss_4_validators_MB=%d\n' \
    "$name" "$((extra + 2))" "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" \
    "$(echo "($h1 - $h0) / 10" | bc -l)" "$median" "$((rss / 1024))"
}

run_case small 0 23600
run_case large "$EXTRA" 24600

#!/usr/bin/env bash
# Regenerates every result in this directory (one core, about an hour of CPU
# for the short runs and 15-20 minutes more per one-second run).
# Usage: results/regen.sh [homa-sim binary]   (from crates/homa-sim)
set -euo pipefail
cd "$(dirname "$0")"
B=${1:-"cargo run --release -q -p homa-sim --"}
run() { name=$1; shift; echo "== $name: $*"; $B "$@" --out . --name "$name" --no-progress >/dev/null; }
# W1-W5 at 80% load
run w1-80 -w w1 -d 10ms
run w2-80 -w w2 -d 10ms
run w3-80 -w w3 -d 20ms
run w4-80 -w w4 -d 100ms
run w5-80 -w w5 -d 200ms
run w4-70 -w w4 -d 100ms -l 0.7
# ablations: W3 over 20 ms, W4 over 50 ms
for w in w3 w4; do
  d=20ms; [ $w = w4 ] && d=50ms
  run $w-base    -w $w -d $d
  run $w-prio1   -w $w -d $d --priorities 1
  run $w-oc1     -w $w -d $d --overcommit 1
  run $w-nofifo  -w $w -d $d --no-fifo-grants
  run $w-autocut -w $w -d $d --cutoffs auto
  run $w-split4  -w $w -d $d --unsched-levels 4
  run $w-dynwin  -w $w -d $d --grant-window 0
  run $w-nopacer -w $w -d $d --no-pacer
done
# long runs: does the heavy-tailed W4 carry its load once its backlog is steady?
if [ "${LONG:-1}" = 1 ]; then
  run w4-80-1s -w w4 -d 1s
  run w4-85-1s -w w4 -d 1s -l 0.85
  run w4-90-1s -w w4 -d 1s -l 0.9
fi

#!/usr/bin/env bash
# Regenerates the results in this directory: the paper profile (--paper) at
# 50% and 80% load, and W4 and W5 at 85-90% (sustainable load).
# One run at a time; each one's wall time and peak RSS go to NAME.time
# (/usr/bin/time -v). W4 at 80% runs one simulated second of arrivals;
# the others run shorter (see README.md: what one second of each costs on
# this machine, and why these were not run that long).
# Usage: results/regen.sh [homa-sim binary]   (from crates/homa-sim)
set -euo pipefail
cd "$(dirname "$0")"
B=${1:-../../../target/release/homa-sim}
run() {
  name=$1; shift
  echo "== $name: $*"
  /usr/bin/time -v -o "$name.time" "$B" --paper "$@" --out . --name "$name" --no-progress -q 2> "$name.log"
  grep -h "wall time" "$name.log"
  grep -h -E "Maximum resident|Elapsed|User time" "$name.time"
}
run paper-w4-80 -w w4 -l 0.8 -d 1s --drain 200ms
run paper-w1-80 -w w1 -l 0.8 -d 20ms --drain 5ms
run paper-w2-80 -w w2 -l 0.8 -d 20ms --drain 5ms
run paper-w4-90 -w w4 -l 0.9 -d 300ms --drain 50ms
run paper-w3-80 -w w3 -l 0.8 -d 100ms --drain 20ms
run paper-w5-80 -w w5 -l 0.8 -d 200ms --drain 50ms
run paper-w4-50 -w w4 -l 0.5 -d 100ms --drain 20ms
run paper-w2-50 -w w2 -l 0.5 -d 10ms --drain 5ms
run paper-w1-50 -w w1 -l 0.5 -d 10ms --drain 5ms
run paper-w4-85 -w w4 -l 0.85 -d 300ms --drain 50ms
run paper-w5-90 -w w5 -l 0.9 -d 200ms --drain 50ms
run paper-w3-50 -w w3 -l 0.5 -d 50ms --drain 20ms
run paper-w5-50 -w w5 -l 0.5 -d 100ms --drain 50ms
run paper-w4-90-1s -w w4 -l 0.9 -d 1s --drain 100ms
run paper-w5-80-1s -w w5 -l 0.8 -d 1s --drain 100ms

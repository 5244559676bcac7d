#!/usr/bin/env bash
# Regenerates the results in this directory: the paper profile (--paper) at
# 80% and 50% load (README.md says how long each ran and why not longer).
# One run at a time; each one's wall time and peak RSS go to NAME.time
# (/usr/bin/time -v), its stderr to NAME.log.
# Usage: results/regen.sh [homa-sim binary]   (from crates/homa-sim)
# RUNS="paper-w4-80 paper-w5-80" results/regen.sh   runs only those.
# LOCK=FILE takes a shared flock(1) on FILE around each run, GAP=SECONDS
# pauses before each (a shared machine's exclusive benchmarks get gaps).
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=regen-lib.sh
. ./regen-lib.sh
run paper-w4-80 -w w4 -l 0.8 -d 1s --drain 100ms
run paper-w5-80 -w w5 -l 0.8 -d 200ms --drain 50ms
run paper-w5-80-1s -w w5 -l 0.8 -d 1s --drain 100ms
run paper-w1-80 -w w1 -l 0.8 -d 100ms --drain 5ms
run paper-w1-80-1s -w w1 -l 0.8 -d 1s --drain 100ms
run paper-w2-80 -w w2 -l 0.8 -d 100ms --drain 10ms
run paper-w2-80-1s -w w2 -l 0.8 -d 1s --drain 100ms
run paper-w3-80 -w w3 -l 0.8 -d 100ms --drain 20ms
run paper-w3-80-1s -w w3 -l 0.8 -d 1s --drain 100ms
run paper-w4-50 -w w4 -l 0.5 -d 50ms --drain 20ms
run paper-w4-50-1s -w w4 -l 0.5 -d 1s --drain 100ms
run paper-w5-50 -w w5 -l 0.5 -d 50ms --drain 50ms
run paper-w5-50-1s -w w5 -l 0.5 -d 1s --drain 100ms
run paper-w1-50 -w w1 -l 0.5 -d 3ms --drain 2ms
run paper-w1-50-1s -w w1 -l 0.5 -d 1s --drain 100ms
run paper-w2-50 -w w2 -l 0.5 -d 5ms --drain 5ms
run paper-w2-50-1s -w w2 -l 0.5 -d 1s --drain 100ms
run paper-w3-50 -w w3 -l 0.5 -d 30ms --drain 20ms
run paper-w3-50-1s -w w3 -l 0.5 -d 1s --drain 100ms

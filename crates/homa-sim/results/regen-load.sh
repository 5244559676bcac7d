#!/usr/bin/env bash
# The sustainable-load search under the paper profile (--paper): W4 and W5
# above 80% load, with a short drain (what matters is whether the backlog of
# unfinished work levels off during the arrivals, README.md). Same
# conventions as regen.sh (B, RUNS, LOCK, GAP; NAME.time, NAME.log).
# Usage: results/regen-load.sh [homa-sim binary]   (from crates/homa-sim)
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=regen-lib.sh
. ./regen-lib.sh
run paper-w4-90 -w w4 -l 0.9 -d 300ms --drain 10ms
run paper-w5-90 -w w5 -l 0.9 -d 300ms --drain 10ms
run paper-w4-85 -w w4 -l 0.85 -d 300ms --drain 10ms
run paper-w4-85-1s -w w4 -l 0.85 -d 1s --drain 10ms
run paper-w4-90-1s -w w4 -l 0.9 -d 1s --drain 10ms
run paper-w5-90-1s -w w5 -l 0.9 -d 1s --drain 10ms
run paper-w5-80-3s -w w5 -l 0.8 -d 3s --drain 10ms
run paper-w5-90-3s -w w5 -l 0.9 -d 3s --drain 10ms
# What would raise W4's sustainable load: 90% over 300 ms with one knob
# changed (README.md, "Sustainable load").
run abl-w4-90-win2 -w w4 -l 0.9 -d 300ms --drain 10ms --grant-window 18656
run abl-w4-90-oc8 -w w4 -l 0.9 -d 300ms --drain 10ms --overcommit 8
run abl-w4-90-sfifo50 -w w4 -l 0.9 -d 300ms --drain 10ms --sender-fifo 50
run abl-w4-90-sfifo200 -w w4 -l 0.9 -d 300ms --drain 10ms --sender-fifo 200
run abl-w4-90-grant -w w4 -l 0.9 -d 300ms --drain 10ms --sender-grant-order
run abl-w4-90-win2-grant -w w4 -l 0.9 -d 300ms --drain 10ms --grant-window 18656 --sender-grant-order
run abl-w4-90-win2-sfifo200 -w w4 -l 0.9 -d 300ms --drain 10ms --grant-window 18656 --sender-fifo 200
run paper-w4-85-3s -w w4 -l 0.85 -d 3s --drain 10ms
run paper-w4-90-3s -w w4 -l 0.9 -d 3s --drain 10ms

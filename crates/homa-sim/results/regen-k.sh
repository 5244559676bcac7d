#!/usr/bin/env bash
# Issue 17.4: K independent Homa endpoints per host (K processes, each its
# own grant scheduler and pacer at the full link rate), W4 and W5 at 80%
# under the paper profile, K = 1, 2, 4, 8, with what separate processes
# have: a FIFO NIC every endpoint pushes into (--nic push) and each
# endpoint's own pacer (--pacer true, 5 us of NIC backlog each); then the
# same K coordinated through one host table (--host-sharing).
# Same conventions as regen.sh (RUNS, LOCK, GAP).
# Usage: results/regen-k.sh [homa-sim binary]   (from crates/homa-sim)
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=regen-lib.sh
. ./regen-lib.sh
K="--nic push --pacer true"
for k in 1 2 4 8; do
  run k$k-w4-80 -w w4 -l 0.8 -d 30ms --drain 10ms $K --endpoints-per-host $k
done
for k in 1 2 4 8; do
  run k$k-w5-80 -w w5 -l 0.8 -d 50ms --drain 20ms $K --endpoints-per-host $k
done
# Coordinated (--host-sharing): the K endpoints of a host share one host
# table (one NIC estimate, one max_incoming, one SRPT ranking each way).
for k in 1 2 4 8; do
  run s$k-w4-80 -w w4 -l 0.8 -d 30ms --drain 10ms $K --endpoints-per-host $k --host-sharing
done
for k in 1 2 4 8; do
  run s$k-w5-80 -w w5 -l 0.8 -d 50ms --drain 20ms $K --endpoints-per-host $k --host-sharing
done
# The pull-mode NIC asking K endpoints round robin (one transmit per turn),
# for the README's note on why it is not the model of K processes.
for k in 1 2 4; do
  run pull-k$k-w4-80 -w w4 -l 0.8 -d 30ms --drain 10ms --endpoints-per-host $k
done

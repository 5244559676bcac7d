# Sourced by regen.sh and regen-k.sh (from this directory): the binary B
# ($1, else the workspace's release build) and run NAME ARGS..., which runs
# one simulation under the paper profile with the conventions regen.sh
# describes (RUNS, LOCK, GAP; NAME.time, NAME.log).
B=${1:-../../../target/release/homa-sim}
run() {
  name=$1; shift
  if [ -n "${RUNS:-}" ] && [[ " $RUNS " != *" $name "* ]]; then return; fi
  echo "== $name: $*"
  # Each run takes the shared lock on its own (${LOCK:-/dev/null} unless
  # given), leaving gaps for exclusive benchmarks between runs.
  sleep "${GAP:-0}"
  flock -s "${LOCK:-/dev/null}" /usr/bin/time -v -o "$name.time" "$B" --paper "$@" --out . --name "$name" --no-progress -q 2> "$name.log"
  grep -h "wall time" "$name.log"
  grep -h -E "Maximum resident|Elapsed|User time" "$name.time"
}

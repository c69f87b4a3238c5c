#!/usr/bin/env bash
# The cost of the hot-path metrics: instructions the broker executes (valgrind's callgrind) for
# the same produce of N records, with `metrics.enabled` true and false, alternating, twice each.
# Instruction counts do not swing with the scheduler the way records/s does when client and
# broker share two cores. Needs a release build (`cargo build --release -p sluice -p
# sluice-bench`) and valgrind; the target dir is $CARGO_TARGET_DIR or target/.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CARGO_TARGET_DIR:-target}/release
records=${1:-1000000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for enabled in true false true false; do
  rm -rf "$work/data"
  valgrind --tool=callgrind --callgrind-out-file="$work/out" "$bin/sluice" serve \
    --data-dir "$work/data" --kafka-listen 127.0.0.1:19321 --http-listen 127.0.0.1:19322 \
    --metrics-enabled "$enabled" >"$work/log" 2>&1 &
  broker=$!
  for _ in $(seq 120); do curl -sf http://127.0.0.1:19322/health >/dev/null && break; sleep 0.5; done
  "$bin/sluice-bench" --broker 127.0.0.1:19321 --records "$records" --size 100 --acks all \
    --topics metrics-cost >/dev/null
  kill -INT "$broker"
  wait "$broker" || true
  echo "metrics.enabled=$enabled: $(awk '/^summary:/ {print $2}' "$work/out") instructions for $records records"
done

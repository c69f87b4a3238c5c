#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine (idempotently), then
# runs formatting and lint checks and every test of the workspace, end-to-end ones included.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi
}

step "system packages (kcat: Debian's librdkafka 2.0.2 client; curl)"
missing=()
for tool in kcat curl; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
kcat -V 2>&1 | head -1

step "Rust targets (guest modules build for wasm32-wasip1)"
rustup target add wasm32-wasip1 >/dev/null 2>&1 || rustup target add wasm32-wasip1

step "node packages (kafkajs 2.2.4)"
(cd tests/node && npm ci --no-audit --no-fund --silent)

step "python packages (confluent-kafka, kafka-python)"
python3 -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt 2>&1 \
  | grep -v "Running pip as the 'root' user" || true

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --locked --bins

step "tests"
# cargo test runs the test binaries one after another (so the one fixed-port test, the seed
# scripts on 9092/8083, never overlaps another binary's brokers) and prints one "test result"
# line per binary; the total is summed up at the end.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ {
       for (i = 1; i <= NF; i++) {
         if ($(i + 1) ~ /^passed/) passed += $i
         if ($(i + 1) ~ /^failed/) failed += $i
         if ($(i + 1) ~ /^ignored/) ignored += $i
       }
       binaries++
     }
     END { printf "\n==> SUMMARY: %d passed, %d failed, %d ignored in %d test binaries\n", passed, failed, ignored, binaries }' "$log"
grep -E '^test .* FAILED$' "$log" || true
if [ "$status" -ne 0 ]; then echo "==> TESTS FAILED (exit $status)"; fi
exit "$status"

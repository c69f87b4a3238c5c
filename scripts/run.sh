#!/usr/bin/env bash
# The run command: builds Sluice (release) and runs the broker in the foreground on
# 127.0.0.1:9092 (Kafka) and 127.0.0.1:8083 (HTTP) with data in ./data. Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p sluice
# TODO(issue 4): build guest-examples/uppercase for wasm32-wasip1 and deploy it with
# `sluice transform deploy` once the broker runs transforms.
exec ./target/release/sluice serve "$@"

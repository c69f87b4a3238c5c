#!/usr/bin/env bash
# The run command: builds Sluice (release) and the uppercase example (wasm32-wasip1), starts the
# broker on 127.0.0.1:9092 (Kafka) and 127.0.0.1:8083 (HTTP) with data in ./data, deploys the
# uppercase transform (input-topic -> output-topic) and keeps the broker in the foreground.
# Ctrl-C stops it cleanly. Extra arguments go to `sluice serve`.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip1 >/dev/null 2>&1 || true
cargo build --release --locked -p sluice
cargo build --profile guest --locked --target wasm32-wasip1 -p uppercase
module=target/wasm32-wasip1/guest/uppercase.wasm

./target/release/sluice serve "$@" &
broker=$!
trap 'kill -TERM $broker 2>/dev/null; wait $broker' INT TERM
for _ in $(seq 1 100); do
  if ./target/release/sluice transform list >/dev/null 2>&1; then break; fi
  if ! kill -0 $broker 2>/dev/null; then wait $broker; exit 1; fi
  sleep 0.1
done
if ./target/release/sluice transform list | grep -q '^uppercase'; then
  echo "uppercase transform already deployed"
else
  ./target/release/sluice transform deploy "$module" --name uppercase --input input-topic --output output-topic
fi
echo "try: printf 'hello\n' | kcat -b 127.0.0.1:9092 -P -t input-topic && kcat -b 127.0.0.1:9092 -C -t output-topic -o beginning -e"
wait $broker

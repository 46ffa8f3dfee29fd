#!/usr/bin/env bash
# App benchmarks, one command: `bash bench/app.sh`.
# Builds wasmops, the hello component and the example app in release mode,
# then runs bench/app_bench.py: routing cost (`up` with 100 routes against
# `serve` of the same component) and key-value increments/s (embedded store
# and Redis, one hot key and spread keys). Needs wrk and redis-server.
# Knobs: ROUNDS (3), DURATION (8), ONLY (routing or kv).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi
rustup target add wasm32-wasip2 >/dev/null
cargo build --release --locked -p wasmops
cargo build --release --locked --target wasm32-wasip2 \
  --manifest-path crates/test-programs/guests/Cargo.toml --target-dir target/guests -p hello
(cd examples/webapp && cargo build --release --locked --target wasm32-wasip2)
python3 bench/app_bench.py \
  --wasmops target/release/wasmops \
  --hello target/guests/wasm32-wasip2/release/hello.wasm \
  --api examples/webapp/target/wasm32-wasip2/release/api.wasm \
  --rounds "${ROUNDS:-3}" --duration "${DURATION:-8}" \
  --out bench/results ${ONLY:+--only "$ONLY"}

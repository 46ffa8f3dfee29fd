#!/usr/bin/env bash
# Serving benchmark, one command: `bash bench/run.sh`.
# Installs what it needs (wrk, wasmtime-cli 48 into bench/.tools), builds
# wasmops, the hello component and a native hyper server in release mode,
# then runs bench/serve_bench.py, which alternates the servers round by round
# and prints a markdown report (also written to bench/results/).
# Knobs: ROUNDS (3), DURATION (10), CONNS (32), WRK_THREADS (2).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk
fi
if [ ! -x bench/.tools/bin/wasmtime ]; then
  cargo install wasmtime-cli@48.0.8 --locked --root bench/.tools
fi
rustup target add wasm32-wasip2 >/dev/null
cargo build --release --locked -p wasmops
cargo build --release --locked --target wasm32-wasip2 \
  --manifest-path crates/test-programs/guests/Cargo.toml --target-dir target/guests -p hello
cargo build --release --manifest-path bench/native-hello/Cargo.toml --target-dir target/bench

mkdir -p bench/results
python3 bench/serve_bench.py \
  --wasmops target/release/wasmops \
  --wasmtime bench/.tools/bin/wasmtime \
  --native target/bench/release/native-hello \
  --component target/guests/wasm32-wasip2/release/hello.wasm \
  --rounds "${ROUNDS:-3}" --duration "${DURATION:-10}" \
  --connections "${CONNS:-32}" --wrk-threads "${WRK_THREADS:-2}" \
  --out bench/results

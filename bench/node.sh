#!/usr/bin/env bash
# Node density benchmark, one command: `bash bench/node.sh`.
# Builds wasmops and the hello component in release mode, installs wrk,
# then runs bench/node_bench.py: N distinct apps deployed to one node
# (deploy rate, idle RSS, restart), first and second requests to unloaded
# apps, requests/s on one app against spread over many, and (when
# bench/.tools/bin/wasmtime exists, see bench/run.sh) the same apps as one
# `wasmtime serve` process each.
# Knobs: APPS (10000), FIRST (1000), SPREAD (1000), DURATION (10),
# POD_APPS (50), WORKERS (4), CURVE (app counts for the spread ratio by
# number of apps, e.g. 10,100,300; none by default).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk
fi
rustup target add wasm32-wasip2 >/dev/null
cargo build --release --locked -p wasmops
cargo build --release --locked --target wasm32-wasip2 \
  --manifest-path crates/test-programs/guests/Cargo.toml --target-dir target/guests -p hello
wasmtime=""
if [ -x bench/.tools/bin/wasmtime ]; then wasmtime=bench/.tools/bin/wasmtime; fi
mkdir -p bench/results
python3 bench/node_bench.py \
  --wasmops target/release/wasmops \
  --component target/guests/wasm32-wasip2/release/hello.wasm \
  --wasmtime "$wasmtime" \
  --apps "${APPS:-10000}" --first-requests "${FIRST:-1000}" --spread "${SPREAD:-1000}" \
  --duration "${DURATION:-10}" --pod-apps "${POD_APPS:-50}" --workers "${WORKERS:-4}" --curve "${CURVE:-}" \
  --out bench/results

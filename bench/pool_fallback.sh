#!/usr/bin/env bash
# What a component too large for the instance pool costs, one command:
# `bash bench/pool_fallback.sh`. Serves the Rust hello-world as built
# (pooled) and the same program with its function table grown past a pool
# slot's 20,000 elements (which wasmops runs on its on-demand twin engine),
# plus `wasmtime serve` of the plain hello, in alternated rounds
# (bench/pool_fallback_bench.py); prints a markdown table.
# Knobs: ROUNDS (3), DURATION (8), CONNS (32).
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/tools.sh
cargo build --release --locked -p wasmops
cargo build --release --locked --target wasm32-wasip2 \
  --manifest-path crates/test-programs/guests/Cargo.toml --target-dir target/guests -p hello
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
python3 bench/pool_fallback_bench.py --wasmops "$PWD/target/release/wasmops" \
  --wasmtime "$(command -v wasmtime)" \
  --component target/guests/wasm32-wasip2/release/hello.wasm --cache "$cache" \
  --rounds "${ROUNDS:-3}" --duration "${DURATION:-8}" --connections "${CONNS:-32}"

#!/usr/bin/env bash
# Spin SDK components served by wasmops and by `wasmtime serve`, one
# command: `bash bench/spin.sh`. Builds the Spin SDK 7 hello-world (WASIp3,
# `crates/test-programs/spin-guests/spin-hello-p3`, spin-sdk 7.0.0 from
# crates.io) and runs bench/languages_bench.py on it (wasmtime serve with
# -Sp3 -Wcomponent-model-async). The SDK 5.2 component imports Spin's own
# interfaces, which wasmtime serve does not provide, so it is not compared.
# Knobs: ROUNDS (3), DURATION (10), CONNS (32).
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/tools.sh
cargo build --release --locked -p wasmops
cargo build --release --target wasm32-wasip2 \
  --manifest-path crates/test-programs/spin-guests/Cargo.toml \
  --target-dir target/guests -p spin-hello-p3

cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
mkdir -p bench/results/spin
python3 bench/languages_bench.py --wasmops target/release/wasmops --wasmtime "$(command -v wasmtime)" \
  --component "spin-sdk-7=target/guests/wasm32-wasip2/release/spin_hello_p3.wasm" --p3 spin-sdk-7 \
  --cache "$cache" --out bench/results/spin \
  --rounds "${ROUNDS:-3}" --duration "${DURATION:-10}" --connections "${CONNS:-32}"

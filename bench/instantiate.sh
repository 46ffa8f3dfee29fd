#!/usr/bin/env bash
# Instantiation cost, one command: `bash bench/instantiate.sh [COMPONENT] [N]`.
# Builds the `instantiate` example of wasmops-runtime (the engine, linker
# and store `serve` uses, without a network in between) and the Rust
# hello-world, then instantiates the component N times (20,000 by default)
# after a tenth as many to warm up, and prints the mean time of
# `instantiate_async` and of a whole store + instantiate + drop cycle.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null
cargo build --release --locked -p wasmops-runtime --example instantiate
cargo build --release --locked --target wasm32-wasip2 \
  --manifest-path crates/test-programs/guests/Cargo.toml --target-dir target/guests -p hello
component="${1:-target/guests/wasm32-wasip2/release/hello.wasm}"
for _ in 1 2 3; do
  target/release/examples/instantiate "$component" "${2:-20000}"
done

#!/usr/bin/env bash
# Builds wasmops and a hello-world wasi:http component from source, then
# serves it on http://127.0.0.1:3000/ (Ctrl-C to stop).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null
cargo build --release --locked -p wasmops
cargo build --release --locked --target wasm32-wasip2 \
  --manifest-path crates/test-programs/guests/Cargo.toml \
  --target-dir target/guests -p hello
echo "try: curl http://127.0.0.1:3000/"
exec ./target/release/wasmops serve target/guests/wasm32-wasip2/release/hello.wasm --listen "${LISTEN:-127.0.0.1:3000}"

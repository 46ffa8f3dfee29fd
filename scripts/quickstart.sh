#!/usr/bin/env bash
# Builds wasmops and the example app (static pages, a JSON API with a
# key-value counter, a proxy) from source, then serves it with `wasmops up`
# on http://127.0.0.1:3000/ (Ctrl-C to stop).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null
cargo build --release --locked -p wasmops
(cd examples/webapp && cargo build --release --locked --target wasm32-wasip2)
echo "try: curl http://127.0.0.1:3000/ ; curl -X POST http://127.0.0.1:3000/api/counter"
exec ./target/release/wasmops up examples/webapp --listen "${LISTEN:-127.0.0.1:3000}"

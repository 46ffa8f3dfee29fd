#!/usr/bin/env bash
# Spin SDK components served by wasmops and by `wasmtime serve`, one
# command: `bash bench/spin.sh`. Builds three Spin SDK hello-worlds that
# import nothing of Spin's own (so wasmtime serve runs them too): Rust
# spin-sdk 7.0.0 (WASIp3, `spin-guests/spin-hello-p3`; wasmtime serve with
# -Sp3 -Wcomponent-model-async), Rust spin-sdk 5.2.0 (WASIp2,
# `spin-guests/spin-hello-p2`) and the JavaScript SDK app of
# `crates/wasmops/tests/fixtures/spin-js` (@spinframework/build-tools 1.0.7;
# its packages come from `scripts/test.sh --install-only`), and runs
# bench/languages_bench.py on them. Knobs: ROUNDS (3), DURATION (10),
# CONNS (32).
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/tools.sh
cargo build --release --locked -p wasmops
cargo build --release --target wasm32-wasip2 \
  --manifest-path crates/test-programs/spin-guests/Cargo.toml \
  --target-dir target/guests -p spin-hello-p3 -p spin-hello-p2
js=$(mktemp -d)
cp -al crates/wasmops/tests/fixtures/spin-js "$js/app"
(cd "$js/app" && npm run build >/dev/null)

cache=$(mktemp -d)
trap 'rm -rf "$cache" "$js"' EXIT
mkdir -p bench/results/spin
python3 bench/languages_bench.py --wasmops target/release/wasmops --wasmtime "$(command -v wasmtime)" \
  --component "spin-sdk-7=target/guests/wasm32-wasip2/release/spin_hello_p3.wasm" --p3 spin-sdk-7 \
  --component "spin-sdk-5.2=target/guests/wasm32-wasip2/release/spin_hello_p2.wasm" \
  --component "spin-js-sdk=$js/app/dist/hello-js.wasm" \
  --cache "$cache" --out bench/results/spin \
  --rounds "${ROUNDS:-3}" --duration "${DURATION:-10}" --connections "${CONNS:-32}"

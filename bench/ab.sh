#!/usr/bin/env bash
# A/B serving benchmark of two revisions, one command:
#   bash bench/ab.sh [BASE_REV]      (default: the parent of HEAD)
# Builds `wasmops` of BASE_REV (in a git worktree, same release settings and
# target directory, so dependencies are built once) and of the working
# tree, then alternates them round by round under wrk on the hello
# component (GET) and the echo component (POST of 4 KiB), and prints the
# ratio new/base. Knobs: ROUNDS (4), DURATION (8), CONNS (32).
set -euo pipefail
cd "$(dirname "$0")/.."
base_rev="${1:-HEAD~1}"

if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk
fi
rustup target add wasm32-wasip2 >/dev/null
# The same release settings for both revisions.
export CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=debuginfo
target="$PWD/target"
wt="$target/ab/base-src"
rm -rf "$wt"; git worktree prune
git worktree add --detach "$wt" "$base_rev" >/dev/null
(cd "$wt" && CARGO_TARGET_DIR="$target" cargo build --release --locked -p wasmops)
cp "$target/release/wasmops" "$target/ab/wasmops-base"
git worktree remove --force "$wt"
cargo build --release --locked -p wasmops
cp "$target/release/wasmops" "$target/ab/wasmops-new"
cargo build --release --locked --target wasm32-wasip2 \
  --manifest-path crates/test-programs/guests/Cargo.toml --target-dir target/guests -p hello -p echo

mkdir -p bench/results
python3 bench/ab_bench.py \
  --base "$target/ab/wasmops-base" --new "$target/ab/wasmops-new" \
  --base-rev "$(git rev-parse --short "$base_rev")" \
  --hello target/guests/wasm32-wasip2/release/hello.wasm \
  --echo target/guests/wasm32-wasip2/release/echo.wasm \
  --rounds "${ROUNDS:-4}" --duration "${DURATION:-8}" --connections "${CONNS:-32}" \
  --out bench/results

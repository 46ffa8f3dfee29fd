#!/usr/bin/env bash
# Polyglot build benchmark, one command: `bash bench/build.sh`.
# Creates an app with one component per language from the templates
# (Rust, JavaScript, TypeScript, Python, C, Go), then times with wasmops'
# release build: a cold build (no outputs, no build cache, no cargo target
# dir), a no-op rebuild, and a one-component rebuild (one C source touched).
# Toolchains must be installed (see `wasmops doctor`; .ci/run installs them).
# Knobs: ROUNDS (3).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p wasmops
W=$PWD/target/release/wasmops
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
app=$work/poly
mkdir -p "$app"
cd "$app"
manifest='manifest_version = 1
[app]
name = "poly"
'
add() { # template id route language extra
  "$W" new "$1" "$2" >/dev/null
  local src
  case $1 in
    http-rust) src="$2/target/wasm32-wasip2/release/$2.wasm" ;;
    *) src="$2/dist/$2.wasm" ;;
  esac
  manifest+="[component.$2]
source = \"$src\"
${3:+route = \"$3\"}
[component.$2.build]
language = \"$4\"
dir = \"$2\"
$5
"
}
add http-rust rs /rust/... rust ""
add http-js js /js/... javascript 'entry = "index.js"
world = "http-handler"'
add http-ts ts /ts/... typescript 'entry = "index.ts"
world = "http-handler"'
add http-python py /py/... python 'entry = "app"
world = "http-handler"'
add cli-c c "" c 'sources = ["main.c"]'
add cli-go go "" go ""
printf '%s' "$manifest" > wasmops.toml
# npm packages from the global install (as CI has them), not a download.
for d in js ts; do ln -s "$(npm root -g)" "$d/node_modules"; done
"$W" doctor >/dev/null || { "$W" doctor; exit 1; }

now() { date +%s.%N; }
rounds=${ROUNDS:-3}
for r in $(seq 1 "$rounds"); do
  rm -rf .wasmops rs/target */dist
  t0=$(now); "$W" build 2>/dev/null; t1=$(now)
  "$W" build 2>/dev/null; t2=$(now)
  touch c/main.c
  "$W" build 2>/dev/null; t3=$(now)
  printf 'round %d: cold %.2f s, no-op %.3f s, one component %.3f s\n' "$r" \
    "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "$(echo "$t3 - $t2" | bc)"
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

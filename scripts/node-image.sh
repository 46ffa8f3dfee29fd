#!/usr/bin/env bash
# Builds the node image: a static `wasmops` (x86_64-unknown-linux-musl) in
# the FROM-scratch image of deploy/container/Containerfile, with buildah.
# Nothing is pulled. Installs what it needs when missing: the Rust musl
# target, Debian's musl-tools and buildah.
#
#   scripts/node-image.sh [--profile release|dev] [--tag NAME:TAG] [--oci-archive FILE]
#
# BUILDAH_ROOT / BUILDAH_RUNROOT give buildah its own storage (the tests
# use that); by default it uses the system's.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
tag="localhost/wasmops-node:$version"
archive=""
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --oci-archive) archive=$2; shift 2 ;;
    *) echo "usage: $0 [--profile release|dev] [--tag NAME:TAG] [--oci-archive FILE]" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
missing=()
command -v musl-gcc >/dev/null || missing+=(musl-tools)
command -v buildah >/dev/null || missing+=(buildah)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi
target=x86_64-unknown-linux-musl
rustup target add "$target" >/dev/null

cargo build --locked --profile "$profile" --target "$target" -p wasmops
dir=$profile
[ "$profile" = dev ] && dir=debug
bin="${CARGO_TARGET_DIR:-target}/$target/$dir/wasmops"
if ! file "$bin" | grep -q 'static'; then
  echo "error: $bin is not statically linked" >&2
  exit 1
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/wasmops"
# Symbols stay out of the image (the binary keeps what backtraces need).
strip --strip-debug "$ctx/wasmops" 2>/dev/null || true

buildah=(buildah)
if [ -n "${BUILDAH_ROOT:-}" ]; then
  buildah+=(--root "$BUILDAH_ROOT" --runroot "${BUILDAH_RUNROOT:-$BUILDAH_ROOT/run}")
fi
"${buildah[@]}" build --isolation chroot --timestamp 0 --quiet \
  -f deploy/container/Containerfile -t "$tag" "$ctx" >/dev/null
if [ -n "$archive" ]; then
  # The full name after the path: it is the name the archive's importers
  # (`ctr images import`) register.
  "${buildah[@]}" push --quiet "$tag" "oci-archive:$archive:$tag" >/dev/null
fi
size=$(du -h "$ctx/wasmops" | cut -f1)
echo "built $tag (binary $size)"
[ -n "$archive" ] && echo "wrote $archive"
echo "push it with: buildah push $tag docker://REGISTRY/wasmops-node:$version"

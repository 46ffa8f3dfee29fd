#!/usr/bin/env bash
# Pod start to ready, one command: `bash bench/kube_start.sh` (root).
# The node image (deploy/container/Containerfile, binary of PROFILE,
# default release) run by containerd + runc as kubelet would, with APPS
# (default 100) distinct apps declared in a mounted directory (each the
# hello component with its own greeting, so each is compiled on its own):
#   - cold: an empty data volume, every app pulled from an OCI layout and
#     compiled before /readyz passes;
#   - warm: the same data volume again (the artifact cache kept), as a pod
#     with a persistent volume restarts.
# Prints a markdown table and appends it to bench/results/kube_start.md.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
root=$PWD
PROFILE=${PROFILE:-release}
APPS=${APPS:-100}
NS=wasmops-bench
# shellcheck source=deploy/container/lib.sh
. deploy/container/lib.sh

rustup target add wasm32-wasip2 >/dev/null
cargo build --locked -p wasmops
cargo build --locked --release --target wasm32-wasip2 \
  --manifest-path crates/test-programs/guests/Cargo.toml --target-dir target/guests -p hello
build_image
start_containerd

# APPS distinct components, pushed into an OCI layout the pod mounts.
layout=$WORK/layout
mkdir -p "$WORK/comps" "$WORK/decls"
python3 - "$root/target/guests/wasm32-wasip2/release/hello.wasm" "$WORK/comps" "$APPS" <<'PY'
import sys
base, out, n = open(sys.argv[1], "rb").read(), sys.argv[2], int(sys.argv[3])
g = b"Hello, world!\n"
assert base.count(g) == 1
for i in range(n):
    h = b"Hello %06d!\n" % i
    assert len(h) == len(g)
    open(f"{out}/app-{i:04d}.wasm", "wb").write(base.replace(g, h))
PY
for f in "$WORK"/comps/*.wasm; do
  name=$(basename "$f" .wasm)
  "$HOST_BIN" push "$f" "oci-layout:$layout:$name" >/dev/null
  printf 'reference = "oci-layout:/layout:%s"\nhosts = ["%s.test"]\n' "$name" "$name" >"$WORK/decls/$name.toml"
done
chmod -R a+rX "$layout"
apps=$WORK/apps
mkdir -p "$apps"
kubelet_swap "$apps" v1 "$WORK"/decls/*.toml
data=$WORK/data
mkdir -p "$data" "$WORK/tmp"
chown 65532:65532 "$data" "$WORK/tmp"
MOUNTS=(
  "$apps:/etc/wasmops/apps:ro"
  "$layout:/layout:ro"
  "$data:/var/lib/wasmops:rw"
  "$WORK/tmp:/tmp:rw"
)

# One pod start: milliseconds from `ctr run` to /readyz with every app
# applied, then the first request to one app, then SIGTERM.
start_to_ready() {
  local task=$1 http admin t ready first
  READY="" FIRST=""
  http=$(free_port)
  admin=$(free_port)
  t=$(now_ms)
  run_node "$task" --listen "127.0.0.1:$http" --admin-listen "127.0.0.1:$admin" \
    --apps-dir /etc/wasmops/apps --apps-dir-interval 100ms
  for _ in $(seq 1 6000); do
    [ "$(curl -fsS "http://127.0.0.1:$admin/readyz" 2>/dev/null | jq -r '.declarations.applied // empty')" = "$APPS" ] && break
    sleep 0.05
  done
  ready=$(( $(now_ms) - t ))
  [ "$(curl -fsS "http://127.0.0.1:$admin/readyz" | jq -r '.declarations.applied')" = "$APPS" ] \
    || fail "not ready: $(curl -sS "http://127.0.0.1:$admin/readyz")"
  first=$(curl -sS -o /dev/null -w '%{time_total}' -H 'host: app-0042.test' "http://127.0.0.1:$http/")
  [ "$(curl -sS -H 'host: app-0042.test' "http://127.0.0.1:$http/")" = "Hello 000042!" ] || fail "app-0042 did not answer"
  "${CTR[@]}" tasks kill --signal SIGTERM "$task"
  wait "$RUN_PID" || true
  RUN_PID=""
  READY=$ready
  FIRST=$first
}

start_to_ready pod-cold
cold=$READY cold_first=$FIRST
cache=$(du -sm "$data/cache" | cut -f1)
start_to_ready pod-warm
warm=$READY warm_first=$FIRST

machine="$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
report=$(cat <<EOF
Pod start to ready, $(date -u +%Y-%m-%dT%H:%MZ), $machine, image binary profile \`$PROFILE\`, $APPS distinct apps declared (\`APPS=$APPS bash bench/kube_start.sh\`):

| start | \`ctr run\` to \`/readyz\` with every app applied | first request to one app after |
|---|---:|---:|
| cold: empty data volume (pull + compile every app) | $cold ms | $(awk -v s="$cold_first" 'BEGIN { printf "%.1f", s * 1000 }') ms |
| warm: the data volume kept (artifact cache: $cache MiB) | $warm ms | $(awk -v s="$warm_first" 'BEGIN { printf "%.1f", s * 1000 }') ms |
EOF
)
echo "$report"
mkdir -p bench/results
printf '%s\n\n' "$report" >>bench/results/kube_start.md

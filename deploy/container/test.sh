#!/usr/bin/env bash
# The node image, run the way kubelet runs a pod: built from
# deploy/container/Containerfile by buildah (FROM scratch: nothing pulled),
# imported into a containerd started here with its own root, state and
# socket, and run by `ctr run` (runc) with a read-only root filesystem, the
# image's non-root user, host networking on loopback ports, the apps
# directory bind-mounted read-only in kubelet's `..data` layout and a
# writable data volume. Checks: three apps deployed through the directory
# answer; an atomic swap of the directory converges (one app changed, one
# removed) while requests keep being answered; SIGTERM drains a request in
# flight and the task exits 0 within the grace period.
#
#   deploy/container/test.sh          (scripts/test.sh runs it)
#
# Needs root (containerd, runc). Env: PROFILE (dev: the cargo profile of the
# binary in the image), KEEP_WORK=1 keeps the work directory.
set -Eeuo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
PROFILE=${PROFILE:-dev}
NS=wasmops-test
TASK=wasmops-node-test
# shellcheck source=deploy/container/lib.sh
. deploy/container/lib.sh

GUESTS=$root/target/guests/wasm32-wasip2/release
for g in hello echo stream hostile; do
  [ -f "$GUESTS/$g.wasm" ] || fail "$GUESTS/$g.wasm is missing: run the tests first (cargo test builds the guests)"
done
[ -x "$HOST_BIN" ] || fail "$HOST_BIN is missing: build wasmops first"
build_image
start_containerd

# The apps: components in an OCI layout (mounted read-only), declared in a
# directory laid out as kubelet mounts a ConfigMap.
layout=$WORK/layout
for g in hello echo stream hostile; do
  "$HOST_BIN" push "$GUESTS/$g.wasm" "oci-layout:$layout:$g" >/dev/null
done
# Readable by the pod's user, as a volume would be.
chmod -R a+rX "$layout"
apps=$WORK/apps
mkdir -p "$apps" "$WORK/decls"
mount_set() { # mount_set VERSION (NAME TAG)...
  local v=$1; shift
  local files=()
  while [ $# -gt 0 ]; do
    printf 'reference = "oci-layout:/layout:%s"\nhosts = ["%s.test"]\n' "$2" "$1" >"$WORK/decls/$1.toml"
    files+=("$WORK/decls/$1.toml"); shift 2
  done
  kubelet_swap "$apps" "$v" "${files[@]}"
}
mount_set v1 hello hello echo echo slow hostile
data=$WORK/data
mkdir -p "$data" "$WORK/tmp"
chown 65532:65532 "$data" "$WORK/tmp"
chmod 0750 "$data"

HTTP=$(free_port)
ADMIN=$(free_port)
MOUNTS=(
  "$apps:/etc/wasmops/apps:ro"
  "$layout:/layout:ro"
  "$data:/var/lib/wasmops:rw"
  "$WORK/tmp:/tmp:rw"
)
t=$(now_ms)
run_node "$TASK" --listen "127.0.0.1:$HTTP" --admin-listen "127.0.0.1:$ADMIN" \
  --apps-dir /etc/wasmops/apps --apps-dir-interval 200ms --shutdown-grace 10s

applied() { curl -fsS "http://127.0.0.1:$ADMIN/readyz" 2>/dev/null | jq -r '.declarations.applied // empty'; }
for _ in $(seq 1 600); do [ "$(applied)" = 3 ] && break; sleep 0.1; done
[ "$(applied)" = 3 ] || fail "not ready with 3 apps: $(curl -sS "http://127.0.0.1:$ADMIN/readyz")"
say "pod start to ready with 3 apps: $(( $(now_ms) - t )) ms"

get() { curl -sS -H "host: $1" "http://127.0.0.1:$HTTP$2"; }
code() { curl -sS -o /dev/null -w '%{http_code}' -H "host: $1" "http://127.0.0.1:$HTTP$2" || echo 000; }
[ "$(get hello.test /)" = "Hello, world!" ] || fail "hello: $(get hello.test /)"
[ "$(curl -sS -o /dev/null -w '%{http_code}' -H 'host: echo.test' -d 'ping' "http://127.0.0.1:$HTTP/")" = 200 ] \
  || fail "echo did not answer"
# The node runs as the image's user: what it wrote is 65532's.
[ "$(stat -c %u "$data/state.db")" = 65532 ] || fail "state.db is not owned by 65532"

# Swap the set as kubelet does while requests keep coming: hello moves to
# another component, echo goes.
errors=$WORK/errors
: >"$errors"
(
  end=$(( $(now_ms) + 3000 ))
  while [ "$(now_ms)" -lt "$end" ]; do
    c=$(code hello.test /status/200)
    [ "$c" = 200 ] || echo "$c" >>"$errors"
  done
) &
load=$!
sleep 0.5
mount_set v2 hello stream slow hostile
for _ in $(seq 1 100); do
  [ "$(code echo.test /)" = 404 ] && break
  sleep 0.1
done
wait "$load"
[ ! -s "$errors" ] || fail "requests failed during the swap: $(sort "$errors" | uniq -c | tr '\n' ' ')"
[ "$(code echo.test /)" = 404 ] || fail "echo was not removed"
[ "$(get hello.test /status/200)" = "status 200" ] || fail "hello was not changed: $(get hello.test /status/200)"
[ "$(curl -fsS "http://127.0.0.1:$ADMIN/readyz" | jq -r '.declarations.failed | length')" = 0 ] \
  || fail "declarations failed: $(curl -sS "http://127.0.0.1:$ADMIN/readyz")"

# SIGTERM with a request in flight: it is answered, then the node exits 0.
slow=$WORK/slow
(curl -sS -o "$slow" -w '%{http_code}' -H 'host: slow.test' "http://127.0.0.1:$HTTP/sleep?ms=1500" >"$slow.code" 2>&1) &
inflight=$!
sleep 0.4
t=$(now_ms)
"${CTR[@]}" tasks kill --signal SIGTERM "$TASK"
wait "$inflight" || true
[ "$(cat "$slow.code")" = 200 ] || fail "the request in flight got $(cat "$slow.code")"
set +e
wait "$RUN_PID"
rc=$?
set -e
RUN_PID=""
elapsed=$(( $(now_ms) - t ))
[ "$rc" = 0 ] || fail "the node exited $rc after SIGTERM"
[ "$elapsed" -lt 10000 ] || fail "the drain took $elapsed ms (grace 10 s)"
say "SIGTERM to exit, with a 1.5 s request in flight: $elapsed ms"
say "ok"

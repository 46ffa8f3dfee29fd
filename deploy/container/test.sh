#!/usr/bin/env bash
# The node image, run the way kubelet runs a pod: built from
# deploy/container/Containerfile by buildah (FROM scratch: nothing pulled),
# imported into a containerd started here with its own root, state and
# socket, and run by `ctr run` (runc) with a read-only root filesystem, the
# image's non-root user, host networking on loopback ports, the apps
# directory bind-mounted read-only in kubelet's `..data` layout and a
# writable data volume. Checks: two apps deployed through the directory
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
WORK=$(mktemp -d /tmp/wasmops-container.XXXXXX)
SOCK=$WORK/containerd/containerd.sock
NS=wasmops-test
IMAGE=localhost/wasmops-node:test
TASK=wasmops-node-test
CTR=(ctr --address "$SOCK" --namespace "$NS")
GUESTS=$root/target/guests/wasm32-wasip2/release
HOST_BIN=${WASMOPS:-${CARGO_TARGET_DIR:-$root/target}/debug/wasmops}

say() { printf '[container] %s\n' "$*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
now_ms() { date +%s%3N; }

CTRD_PID=""
RUN_PID=""
cleanup() {
  local rc=$?
  set +e
  if [ -n "$CTRD_PID" ]; then
    for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do
      "${CTR[@]}" tasks kill --all --signal SIGKILL "$t" >/dev/null 2>&1
    done
    [ -n "$RUN_PID" ] && wait "$RUN_PID" 2>/dev/null
    for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks delete "$t" >/dev/null 2>&1; done
    for c in $("${CTR[@]}" containers ls -q 2>/dev/null); do "${CTR[@]}" containers delete "$c" >/dev/null 2>&1; done
    kill -TERM "$CTRD_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$CTRD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$CTRD_PID" 2>/dev/null
    wait "$CTRD_PID" 2>/dev/null
  fi
  for m in $(awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null
  done
  for d in /sys/fs/cgroup/*/"$NS" /sys/fs/cgroup/"$NS"; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  rmdir /run/containerd/s /run/containerd/fifo /run/containerd 2>/dev/null
  if [ "$rc" != 0 ]; then
    say "node log:"; tail -n 30 "$WORK/node.log" 2>/dev/null >&2
    say "containerd log:"; tail -n 10 "$WORK/containerd/containerd.log" 2>/dev/null >&2
  fi
  [ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || fail "needs root (containerd and runc)"
missing=()
for p in containerd runc buildah; do command -v "$p" >/dev/null || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
fi
for g in hello echo stream hostile; do
  [ -f "$GUESTS/$g.wasm" ] || fail "$GUESTS/$g.wasm is missing: run the tests first (cargo test builds the guests)"
done
[ -x "$HOST_BIN" ] || fail "$HOST_BIN is missing: build wasmops first"

# The image, exported as an OCI archive.
t=$(now_ms)
BUILDAH_ROOT=$WORK/buildah BUILDAH_RUNROOT=$WORK/buildah-run \
  scripts/node-image.sh --profile "$PROFILE" --tag "$IMAGE" --oci-archive "$WORK/image.tar" >&2
say "image built in $(( $(now_ms) - t )) ms"

# A containerd of our own.
mkdir -p "$WORK/containerd"
cat >"$WORK/containerd/config.toml" <<EOF
version = 2
root = "$WORK/containerd/root"
state = "$WORK/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = "$SOCK.debug"
[plugins."io.containerd.internal.v1.opt"]
  path = "$WORK/containerd/opt"
EOF
containerd --config "$WORK/containerd/config.toml" >"$WORK/containerd/containerd.log" 2>&1 &
CTRD_PID=$!
for _ in $(seq 1 100); do "${CTR[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
"${CTR[@]}" version >/dev/null || fail "containerd did not start"
"${CTR[@]}" images import "$WORK/image.tar" >/dev/null
"${CTR[@]}" images ls -q | grep -qx "$IMAGE" || fail "the image was not imported"

# The apps: components in an OCI layout (mounted read-only), declared in a
# directory laid out as kubelet mounts a ConfigMap.
layout=$WORK/layout
for g in hello echo stream hostile; do
  "$HOST_BIN" push "$GUESTS/$g.wasm" "oci-layout:$layout:$g" >/dev/null
done
# Readable by the pod's user, as a volume would be.
chmod -R a+rX "$layout"
apps=$WORK/apps
mkdir -p "$apps"
decl() { printf 'reference = "oci-layout:/layout:%s"\nhosts = ["%s.test"]\n' "$1" "$2"; }
mount_set() { # mount_set VERSION (NAME TAG)...
  local v=$1; shift
  mkdir -p "$apps/..$v"
  local names=()
  while [ $# -gt 0 ]; do
    decl "$2" "$1" >"$apps/..$v/$1.toml"
    names+=("$1.toml"); shift 2
  done
  ln -sfn "..$v" "$apps/..data_tmp"
  mv -T "$apps/..data_tmp" "$apps/..data"
  for f in "$apps"/*.toml; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    case " ${names[*]} " in *" $(basename "$f") "*) ;; *) rm -f "$f" ;; esac
  done
  for n in "${names[@]}"; do [ -L "$apps/$n" ] || ln -s "..data/$n" "$apps/$n"; done
}
mount_set v1 hello hello echo echo slow hostile
data=$WORK/data
mkdir -p "$data" "$WORK/tmp"
chown 65532:65532 "$data" "$WORK/tmp"
chmod 0750 "$data"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HTTP=$(port)
ADMIN=$(port)

t=$(now_ms)
"${CTR[@]}" run --rm --read-only --net-host \
  --runc-root "$WORK/runc" --fifo-dir "$WORK/fifo" \
  --mount "type=bind,src=$apps,dst=/etc/wasmops/apps,options=rbind:ro" \
  --mount "type=bind,src=$layout,dst=/layout,options=rbind:ro" \
  --mount "type=bind,src=$data,dst=/var/lib/wasmops,options=rbind:rw" \
  --mount "type=bind,src=$WORK/tmp,dst=/tmp,options=rbind:rw" \
  "$IMAGE" "$TASK" /usr/bin/wasmops node \
  --listen "127.0.0.1:$HTTP" --admin-listen "127.0.0.1:$ADMIN" \
  --apps-dir /etc/wasmops/apps --apps-dir-interval 200ms --shutdown-grace 10s \
  </dev/null >"$WORK/node.log" 2>&1 &
RUN_PID=$!

applied() { curl -fsS "http://127.0.0.1:$ADMIN/readyz" 2>/dev/null | jq -r '.declarations.applied // empty'; }
for _ in $(seq 1 600); do [ "$(applied)" = 3 ] && break; sleep 0.1; done
[ "$(applied)" = 3 ] || fail "not ready with 3 apps: $(curl -sS "http://127.0.0.1:$ADMIN/readyz")"
say "pod start to ready with 3 apps: $(( $(now_ms) - t )) ms"

get() { curl -sS -H "host: $1" "http://127.0.0.1:$HTTP$2"; }
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
    code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'host: hello.test' "http://127.0.0.1:$HTTP/status/200" || echo 000)
    [ "$code" = 200 ] || echo "$code" >>"$errors"
  done
) &
load=$!
sleep 0.5
mount_set v2 hello stream slow hostile
for _ in $(seq 1 100); do
  [ "$(curl -sS -o /dev/null -w '%{http_code}' -H 'host: echo.test' "http://127.0.0.1:$HTTP/")" = 404 ] && break
  sleep 0.1
done
wait "$load"
[ ! -s "$errors" ] || fail "requests failed during the swap: $(sort "$errors" | uniq -c | tr '\n' ' ')"
[ "$(curl -sS -o /dev/null -w '%{http_code}' -H 'host: echo.test' "http://127.0.0.1:$HTTP/")" = 404 ] \
  || fail "echo was not removed"
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

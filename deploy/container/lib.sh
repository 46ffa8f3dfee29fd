# Shared by deploy/container/test.sh and bench/kube_start.sh: a containerd
# of our own (own root, state and socket, under $WORK) with the node image
# imported, a directory laid out as kubelet mounts a ConfigMap, and the
# node run as kubelet runs a pod. The caller sets `root` (the checkout), NS
# (a containerd namespace) and PROFILE (the cargo profile of the image's
# binary), then sources this.

WORK=$(mktemp -d /tmp/wasmops-container.XXXXXX)
SOCK=$WORK/containerd/containerd.sock
IMAGE=localhost/wasmops-node:test
CTR=(ctr --address "$SOCK" --namespace "$NS")
HOST_BIN=${WASMOPS:-${CARGO_TARGET_DIR:-$root/target}/debug/wasmops}
MOUNTS=()

say() { printf '[container] %s\n' "$*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
now_ms() { date +%s%3N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

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

# The image, built from the Containerfile and exported as an OCI archive.
build_image() {
  local t
  t=$(now_ms)
  BUILDAH_ROOT=$WORK/buildah BUILDAH_RUNROOT=$WORK/buildah-run \
    "$root/scripts/node-image.sh" --profile "$PROFILE" --tag "$IMAGE" --oci-archive "$WORK/image.tar" >&2
  say "image built in $(( $(now_ms) - t )) ms"
}

# A containerd of our own, with the image imported.
start_containerd() {
  mkdir -p "$WORK/containerd"
  {
    echo 'version = 2'
    echo "root = \"$WORK/containerd/root\""
    echo "state = \"$WORK/containerd/state\""
    echo 'disabled_plugins = ["io.containerd.grpc.v1.cri"]'
    echo '[grpc]'
    echo "  address = \"$SOCK\""
    echo '[ttrpc]'
    echo "  address = \"$SOCK.ttrpc\""
    echo '[debug]'
    echo "  address = \"$SOCK.debug\""
    echo '[plugins."io.containerd.internal.v1.opt"]'
    echo "  path = \"$WORK/containerd/opt\""
  } >"$WORK/containerd/config.toml"
  containerd --config "$WORK/containerd/config.toml" >"$WORK/containerd/containerd.log" 2>&1 &
  CTRD_PID=$!
  for _ in $(seq 1 100); do "${CTR[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
  "${CTR[@]}" version >/dev/null || fail "containerd did not start"
  "${CTR[@]}" images import "$WORK/image.tar" >/dev/null
  "${CTR[@]}" images ls -q | grep -qx "$IMAGE" || fail "the image was not imported"
}

# kubelet_swap DIR VERSION FILE...: DIR/..VERSION gets the files, `..data`
# is renamed to point at it (atomically), and DIR/NAME links through
# `..data` for each file; names no longer in the set go.
kubelet_swap() {
  local dir=$1 v=$2; shift 2
  mkdir -p "$dir/..$v"
  local names=() f n
  for f in "$@"; do
    cp "$f" "$dir/..$v/"
    names+=("$(basename "$f")")
  done
  ln -sfn "..$v" "$dir/..data_tmp"
  mv -T "$dir/..data_tmp" "$dir/..data"
  for f in "$dir"/*; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    case " ${names[*]} " in *" $(basename "$f") "*) ;; *) rm -f "$f" ;; esac
  done
  for n in "${names[@]}"; do [ -L "$dir/$n" ] || ln -s "..data/$n" "$dir/$n"; done
}

# run_node TASK ARGS...: the node image run as kubelet would (read-only
# root, the image's user, host network), in the background (RUN_PID), with
# the mounts in MOUNTS (entries `SRC:DST:ro|rw`).
run_node() {
  local task=$1; shift
  local m src dst mode args=()
  for m in "${MOUNTS[@]}"; do
    IFS=: read -r src dst mode <<<"$m"
    args+=(--mount "type=bind,src=$src,dst=$dst,options=rbind:$mode")
  done
  "${CTR[@]}" run --rm --read-only --net-host \
    --runc-root "$WORK/runc" --fifo-dir "$WORK/fifo" "${args[@]}" \
    "$IMAGE" "$task" /usr/bin/wasmops node "$@" \
    </dev/null >>"$WORK/node.log" 2>&1 &
  RUN_PID=$!
}

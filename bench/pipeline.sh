#!/usr/bin/env bash
# `wasmops pipeline` wall time, stage by stage, one command:
# `bash bench/pipeline.sh`. A Rust app made by `wasmops new http-rust` with
# one smoke test and two environments, a docker-registry and two
# `wasmops node`s (staging, production) on loopback; the pipeline runs to
# production twice: cold (nothing built yet: cargo builds the component
# and its dependencies) and warm (wasmops's build cache hits).
# Prints a markdown table and appends it to bench/results/pipeline.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cargo build --release --locked -p wasmops
W=$root/target/release/wasmops
work=$(mktemp -d /tmp/wasmops-pipeline.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

reg=$(port)
printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$work/registry" "$reg" >"$work/registry.yml"
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
pids+=($!)

token=$("$W" node token --scope deploy --name bench --tokens-file "$work/tokens")
declare -A http admin
for env in staging production; do
  http[$env]=$(port)
  admin[$env]=$(port)
  "$W" node --data-dir "$work/$env" --tokens-file "$work/tokens" \
    --listen "127.0.0.1:${http[$env]}" --admin-listen "127.0.0.1:${admin[$env]}" \
    >"$work/$env.log" 2>&1 &
  pids+=($!)
done
for env in staging production; do
  for _ in $(seq 1 200); do curl -fsS "http://127.0.0.1:${admin[$env]}/readyz" >/dev/null 2>&1 && break; sleep 0.05; done
done

(cd "$work" && "$W" new http-rust shop >/dev/null)
app=$work/shop
cat >>"$app/wasmops.toml" <<EOF

[[test]]
name = "greets"
path = "/"
[test.expect]
status = 200

[environments.staging]
node = "http://127.0.0.1:${admin[staging]}"
url = "http://127.0.0.1:${http[staging]}"
hosts = ["shop.test"]

[environments.production]
node = "http://127.0.0.1:${admin[production]}"
url = "http://127.0.0.1:${http[production]}"
hosts = ["shop.test"]
EOF

run() {
  WASMOPS_TOKEN=$token XDG_CONFIG_HOME=$work/config "$W" pipeline "$app" --to production \
    --registry "127.0.0.1:$reg/apps/shop" --format json
}
cold=$(run)
warm=$(run)

mkdir -p bench/results
python3 - "$cold" "$warm" <<'PY' | tee -a bench/results/pipeline.md
import json, os, sys, time
cold, warm = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert cold["ok"] and warm["ok"], (cold, warm)
w = {s["stage"]: s["duration_ms"] for s in warm["stages"]}
print(f"`wasmops pipeline --to production` of a `wasmops new http-rust` app, {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}, {os.cpu_count()} cores (`bash bench/pipeline.sh`):\n")
print("| stage | cold | warm build cache |\n|---|---:|---:|")
for s in cold["stages"]:
    print(f"| {s['stage']} | {s['duration_ms'] / 1000:.2f} s | {w.get(s['stage'], 0) / 1000:.2f} s |")
print(f"| **total** | **{cold['duration_ms'] / 1000:.2f} s** | **{warm['duration_ms'] / 1000:.2f} s** |\n")
PY

#!/usr/bin/env bash
# Sweeps the pool's keep-resident size and warm-slot count for `wasmops serve`
# on the hello component: req/s (wrk -t2 -c32), mean instantiation, and the
# server's RSS after the run. Run after bench/run.sh has built everything:
#   bash bench/pool_sweep.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/wasmops
WASM=target/guests/wasm32-wasip2/release/hello.wasm
DURATION=${DURATION:-6}
PORT=${PORT:-3290}
# The log (an access line per request) goes to tmpfs when there is one, so
# that the disk's writeback of one run's log does not disturb the next.
LOG_DIR=${LOG_DIR:-$( [ -d /dev/shm ] && [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")}
echo "| keep-resident | warm slots | req/s | mean instantiation | RSS after |"
echo "|---|---:|---:|---:|---:|"
for rounds in 1 2; do
for keep in 0 256KiB 1MiB 2MiB 8MiB 64MiB; do
  for warm in 100; do
    log=$(mktemp -p "$LOG_DIR" wasmops-bench.XXXXXX)
    $BIN serve "$WASM" --listen 127.0.0.1:$PORT --memory-keep-resident $keep --warm-slots $warm --log-format json 2>"$log" &
    pid=$!
    until curl -sf http://127.0.0.1:$PORT/ >/dev/null; do sleep 0.05; done
    wrk -t1 -c4 -d1s http://127.0.0.1:$PORT/ >/dev/null
    rps=$(wrk -t2 -c32 -d${DURATION}s http://127.0.0.1:$PORT/ | awk '/Requests\/sec/ {print $2}')
    rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
    kill -INT $pid; wait $pid || true
    inst=$(grep -o '"mean_instantiate_us":[0-9.]*' "$log" | cut -d: -f2)
    printf "| %s | %s | %.0f | %.1f µs | %d MiB |\n" "$keep" "$warm" "$rps" "$inst" $((rss / 1024))
    rm -f "$log"
  done
done
done

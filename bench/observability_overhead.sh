#!/usr/bin/env bash
# Cost of observability on the request path: `wasmops serve` with metrics
# (admin listener on), JSON access logs written to a file and OTLP traces sent
# to a local sink (bench/otlp_sink.rs: reads and discards, keep-alive, so
# that the stand-in for a remote collector takes little of the shared CPU),
# against the same server with all three
# off (`--admin-listen off --log-level warn`, no OTEL endpoint), alternated.
# OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG pass through (default: every trace);
# TRACES=0 leaves tracing off in the "on" runs (metrics and access logs only).
# Run after bench/run.sh has built everything: `bash bench/observability_overhead.sh`
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/wasmops
WASM=target/guests/wasm32-wasip2/release/hello.wasm
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
PORT=${PORT:-3291}
SINK_PORT=${SINK_PORT:-3296}
SINK_BIN=target/otlp_sink
[ "$SINK_BIN" -nt bench/otlp_sink.rs ] || rustc -O -o "$SINK_BIN" bench/otlp_sink.rs
"$SINK_BIN" "$SINK_PORT" &
SINK=$!
trap 'kill $SINK 2>/dev/null' EXIT
declare -A total=( [on]=0 [off]=0 ) cpu=( [on]=0 [off]=0 )
# Access logs go to a file on tmpfs when there is one: on disk, the kernel's
# writeback of one round's ~40 MB of log lands in later rounds and disturbs
# them (a log shipper reading a pipe is the usual production setup anyway).
LOG_DIR=${LOG_DIR:-$( [ -d /dev/shm ] && [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")}
run() {
  local mode=$1 log; log=$(mktemp -p "$LOG_DIR" wasmops-bench.XXXXXX)
  if [ "$mode" = on ] && [ "${TRACES:-1}" = 0 ]; then
    $BIN serve "$WASM" --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:0 --log-format json 2>"$log" &
  elif [ "$mode" = on ]; then
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$SINK_PORT OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \
      OTEL_TRACES_SAMPLER=${OTEL_TRACES_SAMPLER:-parentbased_always_on} OTEL_TRACES_SAMPLER_ARG=${OTEL_TRACES_SAMPLER_ARG:-1} \
      $BIN serve "$WASM" --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:0 --log-format json 2>"$log" &
  else
    $BIN serve "$WASM" --listen 127.0.0.1:$PORT --admin-listen off --log-level warn --log-format json 2>"$log" &
  fi
  local pid=$!
  until curl -sf http://127.0.0.1:$PORT/ >/dev/null; do sleep 0.05; done
  wrk -t1 -c4 -d1s http://127.0.0.1:$PORT/ >/dev/null
  local cpu0 sink0 out; cpu0=$(cpu_ticks $pid); sink0=$(cpu_ticks $SINK)
  out=$(wrk -t2 -c32 -d${DURATION}s http://127.0.0.1:$PORT/)
  local cpu1 sink1; cpu1=$(cpu_ticks $pid); sink1=$(cpu_ticks $SINK)
  local rps; rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  local reqs; reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  kill -INT $pid; wait $pid || true
  local lines; lines=$(grep -c '"wasmops::access"' "$log" || true)
  rm -f "$log"
  # CPU time of the server per request (µs), and the sink's share of the run.
  local us; us=$(python3 -c "print(f'{($cpu1-$cpu0)/$TICKS/$reqs*1e6:.1f}')")
  local sink_pct; sink_pct=$(python3 -c "print(f'{($sink1-$sink0)/$TICKS/$DURATION*100:.1f}')")
  echo "$mode $rps $lines $us $sink_pct"
}
TICKS=$(getconf CLK_TCK)
# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# One pair discarded first: right after a build the machine is still
# writing the binary back to disk.
for mode in on off; do run $mode >/dev/null; done
for r in $(seq 1 "$ROUNDS"); do
  for mode in on off; do
    read -r m rps lines us sink_pct < <(run $mode)
    echo "round $r $m: $rps req/s ($lines access-log lines), server CPU $us µs/request, sink ${sink_pct}% of a core" >&2
    total[$m]=$(python3 -c "print(${total[$m]} + $rps)")
    cpu[$m]=$(python3 -c "print(${cpu[$m]} + $us)")
  done
done
python3 -c "on=${total[on]}/$ROUNDS; off=${total[off]}/$ROUNDS; con=${cpu[on]}/$ROUNDS; coff=${cpu[off]}/$ROUNDS; print(f'| observability | req/s (mean of $ROUNDS) | server CPU µs/request |\n|---|---:|---:|\n| metrics + JSON access log + OTLP traces on | {on:.0f} | {con:.1f} |\n| all off | {off:.0f} | {coff:.1f} |\n\nratio on/off: **{on/off:.3f}** (req/s); CPU per request off/on: **{coff/con:.3f}**')"

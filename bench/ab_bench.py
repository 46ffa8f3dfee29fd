#!/usr/bin/env python3
"""Alternating A/B benchmark of two wasmops binaries (run by bench/ab.sh).

Each round starts each binary fresh (`wasmops serve`, metrics and JSON
access log on, the log to /dev/null), warms it up, and runs wrk: a GET of
the hello component, then a POST of 4 KiB to the echo component. The
binaries take turns so drift hits both alike; a first pair of rounds is
discarded. Prints the median requests/s of each, the server's CPU time per
request (utime + stime over the wrk run, steadier than requests/s on a
machine that wrk shares), and the ratios new/base.
"""
import argparse, os, socket, statistics, subprocess, sys, tempfile, time, urllib.request, re, signal


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_200(url, timeout=120):
    start = time.time()
    while time.time() - start < timeout:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                r.read()
                return
        except Exception:
            time.sleep(0.01)
    raise RuntimeError(f"{url} never answered")


def wrk(url, conns, duration, lua=None):
    argv = ["wrk", "-t2", f"-c{conns}", f"-d{duration}s"]
    if lua:
        argv += ["-s", lua]
    out = subprocess.run(argv + [url], capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"non-2xx answers: {out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def tree(pid):
    """The process and its descendants (`serve` runs worker processes)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def cpu_seconds(pid):
    """utime + stime of the process and its descendants, as they run."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def run(binary, component, conns, duration, lua, cache):
    port, admin = free_port(), free_port()
    proc = subprocess.Popen([binary, "serve", component, "--listen", f"127.0.0.1:{port}",
                             "--admin-listen", f"127.0.0.1:{admin}", "--log-format", "json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "WASMOPS_CACHE_DIR": cache})
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_200(url)
        wrk(url, conns, 1, lua)
        before = cpu_seconds(proc.pid)
        rps = wrk(url, conns, duration, lua)
        used = cpu_seconds(proc.pid) - before
        return rps, used / (rps * duration) * 1e6
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser()
    for a in ["--base", "--new", "--hello", "--echo", "--base-rev"]:
        ap.add_argument(a, required=True)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--out", default="bench/results")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="wasmops-ab-")
    lua = os.path.join(work, "post.lua")
    with open(lua, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = string.rep("x", 4096)\n'
                'wrk.headers["Content-Type"] = "application/octet-stream"\n')
    cases = [("GET hello", a.hello, None), ("POST 4 KiB echo", a.echo, lua)]
    results = {(c, b): [] for c, _, _ in cases for b in ("base", "new")}
    cpu = {(c, b): [] for c, _, _ in cases for b in ("base", "new")}
    for rnd in range(a.rounds + 1):
        for case, comp, script in cases:
            order = [("base", a.base), ("new", a.new)] if rnd % 2 == 0 else [("new", a.new), ("base", a.base)]
            for name, binary in order:
                rps, us = run(binary, comp, a.connections, a.duration, script, os.path.join(work, name))
                if rnd > 0:
                    results[(case, name)].append(rps)
                    cpu[(case, name)].append(us)
                print(f"round {rnd} {case} {name}: {rps:.0f} req/s, {us:.1f} µs CPU/request", file=sys.stderr)
    lines = [f"Base {a.base_rev} against the working tree; wrk -t2 -c{a.connections} -d{a.duration}s, "
             f"{a.rounds} alternated rounds (median; a first pair discarded).", "",
             "| case | base req/s | new req/s | new/base | base µs CPU/req | new µs CPU/req | new/base |",
             "|---|---|---|---|---|---|---|"]
    for case, _, _ in cases:
        b = statistics.median(results[(case, "base")])
        n = statistics.median(results[(case, "new")])
        bc = statistics.median(cpu[(case, "base")])
        nc = statistics.median(cpu[(case, "new")])
        lines.append(f"| {case} | {b:.0f} | {n:.0f} | {n / b:.3f} | {bc:.1f} | {nc:.1f} | {nc / bc:.3f} |")
    text = "\n".join(lines)
    print(text)
    os.makedirs(a.out, exist_ok=True)
    open(os.path.join(a.out, f"ab-{time.strftime('%Y%m%d-%H%M%S')}.md"), "w").write(text + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""App benchmarks for `wasmops up`, alternated round by round:

1. Routing: the hello component served by `wasmops serve`, by `wasmops up`
   with one route, and by `wasmops up` with 100 routes (99 prefix routes the
   request does not match, scanned before the catch-all `/...` that it does).
   The ratio up-100-routes / serve is the cost of the routing table.
2. Key-value: increments per second through the example app's `api`
   component (`POST /api/incr/KEY`, one `wasi:keyvalue` increment each), on
   one hot key and on keys spread over 10,000, with the embedded store
   (SQLite, WAL) and with Redis (a local `redis-server`).

Run by bench/app.sh, which builds everything first.
"""
import argparse, os, platform, re, shutil, signal, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_bench import free_port, to_us, wait_200  # noqa: E402


def wrk(url, duration, conns=32, threads=2, script=None):
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency"]
    if script:
        argv += ["-s", script]
    out = subprocess.run(argv + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p99_us": to_us(lat["99"]), "non2xx": int(bad.group(1)) if bad else 0}


class Proc:
    def __init__(self, argv, env=None, probe="/"):
        self.argv, self.env, self.probe = argv, env or {}, probe

    def start(self, port):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.argv(port), stdout=subprocess.DEVNULL, stderr=self.log,
                                     env={**os.environ, **self.env})
        self.base = f"http://127.0.0.1:{port}"
        wait_200(self.base + self.probe)

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def manifest(name, routes, components):
    text = f'manifest_version = 1\n[app]\nname = "{name}"\n'
    for cid, src, extra in components:
        text += f'[component.{cid}]\nsource = "{src}"\nroute = [{", ".join(routes)}]\n{extra}'
    return text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wasmops", required=True)
    ap.add_argument("--hello", required=True)
    ap.add_argument("--api", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", choices=["routing", "kv"], help="run one part")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="wasmops-app-bench-")
    bin_ = os.path.abspath(a.wasmops)
    common = ["--admin-listen", "127.0.0.1:0", "--log-format", "json"]

    # --- routing ---
    one = os.path.join(work, "one")
    hundred = os.path.join(work, "hundred")
    for d in (one, hundred):
        os.makedirs(d)
        shutil.copy(a.hello, os.path.join(d, "hello.wasm"))
    with open(os.path.join(one, "wasmops.toml"), "w") as f:
        f.write(manifest("one", ['"/..."'], [("hello", "hello.wasm", "")]))
    prefixes = [f'"/service-{i:02}/v1/..."' for i in range(99)] + ['"/..."']
    with open(os.path.join(hundred, "wasmops.toml"), "w") as f:
        f.write(manifest("hundred", prefixes, [("hello", "hello.wasm", "")]))
    routing = {
        "serve (1 component)": Proc(lambda p: [bin_, "serve", a.hello, "--listen", f"127.0.0.1:{p}"] + common),
        "up, 1 route": Proc(lambda p: [bin_, "up", one, "--listen", f"127.0.0.1:{p}"] + common),
        "up, 100 routes": Proc(lambda p: [bin_, "up", hundred, "--listen", f"127.0.0.1:{p}"] + common),
    }
    results = {k: [] for k in routing}
    for r in range(a.rounds if a.only != "kv" else 0):
        for name, s in routing.items():
            s.start(free_port())
            wrk(s.base + "/", 1, conns=4, threads=1)
            res = wrk(s.base + "/", a.duration)
            s.stop()
            results[name].append(res)
            print(f"round {r + 1} {name}: {res['rps']:.0f} req/s p99 {res['p99_us']:.0f} us non-2xx {res['non2xx']}",
                  file=sys.stderr)

    # --- key-value ---
    kv = os.path.join(work, "kv")
    os.makedirs(kv)
    shutil.copy(a.api, os.path.join(kv, "api.wasm"))
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", work],
                             stdout=subprocess.DEVNULL)
    spread = os.path.join(work, "spread.lua")
    with open(spread, "w") as f:
        f.write('request = function()\n  return wrk.format("POST", "/api/incr/k" .. math.random(1, 10000))\nend\n')
    hot = os.path.join(work, "hot.lua")
    with open(hot, "w") as f:
        f.write('wrk.method = "POST"\n')
    backends = {
        "embedded": "",
        "redis": f'[key_value.default]\nbackend = "redis"\nurl = "redis://127.0.0.1:{redis_port}/0"\n',
    }
    kv_results = {}
    try:
        time.sleep(0.5)
        for r in range(a.rounds if a.only != "routing" else 0):
            for backend, extra in backends.items():
                d = os.path.join(kv, backend)
                os.makedirs(d, exist_ok=True)
                shutil.copy(a.api, os.path.join(d, "api.wasm"))
                with open(os.path.join(d, "wasmops.toml"), "w") as f:
                    f.write(manifest("kvbench", ['"/api/..."'],
                                     [("api", "api.wasm", 'key_value_stores = ["default"]\n')]) + extra)
                s = Proc(lambda p: [bin_, "up", d, "--listen", f"127.0.0.1:{p}"] + common, probe="/api/counter")
                s.start(free_port())
                if backend == "embedded":
                    # The same component answering without a store operation.
                    wrk(s.base + "/api/config", 1, conns=4, threads=1)
                    res = wrk(s.base + "/api/config", a.duration)
                    kv_results.setdefault(("embedded", "none: `GET /api/config`, for reference"), []).append(res)
                for keys, script in (("one hot key", hot), ("10,000 spread keys", spread)):
                    wrk(s.base + "/api/incr/hot", 1, conns=4, threads=1, script=script)
                    res = wrk(s.base + "/api/incr/hot", a.duration, script=script)
                    kv_results.setdefault((backend, keys), []).append(res)
                    print(f"round {r + 1} kv {backend} {keys}: {res['rps']:.0f} incr/s p99 {res['p99_us']:.0f} us "
                          f"non-2xx {res['non2xx']}", file=sys.stderr)
                s.stop()
    finally:
        redis.terminate()
        redis.wait()

    med = lambda rows, k: statistics.median(x[k] for x in rows)
    base = med(results["serve (1 component)"], "rps") if a.only != "kv" else 1
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except Exception:
        pass
    lines = [
        f"Machine: {os.cpu_count()} cores, {cpu}. wrk -t2 -c32 -d{a.duration}s, {a.rounds} alternated rounds, medians.",
        "",
        "| server | req/s | p99 | ratio to serve |",
        "|---|---:|---:|---:|",
    ]
    for name, rows in results.items():
        if not rows:
            continue
        lines.append(f"| {name} | {med(rows, 'rps'):,.0f} | {med(rows, 'p99_us') / 1000:.2f} ms | "
                     f"{med(rows, 'rps') / base:.3f} |")
    lines += ["", "| key-value increments | backend | incr/s | p99 | non-2xx |", "|---|---|---:|---:|---:|"]
    for (backend, keys), rows in kv_results.items():
        lines.append(f"| {keys} | {backend} | {med(rows, 'rps'):,.0f} | {med(rows, 'p99_us') / 1000:.2f} ms | "
                     f"{sum(x['non2xx'] for x in rows)} |")
    report = "\n".join(lines) + "\n"
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, f"app{'-' + a.only if a.only else ''}.md"), "w") as f:
        f.write(report)
    print(report)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Alternating serving benchmark: wasmops serve, wasmtime serve, native hyper.

Every round starts each server fresh on a free loopback port, warms it up, and
runs wrk against it; the servers take turns so drift hits all alike. Also
measures start-to-first-200 for wasmops with a cold and a warm artifact cache,
and reads wasmops' own mean instantiation time from its shutdown log line.
"""
import argparse, json, os, platform, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_200(url, timeout=60.0):
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    r.read()
                    return time.perf_counter() - start
        except Exception:
            time.sleep(0.0005)
    raise RuntimeError(f"{url} never answered 200")


def to_us(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    n, u = float(m.group(1)), m.group(2)
    return n * {"us": 1, "ms": 1000, "s": 1_000_000}[u]


def wrk(url, threads, conns, duration):
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_us": to_us(lat["50"]), "p99_us": to_us(lat["99"]),
            "non2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else ""}


class Server:
    def __init__(self, name, argv, env=None):
        self.name, self.argv, self.env = name, argv, env

    def start(self, port):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.argv(port), stdout=subprocess.DEVNULL, stderr=self.log,
                                     env={**os.environ, **(self.env or {})})
        self.url = f"http://127.0.0.1:{port}/"
        return wait_200(self.url)

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wasmops", required=True)
    ap.add_argument("--wasmtime", required=True)
    ap.add_argument("--native", required=True)
    ap.add_argument("--component", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--out", default="bench/results")
    a = ap.parse_args()

    cache = tempfile.mkdtemp(prefix="wasmops-bench-cache-")
    env = {"WASMOPS_CACHE_DIR": cache}
    servers = [
        Server("wasmops serve", lambda p: [a.wasmops, "serve", a.component, "--listen", f"127.0.0.1:{p}",
                                            "--log-format", "json", "--log-level", "warn,wasmops=info"], env),
        Server("wasmtime serve", lambda p: [a.wasmtime, "serve", "-Scli", "--addr", f"127.0.0.1:{p}", a.component]),
        Server("native hyper", lambda p: [a.native, f"127.0.0.1:{p}"]),
    ]
    results = {s.name: [] for s in servers}
    single = {s.name: [] for s in servers}
    inst_us = []
    for r in range(a.rounds):
        order = servers if r % 2 == 0 else list(reversed(servers))
        for s in order:
            s.start(free_port())
            wrk(s.url, 1, 4, 2)  # warm-up
            res = wrk(s.url, a.wrk_threads, a.connections, a.duration)
            one = wrk(s.url, 1, 1, max(3, a.duration // 2))
            log = s.stop()
            results[s.name].append(res)
            single[s.name].append(one)
            m = re.search(r'"mean_instantiate_us":([\d.]+)', log)
            if m and s.name == "wasmops serve":
                inst_us.append(float(m.group(1)))
            print(f"round {r + 1} {s.name}: {res['rps']:.0f} req/s p50 {res['p50_us']:.0f}us p99 {res['p99_us']:.0f}us; "
                  f"1 conn p50 {one['p50_us']:.0f}us", file=sys.stderr)

    # Start to first 200, cold and warm artifact cache (wasmops), and wasmtime serve.
    def first200(server, clear=None, n=5):
        times = []
        for _ in range(n):
            if clear:
                shutil.rmtree(clear, ignore_errors=True)
            t0 = time.perf_counter()
            port = free_port()
            server.start(port)
            times.append((time.perf_counter() - t0) * 1000)
            server.stop()
        return statistics.median(times)

    startup = {
        "wasmops cold cache": first200(servers[0], clear=cache),
        "wasmops warm cache": (first200(servers[0], n=1), first200(servers[0]))[1],
        "wasmtime serve": first200(servers[1]),
    }
    shutil.rmtree(cache, ignore_errors=True)

    def med(rows, k):
        return statistics.median(x[k] for x in rows)

    summary = {n: {"rps": med(v, "rps"), "p50_us": med(v, "p50_us"), "p99_us": med(v, "p99_us"),
                   "one_conn_p50_us": med(single[n], "p50_us"),
                   "non2xx": sum(x["non2xx"] for x in v)} for n, v in results.items()}
    w, t, h = summary["wasmops serve"], summary["wasmtime serve"], summary["native hyper"]
    report = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, {platform.release()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "settings": vars(a), "rounds": results, "single_connection": single, "summary": summary,
        "ratios": {"rps_wasmops_over_wasmtime": w["rps"] / t["rps"], "p99_wasmops_over_wasmtime": w["p99_us"] / t["p99_us"],
                   "rps_wasmops_over_native": w["rps"] / h["rps"]},
        "wasmops_mean_instantiate_us": statistics.median(inst_us) if inst_us else None,
        "start_to_first_200_ms": startup,
    }
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "serve.json"), "w") as f:
        json.dump(report, f, indent=2)

    lines = [f"Machine: {report['machine']}; {report['date']}",
             f"wrk -t{a.wrk_threads} -c{a.connections} -d{a.duration}s --latency, {a.rounds} alternated rounds, medians; "
             f"single connection: wrk -t1 -c1",
             "", "| server | req/s | p50 | p99 | 1-conn p50 | non-2xx |", "|---|---:|---:|---:|---:|---:|"]
    for n, s in summary.items():
        lines.append(f"| {n} | {s['rps']:.0f} | {s['p50_us']:.0f} µs | {s['p99_us']:.0f} µs | {s['one_conn_p50_us']:.0f} µs | {s['non2xx']} |")
    r = report["ratios"]
    lines += ["", f"wasmops / wasmtime serve: **{r['rps_wasmops_over_wasmtime']:.2f}×** req/s, p99 ratio {r['p99_wasmops_over_wasmtime']:.2f}; "
              f"wasmops / native hyper: {r['rps_wasmops_over_native']:.2f}×",
              f"wasmops mean instantiation (store + instantiate from the pre): {report['wasmops_mean_instantiate_us']:.1f} µs" if inst_us else "",
              "", "| start to first 200 (median of 5) | ms |", "|---|---:|"]
    for k, v in startup.items():
        lines.append(f"| {k} | {v:.1f} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "serve.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()

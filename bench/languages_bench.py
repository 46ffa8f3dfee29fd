#!/usr/bin/env python3
"""Serving by language: the templates' hello-world components (Rust,
JavaScript, Python), each under `wasmops serve` (fresh instance per request,
one worker process per core by default), `wasmops serve --workers 1` (one
process, one thread per core), `wasmops serve
--instance-reuse N`, and `wasmtime serve`, in alternated rounds on free
loopback ports. Reports requests/s, p50, p99, the server's RSS after the run
(worker processes included), and wasmops' mean instantiation per request.
"""
import argparse, json, os, platform, re, statistics, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from node_bench import rss_kib  # noqa: E402
from serve_bench import Server, free_port, wrk  # noqa: E402


def tree_rss_kib(pid):
    """RSS of a process and its children (worker processes)."""
    total = rss_kib(pid)
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        kids = []
    return total + sum(tree_rss_kib(k) for k in kids)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wasmops", required=True)
    ap.add_argument("--wasmtime", required=True)
    ap.add_argument("--component", action="append", required=True, help="LANG=PATH")
    ap.add_argument("--p3", action="append", default=[],
                    help="LANG whose component is WASIp3 (wasmtime serve -Sp3; no reuse)")
    ap.add_argument("--reuse", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--out", default="bench/results")
    a = ap.parse_args()

    env = {"WASMOPS_CACHE_DIR": a.cache}
    log = ["--log-format", "json", "--log-level", "warn,wasmops=info"]
    table = {}
    for spec in a.component:
        lang, path = spec.split("=", 1)
        p3 = lang in a.p3
        wasmtime_flags = ["-Scli", "-Sp3", "-Wcomponent-model-async"] if p3 else ["-Scli"]
        servers = [
            Server("wasmops serve (default: one worker per core)",
                   lambda p, c=path: [a.wasmops, "serve", c, "--listen", f"127.0.0.1:{p}", *log], env),
            Server("wasmops serve --workers 1",
                   lambda p, c=path: [a.wasmops, "serve", c, "--listen", f"127.0.0.1:{p}",
                                      "--workers", "1", *log], env),
            Server(f"wasmops serve --instance-reuse {a.reuse}",
                   lambda p, c=path: [a.wasmops, "serve", c, "--listen", f"127.0.0.1:{p}",
                                      "--instance-reuse", str(a.reuse), *log], env),
            Server("wasmtime serve", lambda p, c=path, f=wasmtime_flags: [a.wasmtime, "serve", *f, "--addr", f"127.0.0.1:{p}", c]),
        ]
        if p3:
            # A WASIp3 component's requests share one instance already.
            servers.pop(2)
        rows = {s.name: [] for s in servers}
        for r in range(a.rounds):
            order = servers if r % 2 == 0 else list(reversed(servers))
            for s in order:
                s.start(free_port())
                wrk(s.url, 1, 4, 2)  # warm-up
                res = wrk(s.url, a.wrk_threads, a.connections, a.duration)
                res["rss_kib"] = tree_rss_kib(s.proc.pid)
                # One connection: a request's own latency, no queueing.
                res["one_conn_p50_us"] = wrk(s.url, 1, 1, max(3, a.duration // 2))["p50_us"]
                text = s.stop()
                # One `stopped` line per process (each worker's own).
                m = [float(x) for x in re.findall(r'"mean_instantiate_us":([\d.]+)', text)]
                res["instantiate_us"] = statistics.mean(m) if m else None
                rows[s.name].append(res)
                print(f"{lang} round {r + 1} {s.name}: {res['rps']:.0f} req/s p50 {res['p50_us']:.0f}us "
                      f"p99 {res['p99_us']:.0f}us rss {res['rss_kib'] // 1024} MiB", file=sys.stderr)

        def med(v, k):
            xs = [x[k] for x in v if x[k] is not None]
            return statistics.median(xs) if xs else None

        table[lang] = {n: {k: med(v, k) for k in ["rps", "p50_us", "p99_us", "one_conn_p50_us", "rss_kib", "instantiate_us"]}
                       | {"non2xx": sum(x["non2xx"] for x in v)} for n, v in rows.items()}

    report = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, {platform.release()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "settings": {k: v for k, v in vars(a).items() if k != "cache"},
        "table": table,
    }
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "languages.json"), "w") as f:
        json.dump(report, f, indent=2)

    lines = [f"Machine: {report['machine']}; {report['date']}",
             f"wrk -t{a.wrk_threads} -c{a.connections} -d{a.duration}s --latency, {a.rounds} alternated rounds, medians",
             "", "| language | server | req/s | × wasmtime | p50 | p99 | 1-conn p50 | RSS after | instantiation | non-2xx |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for lang, servers in table.items():
        base = servers["wasmtime serve"]["rps"]
        for n, s in servers.items():
            inst = f"{s['instantiate_us']:.1f} µs" if s["instantiate_us"] is not None else "-"
            lines.append(f"| {lang} | {n} | {s['rps']:.0f} | {s['rps'] / base:.2f} | {s['p50_us'] / 1000:.2f} ms | "
                         f"{s['p99_us'] / 1000:.2f} ms | {s['one_conn_p50_us'] / 1000:.2f} ms | "
                         f"{s['rss_kib'] / 1024:.0f} MiB | {inst} | {s['non2xx']} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "languages.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Density benchmark of `wasmops node` (run by bench/node.sh).

1. Makes N distinct components from the hello component: each has its own
   greeting in its data segment ("Hello 000042!"), so each has its own
   digest and is compiled and cached on its own.
2. Deploys them all to one node (upload + deploy over the admin API, with
   DEPLOY_WORKERS concurrent clients): deploy rate.
3. With every app deployed and idle (unloaded): the node's RSS.
4. First request to apps that are not loaded (each a different app), and
   the second request to the same app: p50 and p99.
5. wrk: all traffic on one app, then spread over SPREAD apps, alternated
   three times (the same Lua script picks the Host header in both):
   requests/s of both.
6. Restart (SIGKILL, start again): time until /readyz, and the first request.
7. Pod-per-app: the same apps as one `wasmtime serve` process each (when a
   wasmtime binary is given), as many as POD_APPS: RSS per process.
Prints a markdown report and writes it (and JSON) to --out.
"""
import argparse, concurrent.futures, http.client, json, os, platform, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

GREETING = b"Hello, world!\n"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kib(pid, field="VmRSS"):
    """Resident memory of `pid` in KiB; `RssAnon` is its private part (the
    rest is mapped files: compiled code shared with the page cache)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


class Admin:
    def __init__(self, port, token):
        self.port, self.token = port, token

    def call(self, method, path, body=None, ctype="application/json"):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        headers = {"Authorization": f"Bearer {self.token}"}
        if body is not None:
            headers["Content-Type"] = ctype
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        c.close()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
        return json.loads(data) if data else None


def start_node(wasmops, data, tokens, port, admin_port, log):
    argv = [wasmops, "node", "--data-dir", data, "--tokens-file", tokens,
            "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin_port}",
            "--log-format", "json", "--log-level", "warn", "--idle-unload", "10m"]
    argv += os.environ.get("NODE_ARGS", "").split()
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)


def wait_ready(admin_port, timeout=3600):
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - start
        except Exception:
            pass
        time.sleep(0.01)
    raise RuntimeError("the node never became ready")


def get(port, host, path="/"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    t = time.perf_counter()
    c.request("GET", path, headers={"Host": host})
    r = c.getresponse()
    body = r.read()
    dt = time.perf_counter() - t
    c.close()
    return r.status, body, dt


def wrk(url, lua, threads, conns, duration):
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency"]
    if lua:
        argv += ["-s", lua]
    out = subprocess.run(argv + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, int(non2xx.group(1)) if non2xx else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wasmops", required=True)
    ap.add_argument("--component", required=True)
    ap.add_argument("--wasmtime", default="")
    ap.add_argument("--apps", type=int, default=10000)
    ap.add_argument("--first-requests", type=int, default=1000)
    ap.add_argument("--spread", type=int, default=1000)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--pod-apps", type=int, default=50)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--curve", default="",
                    help="comma-separated app counts: the spread ratio at each (where the cost of distinct apps sets in)")
    ap.add_argument("--out", default="bench/results")
    a = ap.parse_args()

    base = open(a.component, "rb").read()
    assert base.count(GREETING) == 1, "the hello component's greeting is not where it was"
    work = tempfile.mkdtemp(prefix="wasmops-node-bench-")
    report = {"apps": a.apps, "machine": f"{platform.node()} {os.cpu_count()} cores"}
    try:
        comps = []
        for i in range(a.apps):
            g = b"Hello %06d!\n" % i
            assert len(g) == len(GREETING)
            comps.append(base.replace(GREETING, g))
        tokens = os.path.join(work, "tokens")
        token = subprocess.run([a.wasmops, "node", "token", "--scope", "deploy", "--name", "bench",
                                "--tokens-file", tokens], capture_output=True, text=True, check=True).stdout.strip()
        data = os.path.join(work, "data")
        port, admin_port = free_port(), free_port()
        log = open(os.path.join(work, "node.log"), "wb")
        node = start_node(a.wasmops, data, tokens, port, admin_port, log)
        wait_ready(admin_port)
        admin = Admin(admin_port, token)

        # 2. Deploy every app.
        def deploy(i):
            d = admin.call("POST", "/v1/blobs", comps[i], "application/wasm")["digest"]
            admin.call("PUT", f"/v1/apps/app{i}", json.dumps({"digest": d, "hosts": [f"app{i}.bench"]}).encode())

        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(a.workers) as ex:
            for n, _ in enumerate(ex.map(deploy, range(a.apps))):
                if n and n % 1000 == 0:
                    print(f"  deployed {n} apps in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        deploy_s = time.perf_counter() - t0
        report["deploy_seconds"] = deploy_s
        report["deploys_per_second"] = a.apps / deploy_s
        report["rss_after_deploy_mib"] = rss_kib(node.pid) / 1024

        # 3. Restart, so every app is idle and unloaded: RSS, readiness.
        node.send_signal(signal.SIGKILL)
        node.wait()
        t0 = time.perf_counter()
        node = start_node(a.wasmops, data, tokens, port, admin_port, log)
        report["restart_ready_seconds"] = wait_ready(admin_port)
        st, body, _ = get(port, "app0.bench")
        assert st == 200 and body == b"Hello 000000!\n", (st, body)
        report["restart_first_200_seconds"] = time.perf_counter() - t0
        time.sleep(1)
        report["rss_idle_mib"] = rss_kib(node.pid) / 1024

        # 4. First and second requests to apps not loaded.
        first, second = [], []
        for i in range(1, 1 + a.first_requests):
            st, body, dt = get(port, f"app{i}.bench")
            assert st == 200 and body == b"Hello %06d!\n" % i, (i, st, body)
            first.append(dt)
            st, _, dt = get(port, f"app{i}.bench")
            second.append(dt)
        report["first_request_ms"] = {"p50": pct(first, 50) * 1e3, "p99": pct(first, 99) * 1e3}
        report["second_request_ms"] = {"p50": pct(second, 50) * 1e3, "p99": pct(second, 99) * 1e3}
        report["rss_after_first_requests_mib"] = rss_kib(node.pid) / 1024
        report["anon_after_first_requests_mib"] = rss_kib(node.pid, "RssAnon") / 1024

        # 5. One app against traffic spread over many.
        # Both runs make their requests with the same Lua function (only the
        # number of host names differs), so the client, which shares the
        # machine's cores with the node, spends the same per request.
        def host_script(name, apps):
            path = os.path.join(work, name)
            with open(path, "w") as f:
                f.write("local n = 0\nrequest = function()\n  n = n + 1\n"
                        f"  wrk.headers['Host'] = 'app' .. (n % {apps}) .. '.bench'\n"
                        "  return wrk.format(nil, '/')\nend\n")
            return path
        lua = host_script("spread.lua", a.spread)
        one_lua = host_script("one.lua", 1)
        for i in range(a.spread):
            get(port, f"app{i}.bench")
        url = f"http://127.0.0.1:{port}/"
        # Warm-up of both: the first spread pass also maps each app's memory
        # image into a pool slot of every core's shard.
        wrk(url, one_lua, 2, 32, 2)
        wrk(url, lua, 2, 32, 2)
        # Alternated rounds: this machine's speed drifts by more than the
        # difference being measured.
        ones, spreads, errors = [], [], 0
        for _ in range(3):
            rps, err = wrk(url, one_lua, 2, 32, a.duration)
            ones.append(rps)
            errors += err
            rps, err = wrk(url, lua, 2, 32, a.duration)
            spreads.append(rps)
            errors += err
        report["rps_one_app"] = sum(ones) / len(ones)
        report["rps_spread"] = sum(spreads) / len(spreads)
        report["spread_apps"] = a.spread
        report["spread_ratio"] = report["rps_spread"] / report["rps_one_app"]
        report["spread_ratio_rounds"] = [s / o for o, s in zip(ones, spreads)]
        report["non2xx"] = errors
        report["rss_after_load_mib"] = rss_kib(node.pid) / 1024
        # What a scrape of /metrics costs with every spread app loaded.
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=60) as r:
            exposition = r.read()
        report["metrics_scrape"] = {
            "seconds": time.perf_counter() - t0,
            "bytes": len(exposition),
            "series": sum(1 for l in exposition.split(b"\n") if l and not l.startswith(b"#")),
        }
        # The ratio against the number of apps, each count alternated with
        # one app twice.
        curve = {}
        for n in [int(x) for x in a.curve.split(",") if x.strip()]:
            assert n <= a.spread, "curve counts go up to --spread"
            n_lua = host_script(f"curve-{n}.lua", n)
            wrk(url, n_lua, 2, 32, 1)
            pairs = [(wrk(url, one_lua, 2, 32, a.duration)[0], wrk(url, n_lua, 2, 32, a.duration)[0])
                     for _ in range(2)]
            curve[n] = sum(s for _, s in pairs) / sum(o for o, _ in pairs)
        if curve:
            report["spread_curve"] = curve
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=60)

        # 7. Pod per app: one wasmtime serve process per app.
        if a.wasmtime:
            procs, rss = [], []
            try:
                for i in range(a.pod_apps):
                    path = os.path.join(work, f"pod{i}.wasm")
                    open(path, "wb").write(comps[i])
                    p = free_port()
                    proc = subprocess.Popen([a.wasmtime, "serve", "-Scli", f"--addr=127.0.0.1:{p}", path],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    procs.append((proc, p))
                for proc, p in procs:
                    for _ in range(3000):
                        try:
                            st, _, _ = get(p, "x")
                            if st == 200:
                                break
                        except Exception:
                            time.sleep(0.01)
                time.sleep(1)
                rss = [rss_kib(proc.pid) / 1024 for proc, _ in procs]
            finally:
                for proc, _ in procs:
                    proc.kill()
                    proc.wait()
            report["pod_per_app"] = {"processes": len(rss), "rss_mib_mean": statistics.mean(rss),
                                     "rss_mib_total": sum(rss)}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    lines = [
        f"Machine: {report['machine']}; {a.apps} distinct apps (each its own greeting in its data segment).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| deploy (upload + compile + record), {a.workers} clients | {report['deploy_seconds']:.0f} s, {report['deploys_per_second']:.1f} apps/s |",
        f"| node RSS right after deploying all | {report['rss_after_deploy_mib']:.0f} MiB |",
        f"| restart (`kill -9`) until /readyz | {report['restart_ready_seconds']:.2f} s |",
        f"| restart until the first 200 | {report['restart_first_200_seconds']:.2f} s |",
        f"| node RSS, all apps deployed and idle | {report['rss_idle_mib']:.0f} MiB ({report['rss_idle_mib'] * 1024 / a.apps:.1f} KiB per app) |",
        f"| first request to an unloaded app, p50 / p99 ({a.first_requests} apps) | {report['first_request_ms']['p50']:.2f} / {report['first_request_ms']['p99']:.2f} ms |",
        f"| second request, p50 / p99 | {report['second_request_ms']['p50']:.2f} / {report['second_request_ms']['p99']:.2f} ms |",
        f"| node RSS after loading {a.first_requests} apps | {report['rss_after_first_requests_mib']:.0f} MiB, of which private {report['anon_after_first_requests_mib']:.0f} MiB (the rest: mapped artifacts, page cache) |",
        f"| requests/s, all on one app (wrk -t2 -c32) | {report['rps_one_app']:.0f} |",
        f"| requests/s, spread over {a.spread} apps | {report['rps_spread']:.0f} (ratio {report['spread_ratio']:.2f}) |",
        f"| non-2xx answers under load | {report['non2xx']} |",
        f"| `/metrics` with {a.spread} apps loaded | {report['metrics_scrape']['series']} series, "
        f"{report['metrics_scrape']['bytes'] / 1e6:.1f} MB, {report['metrics_scrape']['seconds'] * 1e3:.0f} ms |",
    ]
    if "spread_curve" in report:
        lines.append("| spread ratio by number of apps | " + ", ".join(
            f"{n}: {r:.2f}" for n, r in report["spread_curve"].items()) + " |")
    if "pod_per_app" in report:
        pp = report["pod_per_app"]
        lines.append(f"| pod per app: `wasmtime serve` per app, {pp['processes']} processes | {pp['rss_mib_mean']:.1f} MiB each, {pp['rss_mib_total']:.0f} MiB in all |")
    text = "\n".join(lines)
    print(text)
    os.makedirs(a.out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    open(os.path.join(a.out, f"node-{stamp}.md"), "w").write(text + "\n")
    open(os.path.join(a.out, f"node-{stamp}.json"), "w").write(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()

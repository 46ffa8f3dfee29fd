#!/usr/bin/env python3
"""First request to apps of several languages on one `wasmops node`, after a
restart (kill -9) and after an idle unload. See bench/node_first.sh."""
import argparse, os, shutil, signal, statistics, subprocess, sys, tempfile, time
import http.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_bench as nb


def get(port, host):
    start = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", "/", headers={"Host": host})
    r = c.getresponse()
    r.read()
    c.close()
    assert r.status == 200, f"{host}: {r.status}"
    return (time.perf_counter() - start) * 1000


def run(binary, label, components, rounds, root, settle):
    d = os.path.join(root, label)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    tokens = os.path.join(d, "tokens")
    token = subprocess.run([binary, "node", "token", "--scope", "deploy", "--name", "bench",
                            "--tokens-file", tokens], capture_output=True, text=True, check=True).stdout.strip()

    def start():
        port, admin = nb.free_port(), nb.free_port()
        p = subprocess.Popen([binary, "node", "--data-dir", os.path.join(d, "data"), "--tokens-file", tokens,
                              "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
                              "--idle-unload", "1s", "--log-level", "warn"],
                             stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "log"), "ab"))
        nb.wait_ready(admin)
        return p, port, admin

    p, port, admin = start()
    env = dict(os.environ, WASMOPS_TOKEN=token)
    for lang, path in components:
        subprocess.run([binary, "deploy", path, "--name", lang, "--host", f"{lang}.bench",
                        "--node", f"http://127.0.0.1:{admin}"], env=env, check=True, capture_output=True)
    times = {lang: ([], []) for lang, _ in components}
    try:
        for _ in range(rounds):
            p.send_signal(signal.SIGKILL)
            p.wait()
            p, port, admin = start()
            time.sleep(settle)
            for lang, _ in components:
                times[lang][0].append(get(port, f"{lang}.bench"))
            # Unloaded after 1 s idle; the sweep runs about every second.
            time.sleep(3.2)
            for lang, _ in components:
                times[lang][1].append(get(port, f"{lang}.bench"))
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait()
    for lang, _ in components:
        restart, unload = times[lang]
        print(f"{label} {lang}: first request after a restart {statistics.median(restart):.2f} ms, "
              f"after an idle unload {statistics.median(unload):.2f} ms (medians of {rounds}; "
              f"{[round(x, 1) for x in restart]} / {[round(x, 1) for x in unload]})", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wasmops", required=True)
    ap.add_argument("--baseline", help="another wasmops binary, measured alternately")
    ap.add_argument("--component", action="append", required=True, help="LANG=PATH")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--settle", type=float, default=0.0,
                    help="seconds between /readyz and the first requests after a restart")
    a = ap.parse_args()
    components = [tuple(c.split("=", 1)) for c in a.component]
    with tempfile.TemporaryDirectory() as root:
        for _ in range(2 if a.baseline else 1):
            if a.baseline:
                run(a.baseline, "baseline", components, a.rounds, root, a.settle)
            run(a.wasmops, "wasmops", components, a.rounds, root, a.settle)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The Rust hello pooled, the same program with a table too large for a
pool slot (served on demand), and `wasmtime serve`, alternated; req/s, p50,
p99 and wasmops' mean instantiation."""
import argparse, os, platform, re, statistics, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_bench import Server, free_port, wrk  # noqa: E402


def leb(b, i):
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i


def put(v):
    out = bytearray()
    while True:
        x = v & 0x7F
        v >>= 7
        if v == 0:
            out.append(x)
            return bytes(out)
        out.append(x | 0x80)


def sections(b, f):
    out = bytearray(b[:8])
    i = 8
    while i < len(b):
        sid = b[i]
        size, j = leb(b, i + 1)
        body = f(sid, b[j:j + size])
        out += bytes([sid]) + put(len(body)) + body
        i = j + size
    return bytes(out)


def grow_table(component, elements):
    """The component with its first core module's one table resized."""
    done = [False]

    def module(sid, body):
        if sid != 4:
            return body
        n, i = leb(body, 0)
        assert n == 1
        return bytes([1, body[i], body[i + 1] | 1]) + put(elements) + put(elements)

    def top(sid, body):
        if sid != 1 or done[0]:
            return body
        done[0] = True
        return sections(body, module)

    return sections(component, top)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wasmops", required=True)
    ap.add_argument("--wasmtime", required=True)
    ap.add_argument("--component", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=32)
    a = ap.parse_args()

    big = os.path.join(tempfile.mkdtemp(), "hello-big-table.wasm")
    with open(a.component, "rb") as f, open(big, "wb") as g:
        g.write(grow_table(f.read(), 30000))
    env = {"WASMOPS_CACHE_DIR": a.cache}
    log = ["--log-format", "json", "--log-level", "warn,wasmops=info"]
    servers = [
        Server("wasmops serve, pooled (table 96)",
               lambda p: [a.wasmops, "serve", a.component, "--listen", f"127.0.0.1:{p}", *log], env),
        Server("wasmops serve, on demand (table 30,000)",
               lambda p: [a.wasmops, "serve", big, "--listen", f"127.0.0.1:{p}", *log], env),
        Server("wasmtime serve (table 96)",
               lambda p: [a.wasmtime, "serve", "-Scli", "--addr", f"127.0.0.1:{p}", a.component]),
    ]
    rows = {s.name: [] for s in servers}
    for r in range(a.rounds):
        for s in (servers if r % 2 == 0 else list(reversed(servers))):
            s.start(free_port())
            wrk(s.url, 1, 4, 2)
            res = wrk(s.url, 2, a.connections, a.duration)
            text = s.stop()
            m = [float(x) for x in re.findall(r'"mean_instantiate_us":([\d.]+)', text)]
            res["inst"] = statistics.mean(m) if m else None
            rows[s.name].append(res)
            print(f"round {r + 1} {s.name}: {res['rps']:.0f} req/s", file=sys.stderr)
    print(f"Machine: {platform.node()} {os.cpu_count()} cores, {platform.release()}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"wrk -t2 -c{a.connections} -d{a.duration}s, {a.rounds} alternated rounds, medians\n")
    print("| server | req/s | p50 | p99 | instantiation | non-2xx |")
    print("|---|---:|---:|---:|---:|---:|")
    for n, v in rows.items():
        med = lambda k: statistics.median([x[k] for x in v])  # noqa: E731
        insts = [x["inst"] for x in v if x["inst"] is not None]
        inst = f"{statistics.median(insts):.1f} µs" if insts else "-"
        print(f"| {n} | {med('rps'):.0f} | {med('p50_us') / 1000:.2f} ms | {med('p99_us') / 1000:.2f} ms "
              f"| {inst} | {sum(x['non2xx'] for x in v)} |")


if __name__ == "__main__":
    main()

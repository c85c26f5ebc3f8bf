"""Benchmark of the embedded Consul dev agent (tuggle-agent devconsul).

Measures, on loopback:
  1. KV PUT latency over N sequential puts through one keep-alive session;
  2. with B blocking queries parked on one key: latency of other KV puts
     and gets, then how fast all B blockers wake on a write to their key.

    .venv/bin/python bench/devconsul_bench.py [--puts 2000] [--blockers 200]
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import threading
import time

import requests

from tuggle_agent.devconsul import DevCluster, Timings


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def summary(label: str, values: list[float]) -> str:
    return (
        f"{label:<34} n={len(values):<5} p50={pct(values, 0.50):6.2f}ms "
        f"p95={pct(values, 0.95):6.2f}ms p99={pct(values, 0.99):6.2f}ms max={max(values) * 1000:7.2f}ms"
    )


def timed(fn, count: int) -> list[float]:
    out = []
    for i in range(count):
        start = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - start)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--puts", type=int, default=2000)
    parser.add_argument("--blockers", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()

    with DevCluster(nodes=args.nodes, timings=Timings(query_jitter=False)) as cluster:
        port = cluster.node("node1").port
        base = f"http://127.0.0.1:{port}/v1/kv"
        session = requests.Session()
        value = b"x" * 128
        print(f"devconsul bench: {args.nodes} nodes, cpus={os.cpu_count()}, python {sys.version.split()[0]}")

        put = timed(lambda i: session.put(f"{base}/bench/k{i % 100}-{i}", data=value).raise_for_status(), args.puts)
        print(summary("KV put (idle)", put))
        get = timed(lambda i: session.get(f"{base}/bench/k{i % 100}-{i}").raise_for_status(), args.puts // 2)
        print(summary("KV get (idle)", get))

        session.put(f"{base}/bench/hot", data=b"0")
        index = session.get(f"{base}/bench/hot").headers["X-Consul-Index"]
        woke: list[float] = []
        lock = threading.Lock()

        def block() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("GET", f"/v1/kv/bench/hot?index={index}&wait=60s")
            conn.getresponse().read()
            with lock:
                woke.append(time.perf_counter())
            conn.close()

        threads = [threading.Thread(target=block, daemon=True) for _ in range(args.blockers)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while cluster.store.waiting() < args.blockers and time.monotonic() < deadline:
            time.sleep(0.01)
        print(f"blocking queries parked: {cluster.store.waiting()}")

        put_b = timed(lambda i: session.put(f"{base}/bench/busy{i}", data=value).raise_for_status(), 500)
        print(summary(f"KV put ({args.blockers} blocked)", put_b))
        get_b = timed(lambda i: session.get(f"{base}/bench/busy{i}").raise_for_status(), 500)
        print(summary(f"KV get ({args.blockers} blocked)", get_b))
        assert not woke, "unrelated writes must not wake the blockers"

        written = time.perf_counter()
        session.put(f"{base}/bench/hot", data=b"1").raise_for_status()
        for t in threads:
            t.join(30)
        wake = [w - written for w in woke]
        print(f"blockers woken by a write to their key: {len(woke)}/{args.blockers}")
        print(summary("wake latency after the write", wake))
        ok = len(woke) == args.blockers and pct(put, 0.5) <= 5.0
        print("RESULT:", "ok" if ok else "FAILED (p50 put > 5 ms or blockers missing)")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

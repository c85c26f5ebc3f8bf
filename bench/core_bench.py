"""Throughput benchmark of tuggle-agent against nginx, in the same run.

  .venv/bin/python bench/core_bench.py [--size-mib 1024] [--spread-mib 256] [--nodes 8] [--runs 3]

Reports, as medians of --runs:
  1. single-node GET of a local S-byte object: tuggle-agent vs nginx serving the same
     file (curl as the client for both, output to /dev/null) -> ratio;
  2. single-node PUT of S bytes: tuggle-agent vs copying the file with `cp` on the same
     disk (the bound for a store that must write every byte) -> ratio;
  3. CPU seconds of the tuggle-agent process per GiB served and per GiB stored;
  4. N nodes each GET an M-byte object right after a PUT on node1: time until the last
     holds a verified copy, against one node's GET of the same object in the same run.
Needs nginx (apt-get install -y nginx) and curl.  Data lives under --workdir.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path

from benchlib import MiB, copy_fsync_seconds, cpu_seconds, curl, make_file, scratch_dir, start_nginx

from tuggle_agent.harness import TuggleCluster


def median(xs):
    return statistics.median(xs)


ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--spread-mib", type=int, default=256)
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = scratch_dir("tuggle-bench-", args.workdir)
    size = args.size_mib * MiB
    src = work / "www" / "big.bin"
    src.parent.mkdir(exist_ok=True)
    make_file(src, size)
    nginx, nport = start_nginx(src.parent, work)
    rows = []
    try:
        with TuggleCluster(work / "cluster", nodes=args.nodes, settings={"log_level": "info"}) as c:
            n1 = c[0]
            pid = n1.proc.pid
            get_t, ngx_t, put_t, cp_t, cpu_get, cpu_put = [], [], [], [], [], []
            for run in range(args.runs):
                name = f"big-{run}.bin"
                cp_t.append(copy_fsync_seconds(src, work / f"cp-{run}.bin"))
                c0 = cpu_seconds(pid)
                put_t.append(curl(["-T", str(src), f"{n1.url}/{name}"]))
                cpu_put.append(cpu_seconds(pid) - c0)
                c0 = cpu_seconds(pid)
                get_t.append(curl([f"{n1.url}/{name}"]))
                cpu_get.append(cpu_seconds(pid) - c0)
                ngx_t.append(curl([f"http://127.0.0.1:{nport}/big.bin"]))
                subprocess.run(["curl", "-s", "-XDELETE", f"{n1.url}/{name}"], check=True, capture_output=True)
            gib = size / 2**30
            rows.append(("GET local object, tuggle-agent", f"{size / median(get_t) / MiB:.0f} MiB/s"))
            rows.append(("GET same file, nginx", f"{size / median(ngx_t) / MiB:.0f} MiB/s"))
            rows.append(("GET ratio tuggle/nginx", f"{median(ngx_t) / median(get_t):.2f}"))
            rows.append(("PUT, tuggle-agent", f"{size / median(put_t) / MiB:.0f} MiB/s"))
            rows.append(("copy + fsync, cp", f"{size / median(cp_t) / MiB:.0f} MiB/s"))
            rows.append(("PUT ratio tuggle/cp", f"{median(cp_t) / median(put_t):.2f}"))
            rows.append(("CPU s per GiB served (GET)", f"{median(cpu_get) / gib:.2f}"))
            rows.append(("CPU s per GiB stored (PUT)", f"{median(cpu_put) / gib:.2f}"))

            spread = args.spread_mib * MiB
            one, alln = [], []
            for run in range(args.runs):
                body_path = work / "spread.bin"
                make_file(body_path, spread)
                name = f"spread-{run}.bin"
                subprocess.run(
                    ["curl", "-sf", "-T", str(body_path), f"{n1.url}/{name}"], check=True, capture_output=True
                )
                one.append(curl([f"{c[1].url}/{name}"]))
                name2 = f"spread2-{run}.bin"
                subprocess.run(
                    ["curl", "-sf", "-T", str(body_path), f"{n1.url}/{name2}"], check=True, capture_output=True
                )
                done = {}
                t0 = time.perf_counter()

                def fetch(a):
                    curl([f"{a.url}/{name2}"])
                    done[a.name] = time.perf_counter() - t0

                threads = [threading.Thread(target=fetch, args=(a,)) for a in c.agents[1:]]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                alln.append(max(done.values()))
                for n in (name, name2):
                    subprocess.run(["curl", "-s", "-XDELETE", f"{n1.url}/{n}"], check=True, capture_output=True)
            rows.append((f"one node GETs {args.spread_mib} MiB from node1", f"{median(one):.2f} s"))
            rows.append((f"{args.nodes - 1} other nodes GET it at once: last done", f"{median(alln):.2f} s"))
            rows.append(("ratio (all / one)", f"{median(alln) / median(one):.2f}"))
    finally:
        nginx.terminate()
        nginx.wait()
    table = ["| measure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    text = (
        f"core_bench: S = {args.size_mib} MiB, {args.nodes} nodes, medians of {args.runs} runs, "
        f"{os.cpu_count()} cores\n\n" + "\n".join(table) + "\n"
    )
    print(text)
    out = ROOT / "bench" / "results" / "core_bench.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"(written to {out})")


if __name__ == "__main__":
    main()

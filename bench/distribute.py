"""Distribution benchmark: how long until every node of a cluster holds a verified copy.

  .venv/bin/python bench/distribute.py [--nodes 4,8,16] [--size-mib 32] [--rate-mib 8] [--runs 3]

For each cluster size N (node1 + N-1 receivers) and each mode, in one run of this script:
  origin             every node fetches straight from node1 (the S3 pattern: fetch-only
                     receivers, no per-source cap)
  store-and-forward  the Go tuggle's algorithm: whole copies, 3 fetchers per source
  pipelined          tuggle-agent's default: partial holders relay verified pieces, chain
Every node has fetch_rate = serve_rate = B, so S/B is the time one node needs to
receive the object at full rate, and the fluid lower bound for any N.  node1 PUTs S
bytes with ?sync; a node counts once its verified copy is in its data dir.
Reports, medians of --runs: p50 and max completion time in units of S/B, bytes node1
uploaded in units of S, and CPU seconds of the whole cluster (agents, watch handlers,
dev agent).  Prints a Markdown table and writes it to --out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from tuggle_agent.harness import TuggleCluster

ROOT = Path(__file__).resolve().parents[1]

MiB = 2**20
CLK = os.sysconf("SC_CLK_TCK")
MODES = ("origin", "store-and-forward", "pipelined")


def cpu(pid: int | str, children: bool = False) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    t = int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if children else 0)
    return t / CLK


def settings_for(mode: str, n: int, rate: str) -> tuple[dict, dict]:
    base = {
        "fetch_rate": rate,
        "serve_rate": rate,
        "log_level": "info",
        "progress_interval": "30s",
        "check_interval": "5s",
        "check_timeout": "5s",
    }  # a busy 2-core host must not flap checks
    if mode == "origin":
        base.update(relay="store-and-forward", max_fetch_per_source=n)
        return base, {f"node{i}": {"fetch_only": True} for i in range(2, n + 1)}
    base["relay"] = mode
    return base, {}


def one_run(c: TuggleCluster, name: str, body_path: Path, size: int) -> dict:
    n1 = c[0]
    served0 = requests.get(n1.url + "/_tuggle/status").json()["served_to_peers"]
    cpu0 = sum(cpu(a.proc.pid) for a in c.agents) + cpu("self", children=True)
    with open(body_path, "rb") as f:
        r = requests.put(f"{n1.url}/{name}?sync", data=f, timeout=120)
    r.raise_for_status()
    t0 = time.monotonic()
    done: dict[str, float] = {}
    pending = list(c.agents[1:])
    while pending:
        for a in list(pending):
            p = a.local_file(name)
            if p.exists() and p.stat().st_size == size:
                done[a.name] = time.monotonic() - t0
                pending.remove(a)
        if time.monotonic() - t0 > 600:
            raise SystemExit(f"timed out; missing on {[a.name for a in pending]}")
        time.sleep(0.02)
    served = requests.get(n1.url + "/_tuggle/status").json()["served_to_peers"] - served0
    cpu1 = sum(cpu(a.proc.pid) for a in c.agents) + cpu("self", children=True)
    requests.delete(f"{n1.url}/{name}").raise_for_status()
    settle(c, name)
    times = sorted(done.values())
    return {"p50": statistics.median(times), "max": times[-1], "origin_bytes": served, "cpu": cpu1 - cpu0}


def settle(c: TuggleCluster, name: str) -> None:
    """Let the DELETE's watch handlers finish before the next run, so runs don't overlap."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        busy = subprocess.run(["pgrep", "-f", f"handle-event --config {c.workdir}"], capture_output=True).stdout
        if not busy and not any(a.local_file(name).exists() for a in c.agents):
            return
        time.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", default="4,8,16")
    ap.add_argument("--size-mib", type=float, default=32)
    ap.add_argument("--rate-mib", type=float, default=8)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument(
        "--handler",
        choices=("script", "http"),
        default="script",
        help="how Consul runs the watch handlers (install-watches --handler)",
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "distribute.md"))
    args = ap.parse_args()
    size = int(args.size_mib * MiB)
    rate = f"{args.rate_mib}MiB"
    sb = size / (args.rate_mib * MiB)
    work = Path(tempfile.mkdtemp(prefix="tuggle-distribute-"))
    body = work / "object.bin"
    body.write_bytes(os.urandom(size))
    results = {}
    for n in [int(x) for x in args.nodes.split(",")]:
        for mode in args.modes.split(","):
            base, per_node = settings_for(mode, n, rate)
            with TuggleCluster(
                work / f"{mode}-{n}",
                nodes=n,
                settings=base,
                per_node=per_node,
                watches="http" if args.handler == "http" else True,
            ) as c:
                runs = []
                for i in range(args.runs):
                    runs.append(one_run(c, f"obj-{i}.bin", body, size))
                    print(
                        f"N={n:<3} {mode:<18} run {i + 1}: p50 {runs[-1]['p50'] / sb:.2f}x  "
                        f"max {runs[-1]['max'] / sb:.2f}x  origin {runs[-1]['origin_bytes'] / size:.2f}S  "
                        f"cpu {runs[-1]['cpu']:.1f}s",
                        flush=True,
                    )
            results[(n, mode)] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    lines = [
        f"S = {args.size_mib:g} MiB, B = {args.rate_mib:g} MiB/s (fetch_rate = serve_rate on every node), "
        f"S/B = {sb:.2f} s; medians of {args.runs} runs; watch handlers: {args.handler}; "
        f"{os.cpu_count()} cores, all nodes on one machine.",
        "",
        "| N | mode | p50 (×S/B) | max (×S/B) | node1 uploaded (×S) | cluster CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for (n, mode), r in results.items():
        lines.append(
            f"| {n} | {mode} | {r['p50'] / sb:.2f} | {r['max'] / sb:.2f} | "
            f"{r['origin_bytes'] / size:.2f} | {r['cpu']:.1f} |"
        )
    ns = sorted({n for n, _ in results})
    if "pipelined" in args.modes and len(ns) > 1:
        lo, hi = results[(ns[0], "pipelined")]["max"], results[(ns[-1], "pipelined")]["max"]
        lines += ["", f"pipelined max growth from N={ns[0]} to N={ns[-1]}: {100 * (hi / lo - 1):+.1f}%"]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"(written to {out})")


if __name__ == "__main__":
    main()

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

  .venv/bin/python bench/distribute.py --hetero [--runs 3]

Heterogeneous runs (pipelined, N = 8, same S and B): one node at B/4 (fetch_rate =
serve_rate = B/4), two such nodes, or one node slow only at serving (serve_rate = B/4).
Where a node lands in the chain depends on when it joins, so these runs start the
fetches one node at a time in a chosen order (a GET on each node, the next once the
previous one has announced itself as a partial holder or has a source) and put the slow
node(s) at several join positions.  Times count from the first GET.  Reports, per
scenario and position, the median and worst over --runs of: the other nodes' latest
completion and the slow node's, in units of S/B, and what node1 uploaded.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from benchlib import MiB, cpu_seconds, scratch_dir

from tuggle_agent.harness import TuggleCluster

ROOT = Path(__file__).resolve().parents[1]

MODES = ("origin", "store-and-forward", "pipelined")


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


def completion_times(agents: list, name: str, size: int, t0: float) -> dict[str, float]:
    """Seconds from t0 until each agent has its verified copy in its data dir."""
    done: dict[str, float] = {}
    pending = list(agents)
    while pending:
        for a in list(pending):
            p = a.local_file(name)
            if p.exists() and p.stat().st_size == size:
                done[a.name] = time.monotonic() - t0
                pending.remove(a)
        if time.monotonic() - t0 > 600:
            raise SystemExit(f"timed out; missing on {[a.name for a in pending]}")
        time.sleep(0.02)
    return done


def one_run(c: TuggleCluster, name: str, body_path: Path, size: int) -> dict:
    n1 = c[0]
    served0 = requests.get(n1.url + "/_tuggle/status").json()["served_to_peers"]
    cpu0 = sum(cpu_seconds(a.proc.pid) for a in c.agents) + cpu_seconds("self", children=True)
    with open(body_path, "rb") as f:
        r = requests.put(f"{n1.url}/{name}?sync", data=f, timeout=120)
    r.raise_for_status()
    t0 = time.monotonic()
    done = completion_times(c.agents[1:], name, size, t0)
    served = requests.get(n1.url + "/_tuggle/status").json()["served_to_peers"] - served0
    cpu1 = sum(cpu_seconds(a.proc.pid) for a in c.agents) + cpu_seconds("self", children=True)
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


# scenario -> (per-node settings of a slow node, how many slow nodes)
HETERO = {
    "one node at B/4": ("both", 1),
    "two nodes at B/4": ("both", 2),
    "one node serving at B/4": ("serve", 1),
}
# join positions (1 = first receiver to start) of the slow node(s) among the N-1 receivers
POSITIONS = {1: [(1,), (2,), (4,), (7,)], 2: [(1, 2), (1, 4), (3, 6)]}


def slow_settings(kind: str, rate: float) -> dict:
    slow = f"{rate / 4:g}MiB"
    return {"serve_rate": slow} if kind == "serve" else {"fetch_rate": slow, "serve_rate": slow}


def joined(c: TuggleCluster, agent, name: str) -> bool:
    """`agent`'s fetch of `name` has taken its place: its partial-holder entry is in KV,
    or it already pulls from a source."""
    _, entries = c.consul().kv.get(f"tuggle.relay/{name}/", recurse=True)
    if any(e["Key"].endswith("/" + agent.name) for e in entries or []):
        return True
    return any(f.get("source") for f in agent.fetching(name))


def hetero_run(c: TuggleCluster, name: str, body_path: Path, size: int, order: list) -> dict:
    """node1 stores the object; the receivers GET it one after another in `order`."""
    n1 = c[0]
    served0 = requests.get(n1.url + "/_tuggle/status").json()["served_to_peers"]
    with open(body_path, "rb") as f:
        requests.put(f"{n1.url}/{name}", data=f, timeout=120).raise_for_status()
    t0 = time.monotonic()
    errors: list[BaseException] = []

    def get(a) -> None:
        try:
            requests.get(f"{a.url}/{name}", timeout=600).raise_for_status()
        except BaseException as exc:  # reported after the run
            errors.append(exc)

    threads = []
    for a in order:
        t = threading.Thread(target=get, args=(a,), daemon=True)
        t.start()
        threads.append(t)
        deadline = time.monotonic() + 2
        while not joined(c, a, name) and time.monotonic() < deadline:
            time.sleep(0.005)
    done = completion_times(order, name, size, t0)
    for t in threads:
        t.join(60)
    if errors:
        raise SystemExit(f"a GET failed: {errors[0]!r}")
    served = requests.get(n1.url + "/_tuggle/status").json()["served_to_peers"] - served0
    graph = n1.get(name + "?graph").text
    requests.delete(f"{n1.url}/{name}").raise_for_status()  # no watches here: nothing to settle
    return {"done": done, "origin_bytes": served, "graph": graph}


def hetero(args, work: Path, body: Path, size: int, sb: float) -> str:
    rate = f"{args.rate_mib}MiB"
    n = 8
    lines = [
        f"Heterogeneous, pipelined, N = {n}: S = {args.size_mib:g} MiB, B = {args.rate_mib:g} MiB/s, "
        f"S/B = {sb:.2f} s; slow = {args.rate_mib / 4:g} MiB/s; {args.runs} runs per position; "
        "times from the first GET, nodes started one by one in join order.",
        "",
        "| scenario | slow at join position | others' max (×S/B) median / worst | slow node (×S/B) median / worst "
        "| node1 uploaded (×S) |",
        "|---|---|---|---|---|",
    ]
    for scenario, (kind, count) in HETERO.items():
        slow_names = [f"node{i}" for i in range(2, 2 + count)]
        per_node = {s: slow_settings(kind, args.rate_mib) for s in slow_names}
        base = {**settings_for("pipelined", n, rate)[0], "log_level": "debug"}
        with TuggleCluster(work / f"hetero-{kind}-{count}", nodes=n, settings=base, per_node=per_node) as c:
            receivers = c.agents[1:]
            slow = [a for a in receivers if a.name in slow_names]
            fast = [a for a in receivers if a.name not in slow_names]
            for positions in POSITIONS[count]:
                runs = []
                for i in range(args.runs):
                    order, fq, sq = [], list(fast), list(slow)
                    for pos in range(1, n):
                        order.append(sq.pop(0) if pos in positions else fq.pop(0))
                    r = hetero_run(c, f"h-{kind}-{count}-{'-'.join(map(str, positions))}-{i}.bin", body, size, order)
                    others = max(t for a, t in r["done"].items() if a not in slow_names) / sb
                    worst_slow = max(r["done"][s] for s in slow_names) / sb
                    runs.append((others, worst_slow, r["origin_bytes"] / size))
                    print(
                        f"{scenario:<24} positions {positions}: run {i + 1}: others max {others:.2f}x  "
                        f"slow {worst_slow:.2f}x  origin {runs[-1][2]:.2f}S  order "
                        f"{' '.join(a.name for a in order)}",
                        flush=True,
                    )
                    if args.show_graph:
                        print(r["graph"], flush=True)
                o = [r[0] for r in runs]
                s_ = [r[1] for r in runs]
                lines.append(
                    f"| {scenario} | {', '.join(map(str, positions))} | "
                    f"{statistics.median(o):.2f} / {max(o):.2f} | {statistics.median(s_):.2f} / {max(s_):.2f} | "
                    f"{statistics.median(r[2] for r in runs):.2f} |"
                )
    return "\n".join(lines) + "\n"


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
    ap.add_argument("--hetero", action="store_true", help="the heterogeneous runs (one or two slow nodes) instead")
    ap.add_argument("--scenarios", default=",".join(HETERO), help="with --hetero: which scenarios")
    ap.add_argument("--show-graph", action="store_true", help="with --hetero: print each run's ?graph")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the cluster's processes too
    size = int(args.size_mib * MiB)
    rate = f"{args.rate_mib}MiB"
    sb = size / (args.rate_mib * MiB)
    work = scratch_dir("tuggle-distribute-")
    body = work / "object.bin"
    body.write_bytes(os.urandom(size))
    if args.hetero:
        for name in list(HETERO):
            if name not in args.scenarios.split(","):
                del HETERO[name]
        text = hetero(args, work, body, size, sb)
        print("\n" + text)
        out = Path(args.out).with_name("distribute-hetero.md")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"(written to {out})")
        return
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

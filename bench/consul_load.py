"""Consul load of one rollout: HTTP requests and response-body bytes per node, by endpoint class.

  .venv/bin/python bench/consul_load.py [--nodes 4,8,16] [--objects 10,100,1000] [--quick]

For each cluster size N and each namespace size M, a fresh cluster (dev agent + N nodes,
watches installed as an operator would) whose namespace already holds M small objects:
node1 holds all of them and every other node a share (--share, default 10 %), planted
as real local copies before the agents start, so each node's first reconcile advertises
what it holds as it would after earlier rollouts (holder service tags, or whatever
holder layout the agent uses). Then node1 PUTs a 1 MiB object with `?sync` and the
run ends when every node holds it and Consul traffic is back to its idle rate.

Counted: every request each node's dev Consul agent answered (each tuggle node talks to
its own agent, and the agent's watch plans query it too, as Consul's do), with the
response-body bytes, via the dev agent's request accounting (devconsul/node/tally.py).
Idle traffic (blocking queries that time out, periodic passes) is measured for the
same number of seconds before the rollout and reported beside it, not subtracted.

Classes:
  kv watch            the watch plans' KV queries (keyprefix <ns>/ or the change-log key)
  kv objects          the nodes' own reads and writes of metadata, pieces, tombstones, change-log
  health/holders      holder lookups: /v1/health/* and any `<ns>.holders*` KV key
  coordinate          /v1/coordinate/*
  kv relay/lock/graph relay entries, fetch semaphores, graph edges, status, members
  session             /v1/session/*
  event               event fire and the event watch's list
  other               agent, catalog, status endpoints
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import requests

from tuggle_agent.harness import TuggleCluster
from tuggle_agent.harness.plant import plant_objects

NS = "tuggle"
MiB = 2**20
CLASSES = (
    "kv watch",
    "kv objects",
    "health/holders",
    "coordinate",
    "kv relay/lock/graph",
    "session",
    "event",
    "other",
)
BOOKKEEPING = (".relay/", ".lock/", ".graph/", ".status/", ".nodes/")


def classify(client: str, path: str, ns: str = NS) -> str:
    if path.startswith("/v1/kv/"):
        key = path[len("/v1/kv/") :]
        if client == "watch":
            return "kv watch"
        if key.startswith(f"{ns}.holder"):
            return "health/holders"
        if any(key.startswith(ns + b) for b in BOOKKEEPING):
            return "kv relay/lock/graph"
        return "kv objects"
    for prefix, cls in (
        ("/v1/health/", "health/holders"),
        ("/v1/coordinate/", "coordinate"),
        ("/v1/session/", "session"),
        ("/v1/event/", "event"),
    ):
        if path.startswith(prefix):
            return cls
    return "other"


_PLACEHOLDERS = [
    (re.compile(r"node\d+"), "<node>"),
    (re.compile(r"(old-\d+|rollout)\.bin"), "<name>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"[0-9a-f]{32}"), "<hex>"),
]


def shape(method: str, path: str) -> str:
    """`GET /v1/kv/tuggle.relay/<name>/<hex>/` -- a request with its names taken out
    (a KV path ending in `/` is a recursive read)."""
    for pattern, placeholder in _PLACEHOLDERS:
        path = pattern.sub(placeholder, path)
    return f"{method} {path}"


class Meter:
    """The dev agents' request tallies, summed by class: [requests, response bytes, writes]."""

    def __init__(self, c: TuggleCluster):
        if not hasattr(c.dev.node("node1"), "count_requests"):
            raise SystemExit(
                "this dev agent has no request tally; take it from branch consul-watch: git checkout consul-watch -- "
                + " ".join(
                    f"tuggle_agent/devconsul/{f}.py" for f in ("node/tally", "node/agent", "node/watch", "http/server")
                )
            )
        self.tallies = {name: c.dev.node(name).count_requests() for name in c.names()}
        self.shapes: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # all nodes: [requests, bytes]

    def take(self) -> dict[str, dict[str, list[int]]]:
        """node -> class -> [requests, response bytes, writes] since the last take()."""
        out: dict[str, dict[str, list[int]]] = {}
        for node, tally in self.tallies.items():
            by_class: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
            for (client, method, path), count in tally.take().items():
                row = by_class[classify(client, path)]
                row[0] += count.requests
                row[1] += count.bytes_out
                row[2] += count.requests if method in ("PUT", "POST", "DELETE") else 0
                s = self.shapes[shape(method, path)]
                s[0] += count.requests
                s[1] += count.bytes_out
            out[node] = dict(by_class)
        return out


def add(total: dict, more: dict) -> None:
    for node, by_class in more.items():
        for cls, counts in by_class.items():
            row = total.setdefault(node, {}).setdefault(cls, [0, 0, 0])
            for i, v in enumerate(counts):
                row[i] += v


def requests_in(counts: dict) -> int:
    return sum(row[0] for by_class in counts.values() for row in by_class.values())


def plant(c: TuggleCluster, m: int, share: float) -> None:
    """M small objects in KV, held by node1 and, for the first share*M of them, by every
    node: real local copies with sidecars (harness/plant.py, which writes KV by txn)."""
    shared = round(m * share)
    plant_objects(c, m, lambda i: c.names() if i < shared else ["node1"], ns=NS)


def rollout(c: TuggleCluster, body: bytes, idle_window: float, settle: float, timeout: float) -> dict:
    meter = Meter(c)
    meter.take()
    time.sleep(idle_window)
    idle = meter.take()
    meter.shapes.clear()
    name = "rollout.bin"
    t0 = time.monotonic()
    r = requests.put(f"{c[0].url}/{name}?sync", data=body, timeout=120)
    r.raise_for_status()
    total: dict = {}
    pending = list(c.agents[1:])
    while pending:
        pending = [
            a for a in pending if not (a.local_file(name).exists() and a.local_file(name).stat().st_size == len(body))
        ]
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"timed out; missing on {[a.name for a in pending]}\n{c.logs()}")
        time.sleep(0.05)
    held_after = time.monotonic() - t0
    # Then until a whole `settle` window costs no more than idling does.
    idle_rate = requests_in(idle) / idle_window
    while True:
        add(total, meter.take())
        time.sleep(settle)
        window = meter.take()
        add(total, window)
        if requests_in(window) <= idle_rate * settle * 1.5 + 1 or time.monotonic() - t0 > timeout:
            break
    return {
        "total": total,
        "idle": idle,
        "idle_window": idle_window,
        "held_after": held_after,
        "elapsed": time.monotonic() - t0,
        "shapes": dict(meter.shapes),
    }


def per_node(counts: dict, n: int) -> dict[str, tuple[float, float, float]]:
    """class -> (mean requests, KiB and writes per node)."""
    out = {}
    for cls in CLASSES:
        rows = [counts[node].get(cls, [0, 0, 0]) for node in counts]
        out[cls] = (sum(r[0] for r in rows) / n, sum(r[1] for r in rows) / n / 1024, sum(r[2] for r in rows) / n)
    return out


def run_one(n: int, m: int, share: float, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="consul-load-") as tmp:
        settings = {"log_level": "info", "progress_interval": "30s", "check_interval": "5s", "check_timeout": "5s"}
        with TuggleCluster(
            Path(tmp), nodes=n, settings=settings, watches="http", before_agents=lambda c: plant(c, m, share)
        ) as c:
            # Every node has advertised what it holds and its watches have had their first run.
            time.sleep(args.warmup)
            body = os.urandom(MiB)
            return rollout(c, body, args.idle, args.settle, args.timeout)


def table(n: int, m: int, res: dict, detail: int = 0) -> str:
    rows = per_node(res["total"], n)
    idle = per_node(res["idle"], n)
    lines = [
        f"N = {n}, M = {m}: all held after {res['held_after']:.1f}s, counted for {res['elapsed']:.1f}s"
        f" (idle: {res['idle_window']:.0f}s before the rollout)",
        "| class | requests/node | of which writes | KiB/node | idle requests/node | idle KiB/node |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for cls in CLASSES:
        (r, k, w), (ir, ik, _) = rows[cls], idle[cls]
        if r or ir:
            lines.append(f"| {cls} | {r:.1f} | {w:.1f} | {k:.1f} | {ir:.1f} | {ik:.1f} |")
    tr, tk, tw = (sum(v[i] for v in rows.values()) for i in range(3))
    lines.append(f"| **total** | **{tr:.1f}** | **{tw:.1f}** | **{tk:.1f}** | | |")
    if detail:
        lines += ["", "| request (all nodes) | requests/node | KiB/node |", "|---|---:|---:|"]
        for what, (r, b) in sorted(res["shapes"].items(), key=lambda kv: -kv[1][1])[:detail]:
            lines.append(f"| `{what}` | {r / n:.2f} | {b / n / 1024:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="4,8,16")
    ap.add_argument("--objects", default="10,100,1000")
    ap.add_argument("--share", type=float, default=0.1, help="fraction of the M objects every node holds")
    ap.add_argument("--quick", action="store_true", help="N = 4, 8 and M = 10, 100 only")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds after start before measuring")
    ap.add_argument("--idle", type=float, default=3.0, help="seconds of idle traffic measured before the rollout")
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--detail", type=int, default=0, metavar="K", help="also list the K costliest request shapes")
    args = ap.parse_args()
    if args.quick:
        args.nodes, args.objects = "4,8", "10,100"
    grid = [(int(n), int(m)) for n in args.nodes.split(",") for m in args.objects.split(",")]
    summary = [
        "| N | M | requests/node | writes/node | KiB/node | kv watch KiB/node | kv objects KiB/node "
        "| health/holders KiB/node | coordinate KiB/node | relay/lock/graph KiB/node |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, m in grid:
        t0 = time.monotonic()
        res = run_one(n, m, args.share, args)
        print(table(n, m, res, args.detail), f"\n(cluster run {time.monotonic() - t0:.0f}s)\n", flush=True)
        rows = per_node(res["total"], n)
        tr, tk, tw = (sum(v[i] for v in rows.values()) for i in range(3))
        kib = " | ".join(
            f"{rows[c][1]:.1f}"
            for c in ("kv watch", "kv objects", "health/holders", "coordinate", "kv relay/lock/graph")
        )
        summary.append(f"| {n} | {m} | {tr:.1f} | {tw:.1f} | {tk:.1f} | {kib} |")
    print("\n".join(summary))


if __name__ == "__main__":
    sys.exit(main())

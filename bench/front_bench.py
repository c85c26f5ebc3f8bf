"""What hostile or unlucky clients cost the HTTP front, measured on a real node.

  .venv/bin/python bench/front_bench.py [--runs 3] [--idle 300] [--slow 70]

Prints, as medians of --runs (one 2-node cluster from tuggle_agent.harness):
  1. for each refusal decided on the request line and headers (403 not in write_allow,
     409 existing name, 400 bad name, 405 fetch-only node, 413 above max_upload_size) of
     a PUT announcing 300 MB: body bytes the client could send before the answer, and
     whether the connection was then closed (the bound: 0 bytes, closed);
  2. /?ping latency unloaded, while --idle connections are held (half of them stopped in
     the middle of their headers), and while --slow readers posing as peers hold
     responses open (the bound: the unloaded latency).
The same probes (tuggle_agent.harness.probes) back tests/cluster/test_front_limits.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from tuggle_agent.harness import TuggleCluster
from tuggle_agent.harness.probes import (
    answer_before_body,
    idle_connections,
    ping_latencies,
    slow_peer_readers,
    summary_ms,
)

MiB = 2**20
REFUSALS = [  # (case, node index, path, source address)
    ("403 outside write_allow", 0, "/new-name", "127.0.0.2"),
    ("409 existing name", 0, "/exists.bin", "127.0.0.1"),
    ("400 bad name", 0, "/.bad", "127.0.0.1"),
    ("405 fetch-only node", 1, "/new-name", "127.0.0.1"),
    ("413 above max_upload_size", 0, "/too-big", "127.0.0.1"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--idle", type=int, default=300)
    ap.add_argument("--slow", type=int, default=70)
    args = ap.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        TuggleCluster(
            Path(tmp),
            nodes=2,
            settings={"max_upload_size": "400MiB", "log_level": "info"},
            per_node={"node1": {"write_allow": ["127.0.0.1/32"]}, "node2": {"fetch_only": True}},
        ) as c,
    ):
        c[0].put("exists.bin", b"here")
        c[0].put("peer.bin", os.urandom(16 * MiB))
        c[1].get("peer.bin")
        print(f"front_bench: medians of {args.runs} runs, 2 cores\n")
        print("| refusal of a PUT announcing 300 MB (500 MB for 413) | body bytes sent before the answer | closed |")
        print("|---|---|---|")
        for case, node, path, source in REFUSALS:
            size = 500 * MiB if case.startswith("413") else 300 * MiB  # max_upload_size is 400 MiB
            results = [
                answer_before_body(c[node].port, f"PUT {path} HTTP/1.1\r\nHost: x\r\n", size, source)
                for _ in range(args.runs)
            ]
            sent = statistics.median(r[1] for r in results)
            closed = all(r[2] for r in results)
            lines = {r[0] for r in results}
            print(f"| {case} ({', '.join(sorted(lines))}) | {sent / MiB:.2f} MiB | {'yes' if closed else 'NO'} |")
        print("\n| /?ping while | latency |")
        print("|---|---|")
        print(f"| nothing else | {summary_ms(ping_latencies(c[1].url, 20 * args.runs))} |")
        with idle_connections(c[1].port, args.idle):
            print(
                f"| {args.idle} idle / half-sent connections | {summary_ms(ping_latencies(c[1].url, 20 * args.runs))} |"
            )
        with slow_peer_readers(c[1].port, "peer.bin", args.slow) as statuses:
            served = statuses.count("200")
            print(
                f"| {args.slow} slow readers posing as peers ({served} served, {statuses.count('503')} refused 503) "
                f"| {summary_ms(ping_latencies(c[1].url, 20 * args.runs))} |"
            )


if __name__ == "__main__":
    main()

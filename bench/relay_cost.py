"""CPU cost per byte of tuggle-agent: relay, PUT and local GET, against their floors, in one run.

  .venv/bin/python bench/relay_cost.py [--nodes 4] [--size-mib 256] [--runs 3]

Prints, as medians of --runs (one cluster from tuggle_agent.harness, unlimited rates,
pipelined relay, watch handlers over HTTP, log_level info):
  1. relay: node1 PUTs S bytes with ?sync; the other N-1 nodes fetch it (a chain: each
     receives, verifies, writes and relays once).  CPU seconds of the whole cluster -- every
     agent process with its children, plus this process (the Consul dev agent runs here) --
     from the PUT's answer until the last node holds its verified copy, per GiB received
     (S x (N-1)); also the receivers' own CPU per GiB each received;
  2. PUT: S bytes with curl -T to node1 against cp + fsync of the same file on the same
     disk (throughput ratio), and node1's CPU per GiB stored;
  3. local GET: curl of node1's copy against nginx serving the same file (throughput
     ratio), and node1's CPU per GiB served;
  4. the hashing floor: CPU seconds per GiB of SHA-256 (and BLAKE3 when the `blake3`
     package is installed) over S bytes in memory, 1 MiB updates.
CPU seconds are the stabler figures on a shared machine; wall-clock ratios move with load.
CPU is split into user (hashing, Python: what the agent's code decides) and system (socket
and page-cache copies, ext4, fsync: mostly the price of receiving and writing every byte;
on a VM it moves with how recently the page-cache memory was touched).
To measure another checkout's agents with this script, run it with that checkout's
interpreter (the harness starts the `tuggle-agent` next to it).
Needs nginx (make bench-deps, or apt-get install -y nginx) and curl.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import statistics
import subprocess
import time
from pathlib import Path

import requests
from benchlib import GiB, MiB, copy_fsync_seconds, cpu_seconds, cpu_split, curl, make_file, scratch_dir, start_nginx

from tuggle_agent.harness import TuggleCluster, wait_until

SETTINGS = {
    "log_level": "info",
    "progress_interval": "60s",
    "check_interval": "5s",  # a busy 2-core host must not flap checks
    "check_timeout": "5s",
    "max_upload_size": "64GiB",
}


def tree_cpu(c: TuggleCluster, agents: list | None = None) -> tuple[float, float]:
    """(user, system) CPU s of the agents (all, with this process: the dev agent runs here)."""
    parts = [cpu_split(a.proc.pid, children=True) for a in (agents if agents is not None else c.agents)]
    if agents is None:
        parts.append(cpu_split("self", children=True))
    return sum(u for u, _ in parts), sum(s for _, s in parts)


def relay_run(c: TuggleCluster, name: str, body: Path, size: int) -> dict[str, float]:
    """CPU s (user, system) of the cluster and of the receivers over one ?sync distribution."""
    with open(body, "rb") as f:
        requests.put(f"{c[0].url}/{name}?sync", data=f, timeout=600).raise_for_status()
    total0, recv0 = tree_cpu(c), tree_cpu(c, c.agents[1:])
    pending = list(c.agents[1:])

    def landed() -> bool:
        for a in list(pending):
            p = a.local_file(name)
            if p.exists() and p.stat().st_size == size:
                pending.remove(a)
        return not pending

    wait_until(landed, timeout=600, interval=0.02, what=f"{name} on every node")
    total, recv = tree_cpu(c), tree_cpu(c, c.agents[1:])
    requests.delete(f"{c[0].url}/{name}", timeout=60).raise_for_status()
    wait_until(lambda: not any(a.local_file(name).exists() for a in c.agents), timeout=60, what="delete everywhere")
    return {
        "total": sum(total) - sum(total0),
        "user": total[0] - total0[0],
        "system": total[1] - total0[1],
        "recv": sum(recv) - sum(recv0),
    }


def hash_floor(size: int, algo: str) -> float:
    """CPU seconds per GiB to hash `size` bytes in 1 MiB updates."""
    if algo == "blake3":
        import blake3  # type: ignore[import-not-found]

        h = blake3.blake3()
    else:
        h = hashlib.new(algo)
    block = os.urandom(MiB)
    t0 = time.process_time()
    for _ in range(size // MiB):
        h.update(block)
    h.digest()
    return (time.process_time() - t0) / (size / GiB)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed rounds first: on a VM, memory the guest has never touched costs several times "
        "more to fill the first time (page cache for the copies), which says nothing about steady state",
    )
    ap.add_argument("--workdir", default=None)
    ap.add_argument(
        "--set", action="append", default=[], help="extra agent setting key=value (e.g. verify_on_serve=true)"
    )
    args = ap.parse_args()
    size = args.size_mib * MiB
    gib = size / GiB
    work = scratch_dir("tuggle-relay-cost-", args.workdir)
    www = work / "www"
    www.mkdir(parents=True, exist_ok=True)
    src = www / "object.bin"
    make_file(src, size)
    settings = {**SETTINGS, **dict(kv.split("=", 1) for kv in args.set)}
    floors = {"sha256": statistics.median(hash_floor(size, "sha256") for _ in range(args.runs))}
    with contextlib.suppress(ImportError):
        floors["blake3"] = statistics.median(hash_floor(size, "blake3") for _ in range(args.runs))
    nginx, nport = start_nginx(www, work)
    relay: dict[str, list[float]] = {"total": [], "user": [], "system": [], "recv": []}
    put_t, cp_t, put_cpu, put_user, get_t, ngx_t, get_cpu = ([] for _ in range(7))
    try:
        with TuggleCluster(work / "cluster", nodes=args.nodes, settings=settings, watches="http") as c:
            n1 = c[0]
            pid = n1.proc.pid
            received = gib * (args.nodes - 1)
            for run in range(args.warmup + args.runs):
                for k, v in relay_run(c, f"relay-{run}.bin", src, size).items():
                    relay[k].append(v / received)
                print(
                    f"run {run + 1}: relay {relay['total'][-1]:.2f} CPU-s/GiB received "
                    f"(user {relay['user'][-1]:.2f}, system {relay['system'][-1]:.2f})",
                    flush=True,
                )
                name = f"put-{run}.bin"
                cp_t.append(copy_fsync_seconds(src, work / f"cp-{run}.bin"))
                c0 = cpu_split(pid, children=True)
                put_t.append(curl(["-T", str(src), f"{n1.url}/{name}"]))
                c1 = cpu_split(pid, children=True)
                put_cpu.append((sum(c1) - sum(c0)) / gib)
                put_user.append((c1[0] - c0[0]) / gib)
                c0 = cpu_split(pid, children=True)
                get_t.append(curl([f"{n1.url}/{name}"]))
                get_cpu.append((cpu_seconds(pid, children=True) - sum(c0)) / gib)
                ngx_t.append(curl([f"http://127.0.0.1:{nport}/{src.name}"]))
                subprocess.run(["curl", "-sf", "-XDELETE", f"{n1.url}/{name}"], check=True, capture_output=True)
    finally:
        nginx.terminate()
        nginx.wait()
    # The warm-up rounds are printed above but left out of the medians.
    for series in (*relay.values(), put_t, cp_t, put_cpu, put_user, get_t, ngx_t, get_cpu):
        del series[: args.warmup]
    med = statistics.median
    rows = [
        (
            f"relay: cluster CPU s per GiB received ({args.nodes - 1} receivers, chain)",
            f"{med(relay['total']):.2f} (user {med(relay['user']):.2f}, system {med(relay['system']):.2f})",
        ),
        ("relay: receivers' own CPU s per GiB received", f"{med(relay['recv']):.2f}"),
        (
            "PUT / (cp + fsync), throughput",
            f"{med(cp_t) / med(put_t):.2f} ({size / med(put_t) / MiB:.0f} / {size / med(cp_t) / MiB:.0f} MiB/s)",
        ),
        ("PUT: node1 CPU s per GiB stored", f"{med(put_cpu):.2f} (user {med(put_user):.2f})"),
        (
            "local GET / nginx, throughput",
            f"{med(ngx_t) / med(get_t):.2f} ({size / med(get_t) / MiB:.0f} / {size / med(ngx_t) / MiB:.0f} MiB/s)",
        ),
        ("local GET: node1 CPU s per GiB served", f"{med(get_cpu):.2f}"),
    ] + [(f"hashing floor: {algo} CPU s per GiB", f"{v:.2f}") for algo, v in floors.items()]
    table = ["| measure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    extra = f", settings {dict(kv.split('=', 1) for kv in args.set)}" if args.set else ""
    print(
        f"\nrelay_cost: S = {args.size_mib} MiB, {args.nodes} nodes, unlimited rates, medians of {args.runs} runs after {args.warmup} warm-up, "
        f"{os.cpu_count()} cores{extra}\n\n" + "\n".join(table)
    )


if __name__ == "__main__":
    main()

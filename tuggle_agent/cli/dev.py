"""`tuggle-agent dev`: a whole local cluster in one command, like `consul agent -dev`.

The embedded dev agent plays Consul for N nodes; each node gets its own
`tuggle-agent serve` process, data dir and Consul config dir with the watches
written by `install-watches` — the same path an operator takes on real Consul.

The cluster is tuggle_agent.harness's, the one the tests and benchmarks run; this
command adds what a person at a terminal needs: the ports checked before anything
starts, "ready" only once every node answers and passes its check, a banner with
examples, and a non-zero exit naming the node (and its log) if one dies.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from ..harness import ClusterError, PortsTaken, TuggleCluster, WaitTimeout


def banner(cluster: TuggleCluster) -> str:
    rows = ["node     tuggle-agent            consul (dev agent)      data"]
    for a in cluster.agents:
        rows.append(
            f"{a.name:<8} http://127.0.0.1:{a.port:<6} http://127.0.0.1:{cluster.dev.node(a.name).port:<6} {a.data_dir}"
        )
    p1, p2 = cluster[0].port, cluster[min(1, cluster.size - 1)].port
    examples = f"""
Try it:
  curl -T /etc/os-release http://127.0.0.1:{p1}/os-release                       # store on node1 (PUT)
  curl http://127.0.0.1:{p1}/                                                    # list objects
  curl -I http://127.0.0.1:{p2}/os-release                                       # metadata, from any node
  curl http://127.0.0.1:{p2}/os-release                                          # node{1 + p2 - p1} fetches it from node1
  curl 'http://127.0.0.1:{p1}/os-release?graph'                                  # who fetched from whom (DOT)
  curl -T /etc/hostname 'http://127.0.0.1:{p1}/hostname?sync'                   # store + prefetch everywhere
  curl -XDELETE http://127.0.0.1:{p2}/os-release                                 # delete everywhere
With the client (talks to one node's agent; --agent or TUGGLE_ADDR picks it):
  export TUGGLE_ADDR=http://127.0.0.1:{p1}
  tuggle-agent put /etc/os-release release.txt --sync --wait all --timeout 1m   # store, sync, gate on it
  tuggle-agent status release.txt                                              # who holds it, per node
  tuggle-agent ls                                                              # objects and holder counts
  tuggle-agent get release.txt -o /tmp/release.txt --agent http://127.0.0.1:{p2}   # verified download
  tuggle-agent rm release.txt                                                  # delete everywhere
Web console: http://127.0.0.1:{p1}/_tuggle/ui  (objects, rollouts, fetch graph, nodes; any node serves it)
Logs: {cluster.workdir}/node*/agent.log   Stop: Ctrl-C"""
    return "\n".join(rows) + "\n" + examples


def run_until_stopped(cluster: TuggleCluster, stop: threading.Event) -> bool:
    """Watch the nodes until `stop` is set; False as soon as one has died (reported)."""
    while not stop.wait(1):
        dead = cluster.dead_agents()
        for a in dead:
            click.echo(a.exit_report(), err=True)
        if dead:
            return False
    return True


@click.command("dev")
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 64))
@click.option("--port", default=8900, show_default=True, help="tuggle-agent port of node1 (node i: port+i-1).")
@click.option("--consul-port", default=8500, show_default=True, help="Dev agent HTTP port of node1 (node i: +i-1).")
@click.option("--zones", default=1, show_default=True, type=click.IntRange(1, 64), help="Spread nodes over zones.")
@click.option(
    "--workdir",
    default=".dev",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Per-node data dirs, configs and logs.",
)
def dev_command(nodes, port, consul_port, zones, workdir):
    """Run a local cluster: the embedded Consul dev agent plus one tuggle-agent per node.

    Exits non-zero if a port is taken, a node fails to start, or a node dies while
    running (its name and log file are printed).

    \b
    Examples:
      tuggle-agent dev                          # 3 nodes: tuggle on 8900-8902, Consul API on 8500-8502
      tuggle-agent dev --nodes 8 --zones 2
      tuggle-agent dev --port 9900 --consul-port 9500 --workdir /tmp/tuggle-dev
    """
    # Consul's own timings (fast=False), with 2 s checks so a node becomes usable
    # (passing, so a source) within seconds rather than the 10 s default interval.
    cluster = TuggleCluster(
        Path(workdir),
        nodes=nodes,
        zones=zones,
        watches=True,
        port=port,
        consul_port=consul_port,
        fast=False,
        settings={"check_interval": "2s"},
        stop_grace=10,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    try:
        with cluster:
            click.echo(banner(cluster))
            click.echo(f"tuggle dev cluster ready: {nodes} nodes")
            all_lived = run_until_stopped(cluster, stop)
    except PortsTaken as exc:  # nothing was started
        raise click.ClickException(f"cannot start: {exc}; choose other ports with --port / --consul-port") from exc
    except (ClusterError, WaitTimeout) as exc:  # a node failed to start, or hung when stopped
        click.echo("stopped")
        raise click.ClickException(f"{exc}\nLogs: {cluster.workdir}/node*/agent.log") from exc
    click.echo("stopped")
    if not all_lived:
        raise click.exceptions.Exit(1)

"""`tuggle-agent dev`: a whole local cluster in one command, like `consul agent -dev`.

The embedded dev agent plays Consul for N nodes; each node gets its own
`tuggle-agent serve` process, data dir and Consul config dir with the watches
written by `install-watches` — the same path an operator takes on real Consul.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import click
import requests
import yaml

from ..devconsul import DevCluster, Timings


def _agent_bin() -> str:
    return str(Path(sys.executable).parent / "tuggle-agent")


class LocalCluster:
    def __init__(self, nodes: int, port: int, consul_port: int, workdir: Path, zones: int = 1,
                 settings: dict | None = None):
        self.nodes = nodes
        self.port = port
        self.consul_port = consul_port
        self.workdir = workdir.absolute()
        self.zones = zones
        self.settings = settings or {}
        self.procs: list[subprocess.Popen] = []
        self.dev: DevCluster | None = None

    def node_dir(self, i: int) -> Path:
        return self.workdir / f"node{i}"

    def prepare(self) -> None:
        for i in range(1, self.nodes + 1):
            d = self.node_dir(i)
            d.mkdir(parents=True, exist_ok=True)
            cfg_path = d / "tuggle.yaml"
            cfg_path.write_text(yaml.safe_dump({
                "data_dir": str(d / "data"), "bind": "127.0.0.1", "port": self.port + i - 1,
                "consul": {"address": f"127.0.0.1:{self.consul_port + i - 1}"},
                "check_interval": "2s", **self.settings}))
            (d / "consul.d").mkdir(exist_ok=True)

    def start(self) -> None:
        self.prepare()
        env = {"PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
        self.dev = DevCluster(nodes=self.nodes, http_port=self.consul_port, zones=self.zones, timings=Timings(),
                              config_dirs=[str(self.workdir / "{node}" / "consul.d")], env=env)
        self.dev.__enter__()
        for i in range(1, self.nodes + 1):
            log = open(self.node_dir(i) / "agent.log", "ab")
            self.procs.append(subprocess.Popen(
                [_agent_bin(), "serve", "--config", str(self.node_dir(i) / "tuggle.yaml")],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            log.close()
        deadline = time.monotonic() + 60
        for i in range(1, self.nodes + 1):
            url = f"http://127.0.0.1:{self.port + i - 1}/?ping"
            while True:
                if self.procs[i - 1].poll() is not None:
                    raise click.ClickException(f"node{i}'s tuggle-agent exited; see {self.node_dir(i) / 'agent.log'}")
                try:
                    if requests.get(url, timeout=1).status_code == 200:
                        break
                except requests.exceptions.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise click.ClickException(f"node{i} did not answer {url} within 60s")
                time.sleep(0.1)
        # Ready means usable: every node's health check passes, so it can be a source.
        consul = self.dev.consul("node1")
        while len(consul.health.service("tuggle", passing=True)[1]) < self.nodes:
            if time.monotonic() > deadline:
                raise click.ClickException("not every node's health check passed within 60s; see the agent logs")
            time.sleep(0.1)
        # Wire the watches in last, as an operator would once the agent runs, so their
        # first firing finds `serve` up.
        for i in range(1, self.nodes + 1):
            d = self.node_dir(i)
            subprocess.run([_agent_bin(), "install-watches", "--consul-config-dir", str(d / "consul.d"),
                            "--config", str(d / "tuggle.yaml"), "--reload"], check=True, capture_output=True)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        if self.dev is not None:
            self.dev.__exit__(None, None, None)

    def banner(self) -> str:
        rows = ["node     tuggle-agent            consul (dev agent)      data"]
        for i in range(1, self.nodes + 1):
            rows.append(f"node{i:<4} http://127.0.0.1:{self.port + i - 1:<6} http://127.0.0.1:{self.consul_port + i - 1:<6} "
                        f"{self.node_dir(i) / 'data'}")
        p1, p2 = self.port, self.port + min(1, self.nodes - 1)
        examples = f"""
Try it:
  curl -T /etc/os-release http://127.0.0.1:{p1}/os-release                       # store on node1 (PUT)
  curl http://127.0.0.1:{p1}/                                                    # list objects
  curl -I http://127.0.0.1:{p2}/os-release                                       # metadata, from any node
  curl http://127.0.0.1:{p2}/os-release                                          # node{1 + p2 - p1} fetches it from node1
  curl 'http://127.0.0.1:{p1}/os-release?graph'                                  # who fetched from whom (DOT)
  curl -T /etc/hostname 'http://127.0.0.1:{p1}/hostname?sync'                   # store + prefetch everywhere
  curl -XDELETE http://127.0.0.1:{p2}/os-release                                 # delete everywhere
Logs: {self.workdir}/node*/agent.log   Stop: Ctrl-C"""
        return "\n".join(rows) + "\n" + examples


@click.command("dev")
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 64))
@click.option("--port", default=8900, show_default=True, help="tuggle-agent port of node1 (node i: port+i-1).")
@click.option("--consul-port", default=8500, show_default=True, help="Dev agent HTTP port of node1 (node i: +i-1).")
@click.option("--zones", default=1, show_default=True, type=click.IntRange(1, 64), help="Spread nodes over zones.")
@click.option("--workdir", default=".dev", show_default=True, type=click.Path(file_okay=False),
              help="Per-node data dirs, configs and logs.")
def dev_command(nodes, port, consul_port, zones, workdir):
    """Run a local cluster: the embedded Consul dev agent plus one tuggle-agent per node.

    \b
    Examples:
      tuggle-agent dev                          # 3 nodes: tuggle on 8900-8902, Consul API on 8500-8502
      tuggle-agent dev --nodes 8 --zones 2
      tuggle-agent dev --port 9900 --consul-port 9500 --workdir /tmp/tuggle-dev
    """
    cluster = LocalCluster(nodes, port, consul_port, Path(workdir), zones)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    signal.signal(signal.SIGINT, lambda *a: done.set())
    try:
        cluster.start()
        click.echo(cluster.banner())
        click.echo(f"tuggle dev cluster ready: {nodes} nodes", err=False)
        while not done.wait(1):
            for i, p in enumerate(cluster.procs, 1):
                if p.poll() is not None:
                    click.echo(f"node{i}'s tuggle-agent exited with {p.returncode}; see its agent.log", err=True)
                    done.set()
    finally:
        cluster.stop()
        click.echo("stopped")

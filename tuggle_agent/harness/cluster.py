"""A whole tuggle cluster on one machine: the embedded Consul dev agent (a DevCluster
in this process) and one `tuggle-agent serve` subprocess per node. The tests run
against it, bench/ measures it and `tuggle-agent dev` is it behind a command line.

Node i is `node<i>`; its files live in <workdir>/node<i>/: tuggle.yaml, data/,
agent.log (the agent's stdout and stderr, appended) and consul.d/ (the watches
`install-watches` writes, when the cluster has watches).

Ports are either fixed (tuggle-agent of node i on port+i-1, its dev agent on
consul_port+i-1: `tuggle-agent dev`), checked free before anything starts, or picked
free at start (tests and bench, which run side by side).

`fast=True` (tests, bench) runs the dev agent with test timings and every node with
1 s health checks and debug logs; `fast=False` (`dev`) keeps Consul's timings and the
agent's own defaults, as a laptop demo should look.

Stopping sends SIGTERM and allows `stop_grace` seconds. An agent that had to be
SIGKILLed after that did not shut down as it must on real hosts (systemd would kill it
too): the cluster records it in `forced_kills`, and leaving the `with` block raises
UncleanStop with the agent's log tail, so the hang is reported instead of hidden.
`Agent.kill()` is a crash on purpose and is not recorded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import requests
import yaml

from ..devconsul import DevCluster, Timings
from ..objects.names import object_id
from ..watches.consul_config import agent_executable
from .wait import HOST, free_port, port_is_free, wait_until

# What tests want from every node: health checks that turn within a second, progress
# lines they can assert on, and logs detailed enough to debug a failure from.
FAST_AGENT_SETTINGS = {"check_interval": "1s", "check_timeout": "1s", "progress_interval": "1s", "log_level": "debug"}
LOG_TAIL = 6000  # characters of an agent's log quoted in a failure


class ClusterError(AssertionError):
    """The cluster cannot be used as asked: a port is taken, a node's process exited,
    a node needed SIGKILL to stop. The message names the node and its log file.

    An AssertionError so that it ends a `wait_until` at once (see harness.wait) and a
    test reads it as a failure."""


class PortsTaken(ClusterError):
    """Fixed ports that something else already holds; nothing was started."""


class UncleanStop(ClusterError):
    """An agent did not exit within the grace period after SIGTERM and was killed."""


def agent_command(*args: str) -> list[str]:
    """argv for the `tuggle-agent` of this installation: the one executable path used by
    the harness, the tests and `dev` (the same one install-watches writes into consul.d)."""
    return [agent_executable(), *args]


def agent_env() -> dict[str, str]:
    """Environment for processes the harness starts: this interpreter's bin first on PATH
    (hook scripts' `#!/usr/bin/env python3`, watch handlers), and no CONSUL_HTTP_ADDR,
    which would override the dev-agent address each node's config names (nor
    CONSUL_HTTP_TOKEN / CONSUL_HTTP_TOKEN_FILE, which would override its token)."""
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    for var in ("CONSUL_HTTP_ADDR", "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE"):
        env.pop(var, None)
    return env


class Agent:
    """One node's `tuggle-agent serve` process, its config and its files."""

    def __init__(self, cluster: TuggleCluster, index: int, settings: dict, port: int | None = None):
        self.cluster = cluster
        self.index = index
        self.name = f"node{index + 1}"
        self.fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self.dir = cluster.workdir / self.name
        self.data_dir = self.dir / "data"
        self.config_path = self.dir / "tuggle.yaml"
        self.log_path = self.dir / "agent.log"
        self.proc: subprocess.Popen | None = None
        self.settings = settings
        self._stopping = False  # set by stop()/kill(): an exit we asked for
        self.write_config()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def consul_addr(self) -> str:
        return self.cluster.dev.node(self.name).http_addr

    def write_config(self, **changes) -> None:
        """(Re)write tuggle.yaml; `changes` stay for later restarts."""
        self.settings.update(changes)
        self.dir.mkdir(parents=True, exist_ok=True)
        defaults = FAST_AGENT_SETTINGS if self.cluster.fast else {}
        # consul.* keys given in settings merge with the harness's own (the dev agent's
        # address; with ACLs, the master token unless the test gives a token).
        consul = {"address": self.consul_addr}
        if self.cluster.master_token:
            consul["token"] = self.cluster.master_token
        consul.update(self.settings.get("consul") or {})
        cfg = {
            "data_dir": str(self.data_dir),
            "port": self.port,
            "bind": HOST,
            **defaults,
            **self.settings,
            "consul": consul,
        }
        self.config_path.write_text(yaml.safe_dump(cfg))

    # -- process -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def died(self) -> bool:
        """The process ended without stop() or kill(): a crash to report."""
        return self.proc is not None and not self._stopping and self.proc.poll() is not None

    def start(self, wait: bool = True) -> None:
        self._stopping = False
        with open(self.log_path, "ab") as log:
            # Its own session, so that stop() reaches the hooks it runs too.
            self.proc = subprocess.Popen(
                agent_command("serve", "--config", str(self.config_path)),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=agent_env(),
                start_new_session=True,
            )
        if wait:
            self.wait_ready()

    def exit_report(self) -> str:
        assert self.proc is not None  # only reported for a started agent
        return f"{self.name}'s tuggle-agent exited with {self.proc.returncode}; its log is {self.log_path}"

    def _answers_ping(self) -> bool:
        assert self.proc is not None  # polled by wait_ready() after start()
        if self.proc.poll() is not None:
            raise ClusterError(f"{self.exit_report()}:\n{self.log_tail()}")
        return requests.get(self.url + "/?ping", timeout=1).status_code == 200

    def wait_ready(self) -> None:
        """Return once the node answers /?ping and Consul sees its check passing, so it
        can be a source."""
        for attempt in range(3):
            try:
                wait_until(self._answers_ping, 30, what=f"{self.name} to answer {self.url}/?ping")
                break
            except ClusterError:
                if self.fixed_port or attempt == 2 or "Address already in use" not in self.log():
                    raise
                # free_port() races with other processes picking ports: take another.
                self.port = free_port()
                self.write_config()
                self.start(wait=False)
        wait_until(lambda: self.cluster.passing(self.name), 15, what=f"{self.name}'s check to pass")
        wait_until(self._advertising, 15, what=f"{self.name}'s holder session and keys")

    def _advertising(self) -> bool:
        """Its holder keys are in Consul (a session needs the check passing first)."""
        status = requests.get(self.url + "/_tuggle/status", timeout=5).json()
        return bool(status.get("advertising") or status.get("fetch_only"))

    def _signal(self, sig: int) -> None:
        assert self.proc is not None  # callers check self.running first
        with contextlib.suppress(ProcessLookupError):  # exited between poll() and here: nothing to signal
            os.killpg(self.proc.pid, sig)

    def terminate(self) -> None:
        """Send SIGTERM and return; wait_stopped() finishes the stop."""
        if self.running:
            self._stopping = True
            self._signal(signal.SIGTERM)

    def wait_stopped(self, grace: float | None = None) -> None:
        """Wait `grace` seconds (the cluster's stop_grace by default) for the exit;
        past that, SIGKILL, recorded as a forced kill."""
        if self.proc is None:
            return
        grace = self.cluster.stop_grace if grace is None else grace
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait(5)
            self.cluster.forced_kills.append(
                f"{self.name}'s tuggle-agent did not exit within {grace:g}s of SIGTERM and was killed; "
                f"its log is {self.log_path}:\n{self.log_tail()}"
            )

    def stop(self) -> None:
        self.terminate()
        self.wait_stopped()

    def kill(self) -> None:
        """SIGKILL at once: a crash on purpose."""
        if self.running:
            self._stopping = True
            self._signal(signal.SIGKILL)
            assert self.proc is not None  # self.running
            self.proc.wait(5)

    def restart(self, wait: bool = True) -> None:
        self.stop()
        self.start(wait)

    def install_watches(self, handler: str = "script") -> None:
        """What an operator does: render the watches into Consul's config dir and reload.
        With ACLs the node's own token need not hold agent:write, so Consul is reloaded
        the way an operator would (`consul reload` with their own rights), not by the node."""
        acl = self.cluster.master_token is not None
        subprocess.run(
            agent_command(
                "install-watches",
                "--consul-config-dir",
                str(self.dir / "consul.d"),
                "--config",
                str(self.config_path),
                "--no-reload" if acl else "--reload",
                "--handler",
                handler,
            ),
            check=True,
            capture_output=True,
        )
        if acl:
            self.cluster.dev.reload(self.name)

    # -- what happened ---------------------------------------------------------------------
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self) -> str:
        return self.log()[-LOG_TAIL:]

    def handler_log(self) -> str:
        """What the `handle-event` processes Consul ran for this node logged."""
        p = self.data_dir / ".tuggle" / "handle-event.log"
        return p.read_text() if p.exists() else ""

    # -- conveniences ------------------------------------------------------------------------
    def get(self, name: str, **kw):
        return requests.get(f"{self.url}/{name}", timeout=kw.pop("timeout", 60), **kw)

    def put(self, name: str, data, **kw):
        return requests.put(f"{self.url}/{name}", data=data, timeout=kw.pop("timeout", 60), **kw)

    def local_file(self, name: str) -> Path:
        return self.data_dir / name

    def fetching(self, name: str) -> list[dict]:
        """This node's running fetches of `name` (bytes verified, current source)."""
        return [
            f for f in requests.get(self.url + "/_tuggle/status", timeout=5).json()["fetching"] if f["name"] == name
        ]


class TuggleCluster:
    """`with TuggleCluster(workdir, nodes=3) as c:` starts the dev agent and every node,
    returns once all answer and pass their checks (and watches are installed), and
    stops everything on exit.

    settings: tuggle.yaml keys for every node; per_node: {"node2": {...}} on top.
    watches: False, True (script handlers, as Consul runs them) or "http".
    port / consul_port: fixed base ports (node i: +i-1), else free ones.
    acl: the dev agent enforces Consul's ACLs (default deny); `master_token` (given as
    acl_master_token, else a random UUID) is the token of `consul()` and, unless
    settings / per_node give a consul.token, of every node. The dev agent's watches run
    with `agent_token` (default: the master token).
    before_agents(cluster): called once the dev agent runs and before any node starts
    (e.g. to create the ACL policies and tokens the nodes' settings name).
    """

    def __init__(
        self,
        workdir: Path,
        nodes: int = 3,
        settings: dict | None = None,
        per_node: dict | None = None,
        zones: int = 1,
        watches: bool | str = False,
        *,
        port: int | None = None,
        consul_port: int | None = None,
        fast: bool = True,
        stop_grace: float = 15.0,
        acl: bool = False,
        acl_master_token: str | None = None,
        agent_token: str | None = None,
        before_agents: Callable[[TuggleCluster], None] | None = None,
    ):
        self.workdir = Path(workdir).absolute()
        self.size = nodes
        self.watches = watches
        self.port = port
        self.consul_port = consul_port
        self.fast = fast
        self.stop_grace = stop_grace
        self.base_settings = settings or {}
        self.per_node = per_node or {}
        self.agents: list[Agent] = []
        self.forced_kills: list[str] = []
        config_dirs = [str(self.workdir / "{node}" / "consul.d")] if watches else []
        self.dev = DevCluster(
            nodes=nodes,
            http_port=consul_port,
            zones=zones,
            timings=Timings.fast() if fast else Timings(),
            config_dirs=config_dirs,
            env={"PATH": agent_env()["PATH"]},
            acl=acl,
            acl_master_token=acl_master_token,
            agent_token=agent_token,
        )
        self.master_token: str | None = self.dev.acl_master_token
        self.before_agents = before_agents

    def names(self) -> list[str]:
        return [f"node{i}" for i in range(1, self.size + 1)]

    def fixed_ports(self) -> list[tuple[int, str]]:
        """(port, what listens there) for every port fixed in advance."""
        ports = []
        for i, name in enumerate(self.names()):
            if self.port is not None:
                ports.append((self.port + i, f"{name}'s tuggle-agent"))
            if self.consul_port is not None:
                ports.append((self.consul_port + i, f"{name}'s Consul dev agent"))
        return ports

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> TuggleCluster:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self._shutdown()
        if self.forced_kills:
            report = self.unclean_report()
            if exc is None:
                raise UncleanStop(report)
            exc.add_note(report)  # keep the test's own failure first, and still say it

    def start(self) -> TuggleCluster:
        taken = [f"{HOST}:{port} ({what})" for port, what in self.fixed_ports() if not port_is_free(port)]
        if taken:
            raise PortsTaken(", ".join(taken) + (" is" if len(taken) == 1 else " are") + " already in use")
        for name in self.names() if self.watches else ():  # Consul refuses to start on a missing config dir
            (self.workdir / name / "consul.d").mkdir(parents=True, exist_ok=True)
        self.dev.start()
        try:
            if self.before_agents is not None:
                self.before_agents(self)
            for i, name in enumerate(self.names()):
                s = {**self.base_settings, **self.per_node.get(name, {})}
                self.agents.append(Agent(self, i, s, None if self.port is None else self.port + i))
            for a in self.agents:
                a.start(wait=False)
            for a in self.agents:
                a.wait_ready()
            # Watches last, as an operator wires them once the agent runs, so their
            # first firing finds `serve` up.
            for a in self.agents if self.watches else ():
                a.install_watches("http" if self.watches == "http" else "script")
        except BaseException as exc:
            self._shutdown()
            if self.forced_kills:
                exc.add_note(self.unclean_report())
            raise
        return self

    def stop(self) -> None:
        """Stop everything; raise UncleanStop if an agent had to be killed."""
        self.__exit__(None, None, None)

    def _shutdown(self) -> None:
        # SIGTERM to all first, so they shut down side by side, not one after another.
        try:
            for a in self.agents:
                a.terminate()
            for a in self.agents:
                a.wait_stopped()
        finally:
            self.dev.stop()

    def unclean_report(self) -> str:
        return "\n\n".join(self.forced_kills)

    def dead_agents(self) -> list[Agent]:
        """Agents whose process ended without being stopped or killed on purpose."""
        return [a for a in self.agents if a.died]

    # -- looking at it ---------------------------------------------------------------------
    def __getitem__(self, i: int) -> Agent:
        return self.agents[i]

    def consul(self, node: str = "node1", token: str | None = None):
        """A py-consul client of that node's dev agent (with ACLs: the master token, or `token`)."""
        token = token or self.master_token
        return self.dev.consul(node, token=token) if token else self.dev.consul(node)

    def passing(self, node: str) -> bool:
        _, entries = self.consul().health.service("tuggle", passing=True)
        return any(e["Node"]["Node"] == node for e in entries)

    def holders(self, name: str) -> set[str]:
        """Nodes Consul lists as holders of `name`, any version: a holder key held by a
        session (it goes when the node's check turns critical), or a holder tag (with
        holder_tags; a tag stays whatever the check says)."""
        prefix = f"tuggle.holders/{name}/"
        _, entries = self.consul().kv.get(prefix, recurse=True)
        keyed = {e["Key"].rsplit("/", 1)[1] for e in entries or [] if e.get("Session")}
        _, tagged = self.consul().health.service("tuggle", tag=object_id(name))
        return keyed | {e["Node"]["Node"] for e in tagged}

    def logs(self) -> str:
        return "\n".join(f"===== {a.name} =====\n{a.log_tail()}" for a in self.agents)

"""DevCluster: N simulated Consul server agents in this process, sharing one
state store, each with its own HTTP port, local state and watches.

This is where the layers meet: it builds the servers' Datacenter (state/),
the agents (node/) and hands each agent the HTTP listener (http/) it serves
on, so that none of those packages needs to import a higher one.
"""

from __future__ import annotations

import http.client
import logging
import random
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from .http.server import NodeServer
from .node.agent import Agent, AgentSettings
from .state.acl import ACLConfig
from .state.coordinates import DIMENSIONS, coordinate, set_coordinate
from .state.datacenter import Datacenter
from .state.events import topic as event_topic
from .timings import Timings

log = logging.getLogger("tuggle_agent.devconsul")

PORT_RANGE = (20000, 60000)


class DevCluster:
    """A one-datacenter (dc1) dev cluster on 127.0.0.1.

    Node i (1..N) is `node<i>` on port http_port+i-1 (or N contiguous free
    ports when http_port is None). Zones are assigned round-robin: node i is
    in zone (i-1) % zones. Use as a context manager or call start()/stop().

    acl=True turns on Consul's ACLs with default_policy "deny":
    `acl_master_token` becomes the initial management token's SecretID (a
    random UUID when not given; read it back from `acl_master_token`), and
    `agent_token` (default: the master token) is what the nodes' config-dir
    watches send when their definition has no `token`.
    """

    def __init__(
        self,
        nodes: int = 3,
        http_port: int | None = None,
        config_dirs: Iterable[str | Path] = (),
        zones: int = 1,
        timings: Timings | None = None,
        env: Mapping[str, str] | None = None,
        enable_script_checks: bool = False,
        acl: bool = False,
        acl_master_token: str | None = None,
        agent_token: str | None = None,
    ):
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        if not 1 <= zones <= DIMENSIONS:
            raise ValueError(f"zones must be between 1 and {DIMENSIONS}")
        self.size = nodes
        self.zones = zones
        self.http_port = http_port
        self.timings = timings or Timings()
        self.acl_master_token = (acl_master_token or str(uuid.uuid4())) if acl else None
        self.agent_token = (agent_token or self.acl_master_token) if acl else None
        self.settings = AgentSettings(
            tuple(Path(p) for p in config_dirs), dict(env or {}), enable_script_checks, self.agent_token or ""
        )
        self.datacenter = Datacenter(self.timings, ACLConfig(acl, self.acl_master_token or ""))
        self.store, self.kv = self.datacenter.store, self.datacenter.kv
        self.sessions, self.catalog = self.datacenter.sessions, self.datacenter.catalog
        self.nodes: list[Agent] = []

    # -- lifecycle ----------------------------------------------------------------------
    def __enter__(self) -> DevCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> DevCluster:
        self._bind()
        try:
            for agent in self.nodes:
                agent.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _bind(self) -> None:
        """Hold N contiguous ports by binding every listener up front."""
        for _ in range(1 if self.http_port else 50):
            base = self.http_port or random.randrange(*PORT_RANGE)
            agents = [
                Agent(
                    self.datacenter,
                    self.settings,
                    NodeServer,
                    i,
                    base + i - 1,
                    zone=(i - 1) % self.zones,
                    member=(i - 1) // self.zones,
                )
                for i in range(1, self.size + 1)
            ]
            try:
                for agent in agents:
                    agent.bind()
            except OSError as err:
                for agent in agents:
                    agent.unbind()
                if self.http_port:
                    raise OSError(f"cannot listen on 127.0.0.1:{agent.port}: {err}") from err
                continue
            self.nodes = agents
            self.datacenter.members[:] = agents
            return
        raise OSError(f"no {self.size} contiguous free ports found in {PORT_RANGE}")

    def stop(self) -> None:
        for agent in self.nodes:
            agent.stop()
            agent.unbind()
        self.datacenter.stop()

    def wait_ready(self, timeout: float = 10.0) -> DevCluster:
        """Return once every running node answers /v1/status/leader."""
        deadline = time.monotonic() + timeout
        for agent in self.nodes:
            while agent.running and not _answers(agent.port):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{agent.name} did not answer on {agent.http_addr}")
                time.sleep(0.02)
        return self

    def ready_line(self) -> str:
        first, last = self.nodes[0].port, self.nodes[-1].port
        ports = f"{first}-{last}" if last != first else str(first)
        line = f"devconsul ready: {self.size} node{'s' if self.size > 1 else ''}, http 127.0.0.1:{ports}"
        return line + (f", acl default deny, master token {self.acl_master_token}" if self.acl_master_token else "")

    # -- node access ---------------------------------------------------------------------
    def node(self, name: str) -> Agent:
        for agent in self.nodes:
            if agent.name == name:
                return agent
        raise KeyError(f"no node named {name!r} (have {', '.join(a.name for a in self.nodes)})")

    def consul(self, name: str = "node1", **kwargs):
        """A py-consul client talking to that node."""
        import consul

        return consul.Consul(host="127.0.0.1", port=self.node(name).port, **kwargs)

    # -- failures and restarts -----------------------------------------------------------------
    def stop_node(self, name: str) -> None:
        """Graceful stop: handlers get SIGTERM; the node counts as failed."""
        self.node(name).stop(kill=False)

    def kill_node(self, name: str) -> None:
        """Abrupt stop: handler process groups get SIGKILL."""
        self.node(name).stop(kill=True)

    def restart_node(self, name: str) -> None:
        """Same port again, empty local state (services, checks, events),
        config dirs re-read, watches fire as on a fresh start."""
        self.node(name).restart()
        self.wait_ready()

    def reload(self, name: str) -> None:
        """Like PUT /v1/agent/reload (or SIGHUP) on that node."""
        self.node(name).reload()

    def set_coordinate(
        self, name: str, vec: list[float], height: float = 1e-5, adjustment: float = 0.0, error: float = 1.5
    ) -> None:
        set_coordinate(self.store, name, coordinate(vec, error, adjustment, height))

    def reset(self) -> None:
        """Back to a fresh cluster with the same nodes up: no KV, sessions,
        events, registered services/checks, extra catalog nodes, or ACL
        policies and tokens but the built-in ones."""
        store = self.store
        with store.write() as txn:
            for session_id in list(store.sessions):
                self.sessions.invalidate(txn, session_id)
            self.kv.delete_tree(txn, "")
            store.lock_delay.clear()
            for agent in self.nodes:
                agent.reset()
                txn.topics.add(event_topic(agent.name))
            ours = {a.name: a for a in self.nodes}
            for node in list(store.nodes):
                if node not in ours:
                    self.catalog.deregister_node(txn, node)
                    continue
                for service_id in list(store.services[node]):
                    if service_id != "consul":
                        self.catalog.remove_service(txn, node, service_id)
                for check_id in list(store.checks[node]):
                    if check_id != "serfHealth":
                        self.catalog.remove_check(txn, node, check_id)
                store.coordinates[node] = dict(ours[node].initial_coordinate)
            txn.touch("coordinates", "coordinates")
        self.datacenter.acl.reset()


def _answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/v1/status/leader")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()

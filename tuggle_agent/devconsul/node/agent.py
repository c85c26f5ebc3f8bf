"""One simulated Consul agent: node identity, local services and checks,
event buffer, watch plans and HTTP listener, and its lifecycle.

The agent talks to the servers through a `Datacenter` and serves HTTP on
whatever listener the cluster's `listen` factory builds for it; it does not
know the endpoint code, which is what keeps node/ below http/.

Local state is kept in memory only: a restarted agent comes back with no
services, checks or events (like an agent without a data dir), syncs that
emptiness to the catalog and re-reads its config dirs.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..codec import Fields
from ..config import load_watches
from ..errors import InvalidRequest, NotFound
from ..state.catalog import node_record
from ..state.coordinates import zone_coordinate
from ..state.events import EventBuffer, accepts, topic
from ..state.structs import CheckDef, health_check, parse_check, parse_service
from ..version import CONSUL_VERSION
from .checks import IntervalCheck, TTLCheck, make_runner
from .handler import ProcessGroup, make_handler
from .tally import Tally
from .watch import Plan

if TYPE_CHECKING:
    from ..state.datacenter import Datacenter
    from ..timers import Timer

ADDRESS = "127.0.0.1"
SERF_CHECK = CheckDef("serfHealth", "Serf Health Status", "")
SERF_ALIVE, SERF_DEAD = "Agent alive and reachable", "Agent not live or unreachable"
# Fictional server RPC / serf LAN ports (nothing listens on them), spaced by
# 10 per node so that no two nodes share one.
SERVER_PORT_BASE, SERF_PORT_BASE, PORT_STRIDE = 8300, 8301, 10


@dataclass(frozen=True)
class AgentSettings:
    """What every simulated agent's config would say: config dirs for
    watches ('{node}' becomes the node name), extra environment for watch
    handlers, whether script checks are allowed, and the token the agent's
    own watches use when they name none (with ACLs on)."""

    config_dirs: tuple[Path, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    enable_script_checks: bool = False
    agent_token: str = ""


class Listener(Protocol):
    """An agent's HTTP listener: bound when built, accepting after serve()."""

    def serve(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class LocalCheck:
    definition: CheckDef
    status: str
    output: str
    runner: IntervalCheck | TTLCheck | None = None
    deferred: Timer | None = None  # pending catalog sync of an output-only change
    critical_since: float | None = None

    def set_status(self, status: str) -> None:
        if status == "critical" and self.critical_since is None:
            self.critical_since = time.monotonic()
        elif status != "critical":
            self.critical_since = None
        self.status = status


class Agent:
    def __init__(
        self,
        datacenter: Datacenter,
        settings: AgentSettings,
        listen: Callable[[Agent], Listener],
        number: int,
        port: int,
        zone: int,
        member: int,
    ):
        self.datacenter = datacenter
        self.settings = settings
        self._listen = listen
        self.number = number
        self.name = f"node{number}"
        self.port = port
        self.address = ADDRESS
        self.zone = zone
        self.node_id = str(uuid.uuid4())
        self.server_port = SERVER_PORT_BASE + PORT_STRIDE * (number - 1)
        self.serf_port = SERF_PORT_BASE + PORT_STRIDE * (number - 1)
        self.server_addr = f"{ADDRESS}:{self.server_port}"
        self.initial_coordinate = zone_coordinate(zone, member)
        self.log = logging.getLogger(f"tuggle_agent.devconsul.{self.name}")
        self.store = datacenter.store
        self.kv, self.sessions, self.catalog = datacenter.kv, datacenter.sessions, datacenter.catalog
        self.timings = datacenter.timings
        self.scheduler = datacenter.scheduler
        self.events = EventBuffer()
        self.services: dict[str, dict] = {}
        self.sidecars: dict[str, str] = {}  # parent service ID -> its sidecar's
        self.checks: dict[str, LocalCheck] = {}
        self.procs = ProcessGroup()
        self.plans: list[Plan] = []
        self.server: Listener | None = None
        self.running = False
        self._faults: list[int] = []  # statuses the next requests answer with
        self.tally: Tally | None = None  # request accounting, when count_requests() turned it on
        self._reap_timer: Timer | None = None

    def inject_errors(self, count: int = 1, status: int = 500) -> None:
        """Test hook: the next `count` HTTP requests to this node fail with
        `status`, as an agent that lost its servers would answer."""
        with self.store.lock:
            self._faults.extend([status] * count)

    def count_requests(self) -> Tally:
        """Test hook: count this node's HTTP requests and body bytes from now on (see tally.py)."""
        if self.tally is None:
            self.tally = Tally()
        return self.tally

    def take_fault(self) -> int | None:
        with self.store.lock:
            return self._faults.pop(0) if self._faults else None

    @property
    def http_addr(self) -> str:
        return f"{self.address}:{self.port}"

    def __repr__(self) -> str:
        return f"<devconsul agent {self.name} {self.http_addr} {'up' if self.running else 'down'}>"

    def stopping(self) -> bool:
        return not self.running

    def config_paths(self) -> list[Path]:
        return [Path(str(p).replace("{node}", self.name)) for p in self.settings.config_dirs]

    # -- lifecycle --------------------------------------------------------------------
    def bind(self) -> None:
        """Open the listening socket (before start, so ports are held early)."""
        if self.server is None:
            self.server = self._listen(self)

    def unbind(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def start(self) -> None:
        specs = load_watches(self.config_paths(), self.timings.watch_http_timeout)
        self.bind()
        with self.store.write() as txn:
            meta = {"consul-network-segment": "", "consul-version": CONSUL_VERSION}
            self.catalog.ensure_node(txn, node_record(self.name, self.node_id, self.address, meta))
            self.catalog.ensure_service(txn, self.name, self._consul_service())
            self._set_serf(txn, alive=True)
            if self.name not in self.store.coordinates:
                self.store.coordinates[self.name] = dict(self.initial_coordinate)
                txn.touch("coordinates", "coordinates")
            self.running = True
        assert self.server is not None  # bound by self.bind() above
        self.server.serve()
        self._schedule_reap()
        self._start_watches(specs)
        self.log.info("agent started on %s", self.http_addr)

    def stop(self, kill: bool = False) -> None:
        """Simulated failure: listener closed, watches and handlers ended,
        serfHealth critical (so sessions die and services leave `passing`)."""
        if not self.running:
            return
        self.running = False
        self._stop_watches(kill=kill)
        if self._reap_timer is not None:
            self._reap_timer.cancel()
        with self.store.lock:
            for check in self.checks.values():
                self._stop_runner(check)
        self.unbind()
        self.store.wake_all()
        with self.store.write() as txn:
            self._set_serf(txn, alive=False)
        self.log.info("agent %s", "killed" if kill else "stopped")

    def restart(self) -> None:
        self.stop()
        with self.store.write() as txn:
            for service_id in list(self.services):
                self._remove_service(txn, service_id)
            for check_id in list(self.checks):
                self._remove_check(txn, check_id)
            self.events = EventBuffer()
        self.start()

    def reload(self) -> None:
        """PUT /v1/agent/reload: validate the new config first (a bad config
        keeps the old watches), then stop every plan and start all anew."""
        specs = load_watches(self.config_paths(), self.timings.watch_http_timeout)
        self._stop_watches(kill=False)
        self._start_watches(specs)
        self.log.info("reloaded: %d watch(es)", len(specs))

    def reset(self) -> None:
        """Forget local services, checks and events (DevCluster.reset)."""
        with self.store.lock:
            for check in self.checks.values():
                self._stop_runner(check)
            self.services.clear()
            self.sidecars.clear()
            self.checks.clear()
            self.events = EventBuffer()

    def _start_watches(self, specs) -> None:
        env = {**os.environ, **self.settings.env}
        self.plans = []
        for spec in specs:
            handler = make_handler(spec, env, self.procs, self.log)
            plan = Plan(spec, self.port, handler, self.timings, self.log.getChild("watch"), self.settings.agent_token)
            self.plans.append(plan)
            plan.start()

    def _stop_watches(self, kill: bool) -> None:
        plans, self.plans = self.plans, []
        for plan in plans:
            plan.stop()
        if kill:
            self.procs.signal_all(signal.SIGKILL)
        elif not self.running:
            self.procs.terminate_all()

    def _schedule_reap(self) -> None:
        self._reap_timer = self.scheduler.call_later(self.timings.reap_interval, self._reap)

    def _reap(self) -> None:
        """DeregisterCriticalServiceAfter: drop services whose check stayed
        critical longer than its timeout (at least deregister_critical_min)."""
        if not self.running:
            return
        now = time.monotonic()
        with self.store.write() as txn:
            for check in list(self.checks.values()):
                timeout = check.definition.deregister_after
                if not timeout or check.critical_since is None or not check.definition.service_id:
                    continue
                if now - check.critical_since > max(timeout, self.timings.deregister_critical_min):
                    self.log.info(
                        "reaping service %s: check %s critical too long",
                        check.definition.service_id,
                        check.definition.check_id,
                    )
                    self._remove_service(txn, check.definition.service_id)
        self._schedule_reap()

    # -- catalog sync -------------------------------------------------------------------
    def _consul_service(self) -> dict:
        service, _ = parse_service(Fields({"Name": "consul", "Port": self.server_port}))
        service["Meta"] = {
            "non_voter": "false",
            "raft_version": "3",
            "read_replica": "false",
            "serf_protocol_current": "2",
            "serf_protocol_max": "5",
            "serf_protocol_min": "1",
            "version": CONSUL_VERSION,
        }
        return service

    def _set_serf(self, txn, alive: bool) -> None:
        status, output = ("passing", SERF_ALIVE) if alive else ("critical", SERF_DEAD)
        self.catalog.ensure_check(txn, health_check(self.name, SERF_CHECK, status, output, None))

    def _catalog_check(self, check: LocalCheck) -> dict:
        service = self.services.get(check.definition.service_id)
        return health_check(self.name, check.definition, check.status, check.output, service)

    # -- services -------------------------------------------------------------------------
    def register_service(
        self, body: Fields, replace_checks: bool, vet: Callable[[dict], None] = lambda s: None
    ) -> None:
        """Register a service with its checks (and its sidecar). `vet` sees
        every service to register before anything changes and may refuse it
        by raising (the HTTP layer's ACL check)."""
        service, checks = parse_service(body)
        self._check_allowed(checks)
        sidecar = self._sidecar(service, body.sub("Connect"))
        vet(service)
        if sidecar is not None:
            vet(parse_service(sidecar)[0])
        with self.store.write() as txn:
            if sidecar is not None:
                self.sidecars[service["ID"]] = f"{service['ID']}-sidecar-proxy"
            self.services[service["ID"]] = service
            self.catalog.ensure_service(txn, self.name, dict(service))
            wanted = {c.check_id for c in checks}
            if replace_checks:
                for check_id, local in list(self.checks.items()):
                    if local.definition.service_id == service["ID"] and check_id not in wanted:
                        self._remove_check(txn, check_id)
            for check in checks:
                self._add_check(txn, check)
        if sidecar is not None:
            self.register_service(sidecar, replace_checks=False, vet=vet)

    def _sidecar(self, service: dict, connect: Fields) -> Fields | None:
        """Connect.SidecarService registers a `<id>-sidecar-proxy` service
        (connect-proxy kind, port from 21000) next to the parent, as Consul
        does; no proxy process runs, and Consul's sidecar checks are omitted."""
        if not connect.has("SidecarService"):
            return None
        service["Connect"] = {k: v for k, v in connect.raw.items() if not Fields({k: 1}).has("SidecarService")} or None
        used = {s["Port"] for s in self.services.values()}
        port = next(p for p in range(21000, 21256) if p not in used)
        proxy = {
            "DestinationServiceName": service["Service"],
            "DestinationServiceID": service["ID"],
            "LocalServiceAddress": "127.0.0.1",
            "LocalServicePort": service["Port"],
        }
        defaults = {
            "Name": f"{service['Service']}-sidecar-proxy",
            "ID": f"{service['ID']}-sidecar-proxy",
            "Kind": "connect-proxy",
            "Port": port,
            "Tags": service["Tags"],
            "Meta": service["Meta"],
            "Proxy": proxy,
        }
        return Fields({**defaults, **(connect.get("SidecarService") or {})})

    def deregister_service(self, service_id: str) -> None:
        with self.store.write() as txn:
            self._remove_service(txn, service_id)

    def _remove_service(self, txn, service_id: str) -> None:
        if self.services.pop(service_id, None) is None:
            return
        if sidecar := self.sidecars.pop(service_id, None):
            self._remove_service(txn, sidecar)
        for check_id, check in list(self.checks.items()):
            if check.definition.service_id == service_id:
                self._remove_check(txn, check_id)
        self.catalog.remove_service(txn, self.name, service_id)

    # -- checks ---------------------------------------------------------------------------
    def register_check(self, body: Fields) -> None:
        if not body.get("Name"):
            raise InvalidRequest("Missing check name")
        check = parse_check(body)
        self._check_allowed([check])
        with self.store.write() as txn:
            if check.service_id and check.service_id not in self.services:
                raise NotFound(f'ServiceID "{check.service_id}" does not exist')
            self._add_check(txn, check)

    def _check_allowed(self, checks: list[CheckDef]) -> None:
        if any(c.kind == "script" for c in checks) and not self.settings.enable_script_checks:
            raise InvalidRequest(
                "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' "
                "or 'enable_local_script_checks' to true"
            )

    def _add_check(self, txn, definition: CheckDef) -> None:
        old = self.checks.get(definition.check_id)
        if old is not None:
            self._stop_runner(old)
        # Re-registering keeps the last status (Consul avoids a flap to critical).
        status = old.status if old else (definition.status or "critical")
        output = old.output if old else definition.output
        check = LocalCheck(definition, "", output)
        check.set_status(status)
        self.checks[definition.check_id] = check
        self.catalog.ensure_check(txn, self._catalog_check(check))
        check_id = definition.check_id
        check.runner = make_runner(
            definition, lambda s, o: self.update_check(check_id, s, o, check), self.timings, self.scheduler
        )
        if check.runner is not None:
            check.runner.start()

    def deregister_check(self, check_id: str) -> None:
        with self.store.write() as txn:
            self._remove_check(txn, check_id)

    def _remove_check(self, txn, check_id: str) -> None:
        check = self.checks.pop(check_id, None)
        if check is None:
            return
        self._stop_runner(check)
        self.catalog.remove_check(txn, self.name, check_id)

    @staticmethod
    def _stop_runner(check: LocalCheck) -> None:
        if check.runner is not None:
            check.runner.stop()
        if check.deferred is not None:
            check.deferred.cancel()

    def update_check(self, check_id: str, status: str, output: str, expected: LocalCheck | None = None) -> None:
        """Record a check result. Status changes reach the catalog at once;
        output-only changes after check_update_interval, as Consul defers them."""
        with self.store.write() as txn:
            check = self.checks.get(check_id)
            if check is None or (expected is not None and check is not expected) or not self.running:
                return
            status_changed = status != check.status
            if not status_changed and output == check.output:
                return
            check.set_status(status)
            check.output = output
            if status_changed:
                self.catalog.ensure_check(txn, self._catalog_check(check))
            elif check.deferred is None:
                check.deferred = self.scheduler.call_later(
                    self.timings.check_update_interval, lambda: self._sync_output(check)
                )

    def _sync_output(self, check: LocalCheck) -> None:
        with self.store.write() as txn:
            check.deferred = None
            if self.checks.get(check.definition.check_id) is check and self.running:
                self.catalog.ensure_check(txn, self._catalog_check(check))

    def ttl_update(self, check_id: str, status: str, output: str) -> None:
        with self.store.lock:
            check = self.checks.get(check_id)
            runner = check.runner if check else None
        if not isinstance(runner, TTLCheck):
            raise NotFound(f'Unknown check ID "{check_id}". Ensure that the check ID is passed, not the check name.')
        runner.set_status(status, output)

    def set_maintenance(self, check_id: str, name: str, service_id: str, enable: bool, reason: str) -> None:
        """Node/service maintenance is a critical check with the reason as Notes."""
        if not enable:
            self.deregister_check(check_id)
            return
        notes = reason or (
            "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
            if not service_id
            else "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
        )
        definition = CheckDef(check_id, name, "", service_id=service_id, notes=notes, status="critical")
        with self.store.write() as txn:
            self._remove_check(txn, check_id)
            self._add_check(txn, definition)

    # -- events ---------------------------------------------------------------------------
    def receive_event(self, event: dict) -> None:
        with self.store.lock:
            if not self.running or not accepts(event, self.name, self.services):
                return
            if event["Name"] != "_rexec":
                self.events.events.append(event)
        self.store.notify({topic(self.name)})

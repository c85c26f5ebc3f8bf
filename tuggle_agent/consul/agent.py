"""This node's identity and its holder service in the local Consul agent.

The service `<ns>` carries one tag per complete local object (the object id), so
`health/service/<ns>?tag=<id>&passing` answers "who holds it".  Consul replaces a
service's tags wholesale on every registration, so all tag changes go through one
lock and one in-memory set; two concurrent fetches can never drop each other's tag.
"""

from __future__ import annotations

import logging
import threading

import consul

from .client import consul_errors

log = logging.getLogger(__name__)


class HolderService:
    def __init__(
        self,
        client: consul.Consul,
        namespace: str,
        port: int,
        address: str | None,
        check_interval: float,
        check_timeout: float,
        check_host: str = "127.0.0.1",
    ):
        self.c = client
        self.ns = namespace
        self.port = port
        self.address = address
        self.check_interval = check_interval
        self.check_timeout = check_timeout
        self.check_host = check_host
        self._tags: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False  # deregistered: a reconcile racing the shutdown must not register us again

    def node_name(self) -> str:
        with consul_errors(self.c, "asking the local agent for its node name"):
            return self.c.agent.self()["Config"]["NodeName"]

    @property
    def tags(self) -> set[str]:
        with self._lock:
            return set(self._tags)

    def register(self, tags: set[str] | None = None) -> None:
        """(Re)register the service with exactly `tags` and the /?ping HTTP check."""
        with self._lock:
            if tags is not None:
                self._tags = set(tags)
            self._push()

    def add(self, *tags: str) -> None:
        with self._lock:
            if set(tags) <= self._tags:
                return
            self._tags.update(tags)
            self._push()

    def remove(self, *tags: str) -> None:
        with self._lock:
            if not self._tags & set(tags):
                return
            self._tags.difference_update(tags)
            self._push()

    def ensure_registered(self) -> bool:
        """Re-register if the local agent lost or changed our service (an agent restarted
        without its data dir forgets API registrations).  An agent-local read, no Raft write."""
        with self._lock:
            if self._closed:
                return False
            with consul_errors(self.c, "reading the local agent's services"):
                svc = self.c.agent.services().get(self.ns)
            if svc is not None and set(svc.get("Tags") or []) == self._tags:
                return False
            self._push()
            return True

    def deregister(self) -> None:
        self._closed = True
        with consul_errors(self.c, f"deregistering service {self.ns}"):
            self.c.agent.service.deregister(self.ns)

    def _push(self) -> None:
        if self._closed:
            return
        check = consul.Check.http(
            f"http://{self.check_host}:{self.port}/?ping",
            interval=_go_duration(self.check_interval),
            timeout=_go_duration(self.check_timeout),
        )
        with consul_errors(self.c, f"registering service {self.ns} with {len(self._tags)} tags"):
            self.c.agent.service.register(
                self.ns, service_id=self.ns, port=self.port, address=self.address, tags=sorted(self._tags), check=check
            )


def _go_duration(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"

"""This node's identity and its tuggle service in the local Consul agent.

The service `<ns>`, with its HTTP check on `/?ping`, is what makes the node a tuggle
node in Consul, and its check is what the holder session (holders.py) is bound to.
By default it has no tags: holders are found through holder keys.  With `holder_tags`
(the Go tuggle layout, for mixed clusters) it carries one tag per complete local
object (the object id), so `health/service/<ns>?tag=<id>&passing` also answers "who
holds it".  Consul replaces a service's tags wholesale on every registration, so all
tag changes go through one lock and one in-memory set; two concurrent fetches can
never drop each other's tag.
"""

from __future__ import annotations

import logging
import threading

import consul

from .client import ConsulUnavailable, consul_errors

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
        self._closed = False

    def node_name(self) -> str:
        with consul_errors(self.c, "asking the local agent for its node name"):
            return self.c.agent.self()["Config"]["NodeName"]

    def reachable_address(self) -> str:
        """Where peers reach this node: advertise_address, else the node's address in
        Consul (the agent's LAN address, which health queries used to return)."""
        if self.address:
            return self.address
        with consul_errors(self.c, "asking the local agent for its address"):
            me = self.c.agent.self()
        address = (me.get("Member") or {}).get("Addr")
        if not address:
            with consul_errors(self.c, "reading this node's catalog entry"):
                _, node = self.c.catalog.node(me["Config"]["NodeName"])
            address = ((node or {}).get("Node") or {}).get("Address")
        if not address:
            raise ConsulUnavailable("the local Consul agent did not say its address: set advertise_address")
        return str(address)

    @property
    def tags(self) -> set[str]:
        """The tags the service is registered with (what Consul's event filters see)."""
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
        """Leave for good: later tag changes (a reconcile still in flight when SIGTERM came)
        must not register the service again behind our back."""
        with self._lock:
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

"""dc1's servers as one object: the replicated tables (store, KV, sessions,
catalog, ACLs), the timer thread they share, and the LAN pool every agent
joins (who leads, and gossip of user events).

The servers know agents only as serf members -- the `Member` protocol below
-- so this layer never imports the agent or HTTP code built on top of it.
"""

from __future__ import annotations

import itertools
import threading
from typing import TYPE_CHECKING, Protocol

from ..timers import Scheduler
from .acl import ACL, ACLConfig
from .catalog import Catalog
from .kv import KV
from .sessions import Sessions
from .store import Store

if TYPE_CHECKING:
    from ..timings import Timings


class Member(Protocol):
    """What the servers learn about an agent through serf."""

    name: str
    node_id: str
    address: str
    server_port: int
    serf_port: int
    server_addr: str
    running: bool

    def receive_event(self, event: dict) -> None: ...


class Datacenter:
    def __init__(self, timings: Timings, acl: ACLConfig | None = None):
        self.timings = timings
        self.store = Store()
        self.scheduler = Scheduler()
        self.kv = KV(self.store)
        self.sessions = Sessions(self.store, self.kv, self.scheduler, timings)
        self.catalog = Catalog(self.store, self.sessions)
        self.acl = ACL(self.store, acl or ACLConfig())
        self.members: list[Member] = []
        self._lamport = itertools.count(1)
        self._lamport_lock = threading.Lock()

    def leader_addr(self) -> str:
        """Every node is a server; the first one that is up leads, so stopping
        node1 moves leadership like a failover."""
        return next((m.server_addr for m in self.members if m.running), "")

    def fire_event(self, event: dict) -> None:
        """Gossip: every member gets the event with one Lamport time and
        applies its own filters (a stopped member drops it)."""
        with self._lamport_lock:
            ltime = next(self._lamport)
        for member in self.members:
            member.receive_event({**event, "LTime": ltime})

    def stop(self) -> None:
        self.sessions.clear()
        self.scheduler.stop()

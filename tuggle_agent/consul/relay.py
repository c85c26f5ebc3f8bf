"""Partial holders of an object: nodes still fetching it that already serve what they verified.

A fetching node announces itself, when its fetch starts, with a key
`<ns>.relay/<name>/<version>/<node>` whose value says where to reach it
(`{"address", "port"}`, as holder keys; untrusted, checked by holders.parse_located),
locked by its fetch session (behaviour delete, so
the entry goes if the node dies).  The key's CreateIndex, a cluster-wide Raft index,
ranks the fetchers.  Each takes as its source the partial holder ranked just before
it (falling back to earlier ones, then to complete holders), so concurrent fetchers
line up in one chain at once, with no race for slots; and since a node only ever
relays from nodes ranked before it, the relay graph is acyclic and no chain can wait
on itself.
"""

from __future__ import annotations

import contextlib

import consul

from .client import consul_errors
from .health import Holder
from .holders import location_value, parse_located
from .keys import Keys
from .session import RenewedSession


class RelayEntry:
    def __init__(self, client: consul.Consul, key: str, rank: int):
        self.c = client
        self.key = key
        self.rank = rank

    def withdraw(self) -> None:
        with contextlib.suppress(Exception):  # the session's end deletes it too (behaviour delete)
            self.c.kv.delete(self.key)


class RelayRegistry:
    def __init__(self, client: consul.Consul, keys: Keys, address: str, port: int):
        self.c = client
        self.keys = keys
        self.value = location_value(address, port)  # where fetchers downstream reach us

    def announce(self, name: str, version: str, node: str, session: RenewedSession) -> RelayEntry:
        key = self.keys.relay(name, version, node)
        with consul_errors(self.c, f"announcing {node} as a partial holder of {name}"):
            self.c.kv.delete(key)  # a leftover of an earlier attempt must not keep its old rank
            if not self.c.kv.put(key, self.value, acquire=session.id):
                raise RuntimeError(f"could not lock {key}")
            _, entry = self.c.kv.get(key)
        return RelayEntry(self.c, key, int(entry["CreateIndex"]))

    def upstream(
        self, name: str, version: str, rank: int, index: str | None = None, wait: str | None = None
    ) -> tuple[str, list[Holder]]:
        """Partial holders ranked before `rank` (0: all), earliest first, with their
        addresses; blocking when index is given.  They cannot be downstream of the asker."""
        prefix = self.keys.relay_prefix(name, version)
        with consul_errors(self.c, f"listing partial holders of {name}"):
            index, entries = self.c.kv.get(prefix, recurse=True, index=index, wait=wait)
        return index, [e.holder() for e in parse_located(entries, prefix) if not rank or e.rank < rank]

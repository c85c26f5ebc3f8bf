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

The entry's Consul `Flags` (opaque to Consul) carry what the engine says about the node's
speed (engine/switching.py); this module only stores and returns them.  A node that
finds itself too slow to head anyone re-announces (`RelayEntry.rejoin`): a new key, a
new CreateIndex, so it ranks after everyone already there.  It learns when to look from a
nudge key of its own (`nudge` / `wait_nudge`), written by whoever has news for it, so a
uniform chain costs no wake-ups.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import consul

from .client import consul_errors
from .health import Holder
from .holders import location_value, parse_located
from .keys import Keys
from .session import RenewedSession

MAX_FLAGS = 2**64 - 1  # Consul's Flags is a uint64


@dataclass(frozen=True)
class RelayPeer:
    """A live partial holder: its node, its rank (CreateIndex), its Flags and its address."""

    node: str
    rank: int
    flags: int
    holder: Holder | None = None


class RelayEntry:
    def __init__(
        self, client: consul.Consul, key: str, rank: int, session_id: str = "", value: bytes = b"", flags: int = 0
    ):
        self.c = client
        self.key = key
        self.rank = rank
        self.session_id = session_id
        self.value = value  # what announce() wrote, written again by rejoin()
        self.flags = flags

    def rejoin(self) -> None:
        """Take a new rank after every node announced so far (delete, then lock again)."""
        with consul_errors(self.c, f"re-announcing {self.key}"):
            self.rank = _place(self.c, self.key, self.value, self.session_id, self.flags)

    def withdraw(self) -> None:
        with contextlib.suppress(Exception):  # the session's end deletes it too (behaviour delete)
            self.c.kv.delete(self.key)


class RelayRegistry:
    def __init__(self, client: consul.Consul, keys: Keys, address: str, port: int):
        self.c = client
        self.keys = keys
        self.value = location_value(address, port)  # where fetchers downstream reach us

    def announce(self, name: str, version: str, node: str, session: RenewedSession, flags: int = 0) -> RelayEntry:
        key = self.keys.relay(name, version, node)
        with consul_errors(self.c, f"announcing {node} as a partial holder of {name}"):
            rank = _place(self.c, key, self.value, session.id, flags)
        return RelayEntry(self.c, key, rank, session.id, self.value, flags)

    def upstream(
        self, name: str, version: str, rank: int, index: str | None = None, wait: str | None = None
    ) -> tuple[str, list[Holder]]:
        """Partial holders ranked before `rank` (0: all), earliest first, with their
        addresses; blocking when index is given.  They cannot be downstream of the asker."""
        index, live = self.live(name, version, index, wait)
        return index, [p.holder for p in live if p.holder is not None and (not rank or p.rank < rank)]

    def nudge(self, name: str, version: str, node: str, by: str) -> None:
        """Tell `node` to look at the relay entries again (best effort: a hint)."""
        with contextlib.suppress(Exception):
            self.c.kv.put(self.keys.nudge(name, version, node), by.encode())

    def wait_nudge(self, name: str, version: str, node: str, index: str | None, wait: str) -> tuple[str, bool]:
        """Block until `node`'s nudge key is written after `index` (or `wait` passes): the
        new index, and whether the key exists (someone nudged).  The key is absent until the
        first nudge; Consul then blocks until it is created, not on every KV write."""
        with consul_errors(self.c, f"waiting for news about {name}"):
            new_index, entry = self.c.kv.get(self.keys.nudge(name, version, node), index=index, wait=wait)
        return new_index, bool(entry and entry.get("Value"))

    def clear_nudge(self, name: str, version: str, node: str) -> None:
        with contextlib.suppress(Exception):
            self.c.kv.delete(self.keys.nudge(name, version, node))

    def live(
        self, name: str, version: str, index: str | None = None, wait: str | None = None
    ) -> tuple[str, list[RelayPeer]]:
        """Every live partial holder, earliest first, with its address and Flags; blocking
        when index is given.  Entries are untrusted: parse_located checks key, session,
        rank and address; Flags outside a uint64 make the entry unusable."""
        prefix = self.keys.relay_prefix(name, version)
        with consul_errors(self.c, f"listing partial holders of {name}"):
            index, entries = self.c.kv.get(prefix, recurse=True, index=index, wait=wait)
        flags = {}
        for e in entries if isinstance(entries, list) else []:
            if isinstance(e, dict) and isinstance(e.get("Key"), str):
                flags[e["Key"][len(prefix) :]] = e.get("Flags") or 0
        live = []
        for loc in parse_located(entries, prefix):
            f = flags.get(loc.node)
            if isinstance(f, int) and not isinstance(f, bool) and 0 <= f <= MAX_FLAGS:
                live.append(RelayPeer(loc.node, loc.rank, f, loc.holder()))
        return index, live


def _place(c: consul.Consul, key: str, value: bytes, session_id: str, flags: int) -> int:
    """Lock `key` for the session, fresh, and return its CreateIndex (the rank)."""
    c.kv.delete(key)  # a leftover of an earlier attempt must not keep its old rank
    if not c.kv.put(key, value, acquire=session_id, flags=flags):
        raise RuntimeError(f"could not lock {key}")
    _, entry = c.kv.get(key)
    return int(entry["CreateIndex"])

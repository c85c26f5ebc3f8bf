"""Partial holders of an object: nodes still fetching it that already serve what they verified.

Each fetching node announces itself with a key `<ns>.relay/<name>/<version>/<node>`
locked by its own TTL session (behaviour delete), so the entry disappears if the
node dies.  The key's CreateIndex, a cluster-wide Raft index, ranks the fetchers in
the order they started: a node only ever relays from partial holders ranked before
it, so the relay graph is acyclic and no chain can wait on itself.
"""

from __future__ import annotations

import consul

from .client import consul_errors
from .session import RenewedSession


class RelayEntry:
    def __init__(self, client: consul.Consul, key: str, session: RenewedSession, rank: int):
        self.c = client
        self.key = key
        self.session = session
        self.rank = rank

    def withdraw(self) -> None:
        try:
            self.c.kv.delete(self.key)
        except Exception:  # the session's destroy deletes it too (behaviour delete)
            pass
        self.session.close()


class RelayRegistry:
    def __init__(self, client: consul.Consul, namespace: str, session_ttl: float = 15.0,
                 session_checks: list[str] | None = None):
        self.c = client
        self.session_checks = session_checks
        self.ns = namespace
        self.session_ttl = session_ttl

    def prefix(self, name: str, version: str) -> str:
        return f"{self.ns}.relay/{name}/{version}/"

    def announce(self, name: str, version: str, node: str) -> RelayEntry:
        key = self.prefix(name, version) + node
        session = RenewedSession(self.c, "tuggle-agent partial holder", self.session_ttl, "delete",
                                 self.session_checks)
        try:
            with consul_errors(self.c, f"announcing {node} as a partial holder of {name}"):
                self.c.kv.delete(key)  # a leftover of an earlier attempt must not keep its old rank
                if not self.c.kv.put(key, node.encode(), acquire=session.id):
                    raise RuntimeError(f"could not lock {key}")
                _, entry = self.c.kv.get(key)
        except BaseException:
            session.close()
            raise
        return RelayEntry(self.c, key, session, int(entry["CreateIndex"]))

    def upstream(self, name: str, version: str, rank: int, index: str | None = None,
                 wait: str | None = None) -> tuple[str, list[str]]:
        """Partial holders ranked before `rank`, earliest first (blocking when index is given)."""
        with consul_errors(self.c, f"listing partial holders of {name}"):
            index, entries = self.c.kv.get(self.prefix(name, version), recurse=True, index=index, wait=wait)
        live = [e for e in entries or [] if e.get("Session") and int(e["CreateIndex"]) < rank]
        return index, [e["Key"].rsplit("/", 1)[1] for e in sorted(live, key=lambda e: int(e["CreateIndex"]))]

    def clear(self, name: str) -> None:
        with consul_errors(self.c, f"clearing partial holders of {name}"):
            self.c.kv.delete(f"{self.ns}.relay/{name}/", recurse=True)

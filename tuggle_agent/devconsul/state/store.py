"""The replicated state every node shares, and blocking queries over it.

One lock, one raft-like index and per-table indexes, as on Consul servers.
The modules beside this one (kv, sessions, catalog, coordinates) own the
logic on their tables; this module only provides the transaction and
wake-up machinery.

Blocking: each waiting query registers the topics it depends on ("kv:<key>",
a "kv:<prefix>" prefix, "catalog", ...). A write transaction records the
topics it touched and, at commit, wakes only the waiters whose topics match,
so a KV put does not stir 200 unrelated blocked health queries. Woken waiters
re-run their query and compare indexes exactly like Consul's blocking loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Interest:
    """Topics a blocking query depends on: exact names and name prefixes."""

    exact: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    @classmethod
    def of(cls, *exact: str, prefix: str | None = None) -> Interest:
        return cls(frozenset(exact), (prefix,) if prefix is not None else ())

    def matches(self, topics: set[str]) -> bool:
        if not self.exact.isdisjoint(topics):
            return True
        return any(t.startswith(p) for p in self.prefixes for t in topics)


@dataclass(eq=False)
class _Waiter:
    interest: Interest
    event: threading.Event = field(default_factory=threading.Event)


class Txn:
    """One write: at most one new raft index, however many rows it touches."""

    def __init__(self, store: Store):
        self._store = store
        self._index = 0
        self.topics: set[str] = set()

    @property
    def index(self) -> int:
        if not self._index:
            self._store.index += 1
            self._index = self._store.index
        return self._index

    def touch(self, table: str, *topics: str) -> int:
        """Mark `table` (and wake-up topics) as modified at this txn's index."""
        self._store.table_index[table] = self.index
        self.topics.update(topics)
        return self.index


class Store:
    """Shared tables of the simulated servers. Rows are plain dicts/objects
    owned by the area modules; everything is read and written under `lock`."""

    TABLES = (
        "kvs",
        "tombstones",
        "sessions",
        "nodes",
        "services",
        "checks",
        "coordinates",
        "acl_policies",
        "acl_tokens",
    )

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.index = 0
        self.table_index: dict[str, int] = dict.fromkeys(self.TABLES, 0)
        self._waiters: set[_Waiter] = set()
        self.clear()

    def clear(self) -> None:
        """Empty every table; indexes keep counting up so clients never see
        them go backwards."""
        with self.lock:
            self.kvs: dict[str, Any] = {}
            self.tombstones: dict[str, int] = {}
            self.lock_delay: dict[str, float] = {}
            self.sessions: dict[str, dict] = {}
            self.nodes: dict[str, dict] = {}
            self.services: dict[str, dict[str, dict]] = {}
            self.checks: dict[str, dict[str, dict]] = {}
            self.coordinates: dict[str, dict] = {}
            self.service_index: dict[str, int] = {}
            self.acl_policies: dict[str, dict] = {}
            self.acl_tokens: dict[str, dict] = {}

    def max_index(self, *tables: str) -> int:
        return max(self.table_index[t] for t in tables)

    @contextmanager
    def write(self) -> Iterator[Txn]:
        with self.lock:
            txn = Txn(self)
            yield txn
            if txn.topics:
                self.notify(txn.topics)

    def notify(self, topics: set[str]) -> None:
        with self.lock:
            for waiter in self._waiters:
                if waiter.interest.matches(topics):
                    waiter.event.set()

    def waiting(self) -> int:
        """Number of queries blocked right now (lets tests know a query is parked)."""
        with self.lock:
            return len(self._waiters)

    def wake_all(self) -> None:
        """Used when a node stops: its blocked requests must re-check and end."""
        with self.lock:
            for waiter in self._waiters:
                waiter.event.set()

    def blocking_query(
        self,
        interest: Interest,
        run: Callable[[], tuple[int, Any, bool]],
        min_index: int,
        timeout: float,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> tuple[int, Any]:
        """Consul's blocking loop. `run()` returns (index, result, found).

        Returns once the index exceeds `min_index` or at the timeout. A query
        whose data is missing keeps blocking after its second not-found run
        (Consul pins the min index then), so a GET of an absent key waits
        for the key instead of waking on every unrelated KV write.
        """
        if min_index == 0:
            with self.lock:
                index, result, _ = run()
            return max(index, 1), result
        deadline = time.monotonic() + timeout
        not_found_before = False
        with self._registered(interest) as waiter:
            while True:
                waiter.event.clear()
                with self.lock:
                    index, result, found = run()
                if not found:
                    if not_found_before:
                        min_index = index
                    not_found_before = True
                remaining = deadline - time.monotonic()
                if index > min_index or remaining <= 0 or cancelled():
                    return max(index, 1), result
                waiter.event.wait(remaining)

    def wait_for_change(
        self,
        interest: Interest,
        unchanged: Callable[[], bool],
        timeout: float,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        """Block while `unchanged()` holds, up to `timeout` (agent-local queries)."""
        deadline = time.monotonic() + timeout
        with self._registered(interest) as waiter:
            while True:
                waiter.event.clear()
                with self.lock:
                    if not unchanged():
                        return
                remaining = deadline - time.monotonic()
                if remaining <= 0 or cancelled():
                    return
                waiter.event.wait(remaining)

    @contextmanager
    def _registered(self, interest: Interest) -> Iterator[_Waiter]:
        waiter = _Waiter(interest)
        with self.lock:
            self._waiters.add(waiter)
        try:
            yield waiter
        finally:
            with self.lock:
                self._waiters.discard(waiter)

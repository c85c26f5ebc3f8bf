"""Request accounting (dev-agent test tooling, off unless asked for): how many HTTP
requests one node's API answered and how many body bytes went each way, by
(client, method, path). bench/consul_load.py reads it to measure the Consul load of
a rollout; nothing in tuggle-agent depends on it (a real Consul has no such thing:
its closest relative is the `consul.http.*` telemetry).

The client is "watch" for the node's own watch plans (which, as in Consul, query
the agent's HTTP API like any client) and "api" for everyone else.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

WATCH_USER_AGENT = "Go-http-client/1.1"  # what Consul's watch plans (Go's net/http) send


@dataclass
class Count:
    requests: int = 0
    bytes_in: int = 0  # request bodies
    bytes_out: int = 0  # response bodies

    def add(self, other: Count) -> None:
        self.requests += other.requests
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out


Key = tuple[str, str, str]  # (client, method, path)


class Tally:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Key, Count] = {}

    def record(self, user_agent: str, method: str, path: str, bytes_in: int, bytes_out: int) -> None:
        key = ("watch" if user_agent == WATCH_USER_AGENT else "api", method, path)
        with self._lock:
            c = self._counts.setdefault(key, Count())
            c.requests += 1
            c.bytes_in += bytes_in
            c.bytes_out += bytes_out

    def take(self) -> dict[Key, Count]:
        """What was counted since the last take(), and start again from zero."""
        with self._lock:
            counts, self._counts = self._counts, {}
        return counts

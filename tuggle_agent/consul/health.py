"""Holders as the fetcher sees them, and their network distance from this node.

Holders are found in the holder index (holders.py); this module orders them by
round-trip time, estimated from Consul's network coordinates (the same Vivaldi
estimate `near=` uses).  Coordinates are read per candidate node
(`/v1/coordinate/node/<node>`) and cached for a long while: they drift slowly, and
reading every node's (`/v1/coordinate/nodes`) would cost each fetch O(N) bytes.
"""

from __future__ import annotations

import math
import threading
import time
import urllib.parse
from dataclasses import dataclass

import consul

from .client import consul_errors


@dataclass(frozen=True)
class Holder:
    node: str
    address: str
    port: int
    rtt: float = math.inf

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"


def distance(a: dict | None, b: dict | None) -> float:
    """Consul's lib.ComputeDistance on two coordinate dicts, in seconds."""
    if not a or not b:
        return math.inf
    d = math.sqrt(sum((x - y) ** 2 for x, y in zip(a["Vec"], b["Vec"], strict=False))) + a["Height"] + b["Height"]
    adjusted = d + a.get("Adjustment", 0.0) + b.get("Adjustment", 0.0)
    return adjusted if adjusted > 0 else d


def _valid_coordinate(coord: object) -> dict | None:
    """A coordinate fit for distance(), or None (then the node sorts last)."""
    if not isinstance(coord, dict):
        return None
    vec, height, adj = coord.get("Vec"), coord.get("Height", 0.0), coord.get("Adjustment", 0.0)
    numbers = (int, float)
    if not isinstance(vec, list) or not all(isinstance(x, numbers) for x in vec):
        return None
    if not isinstance(height, numbers) or not isinstance(adj, numbers):
        return None
    return {"Vec": vec, "Height": height, "Adjustment": adj}


class Coordinates:
    """Network coordinates of single nodes, each cached for TTL seconds."""

    TTL = 600.0
    MISSING_TTL = 30.0  # a node without a coordinate yet (just joined) gets one soon
    MAX_CACHED = 4096  # node names come from KV: bound what they can make us remember
    # More unknown nodes than this in one lookup (a late fetch among many holders): one
    # read of every coordinate instead of one request per node.
    BULK = 16

    def __init__(self, client: consul.Consul):
        self.c = client
        self._cache: dict[str, tuple[float, dict | None]] = {}
        self._lock = threading.Lock()

    def _cached(self, node: str, now: float) -> tuple[bool, dict | None]:
        with self._lock:
            hit = self._cache.get(node)
        if hit is not None and now - hit[0] < (self.TTL if hit[1] is not None else self.MISSING_TTL):
            return True, hit[1]
        return False, None

    def _remember(self, coords: dict[str, dict | None], now: float) -> None:
        with self._lock:
            if len(self._cache) + len(coords) > self.MAX_CACHED:
                self._cache.clear()
            for node, coord in list(coords.items())[: self.MAX_CACHED]:
                self._cache[node] = (now, coord)

    def of(self, node: str) -> dict | None:
        now = time.monotonic()
        known, coord = self._cached(node, now)
        if known:
            return coord
        with consul_errors(self.c, f"reading the network coordinate of {node}"):
            _, rows = self.c.coordinate.node(urllib.parse.quote(node, safe=""))
        row = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else {}
        coord = _valid_coordinate(row.get("Coord"))
        self._remember({node: coord}, now)
        return coord

    def _load_all(self, nodes: list[str]) -> None:
        now = time.monotonic()
        with consul_errors(self.c, "reading network coordinates"):
            _, rows = self.c.coordinate.nodes()
        found = {
            r["Node"]: _valid_coordinate(r.get("Coord"))
            for r in (rows if isinstance(rows, list) else [])
            if isinstance(r, dict) and isinstance(r.get("Node"), str)
        }
        self._remember({n: found.get(n) for n in nodes}, now)

    def nearest(self, self_node: str, holders: list[Holder]) -> list[Holder]:
        """`holders` with their RTT from `self_node`, nearest first (stable for ties)."""
        if not holders:
            return []
        now = time.monotonic()
        nodes = list(dict.fromkeys([self_node, *(h.node for h in holders)]))
        unknown = [n for n in nodes if not self._cached(n, now)[0]]
        if len(unknown) > self.BULK:
            self._load_all(unknown)
        mine = self.of(self_node)
        out = [Holder(h.node, h.address, h.port, distance(mine, self.of(h.node))) for h in holders]
        out.sort(key=lambda h: h.rtt)
        return out

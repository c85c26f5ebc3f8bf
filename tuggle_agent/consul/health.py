"""Finding the nodes that hold an object, nearest first.

Consul's `near=_agent` sorts by round-trip time, but the `passing` filter then
swaps failing entries with the last one, so the order that comes back is not
reliable (consul-semantics 6.1).  We therefore re-sort by RTT computed from
`/v1/coordinate/nodes`, the same Vivaldi estimate Consul uses.
"""

from __future__ import annotations

import math
import time
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


class HolderFinder:
    # Network coordinates drift slowly; re-reading them for every source choice would
    # double the Consul requests of a fetch for no gain.
    COORDINATE_TTL = 10.0

    def __init__(self, client: consul.Consul, namespace: str):
        self.c = client
        self.ns = namespace
        self._coords: dict[str, dict | None] = {}
        self._coords_at = -math.inf

    def holders(self, tag: str, self_node: str) -> list[Holder]:
        """Passing holders of `tag` other than this node, sorted by RTT from it."""
        return self._passing(tag, self_node)[1]

    def holders_index(
        self, tag: str, self_node: str, index: str | None = None, wait: str | None = None
    ) -> tuple[str | None, list[Holder]]:
        """holders(), with the Raft index to block on: with `index`, a blocking query that
        returns when the list changes or after `wait`."""
        return self._passing(tag, self_node, index, wait)

    def peers(self, self_node: str) -> dict[str, Holder]:
        """Every passing tuggle node but this one, by node name (for partial holders)."""
        return {h.node: h for h in self._passing(None, self_node)[1]}

    def _passing(
        self, tag: str | None, self_node: str, index: str | None = None, wait: str | None = None
    ) -> tuple[str | None, list[Holder]]:
        with consul_errors(self.c, f"looking up holders of {tag or 'any object'}"):
            index, entries = self.c.health.service(
                self.ns, tag=tag, passing=True, near="_agent", index=index, wait=wait
            )
        by_node = self._coordinates()
        mine = by_node.get(self_node)
        out = []
        for e in entries:
            node = e["Node"]["Node"]
            if node == self_node:
                continue
            address = e["Service"].get("Address") or e["Node"]["Address"]
            out.append(Holder(node, address, int(e["Service"]["Port"]), distance(mine, by_node.get(node))))
        out.sort(key=lambda h: h.rtt)  # stable: ties keep Consul's order
        return index, out

    def _coordinates(self) -> dict[str, dict | None]:
        now = time.monotonic()
        if now - self._coords_at > self.COORDINATE_TTL:
            with consul_errors(self.c, "reading network coordinates"):
                _, coords = self.c.coordinate.nodes()
            self._coords = {c["Node"]: c.get("Coord") for c in coords or []}
            self._coords_at = now
        return self._coords

"""Who fetched from whom: one edge per completed fetch (the `?graph` data)."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    start: float
    end: float
    elapsed: float

    def to_json(self) -> bytes:
        return json.dumps(
            {"from": self.source, "to": self.target, "start": self.start, "end": self.end, "elapsed": self.elapsed}
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> Edge | None:
        """None for anything that is not a well-formed edge: KV is untrusted input."""
        try:
            d = json.loads(raw or b"")
            edge = cls(str(d["from"]), str(d["to"]), float(d["start"]), float(d["end"]), float(d["elapsed"]))
        except (TypeError, ValueError, KeyError, AttributeError):
            return None
        if not edge.source or not edge.target or len(edge.source) > 256 or len(edge.target) > 256:
            return None
        if not all(map(_finite, (edge.start, edge.end, edge.elapsed))):
            return None
        return edge


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")

"""Who fetched from whom: one edge per completed fetch (the `?graph` data), plus one per
source a fetch switched away from (`left_because`: why it left: slow, sink, reranked,
broken, corrupt; None for the source that finished the fetch)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_REASON = re.compile(r"[a-z_]{1,32}")  # a switch reason: a short word, safe in DOT labels


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    start: float
    end: float
    elapsed: float
    left_because: str | None = None

    def to_json(self) -> bytes:
        d: dict = {
            "from": self.source,
            "to": self.target,
            "start": self.start,
            "end": self.end,
            "elapsed": self.elapsed,
        }
        if self.left_because is not None:
            d["left_because"] = self.left_because
        return json.dumps(d).encode()

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> Edge | None:
        """None for anything that is not a well-formed edge: KV is untrusted input."""
        try:
            d = json.loads(raw or b"")
            edge = cls(str(d["from"]), str(d["to"]), float(d["start"]), float(d["end"]), float(d["elapsed"]))
            why = d.get("left_because")
        except (TypeError, ValueError, KeyError, AttributeError):
            return None
        if why is not None:
            if not isinstance(why, str) or not _REASON.fullmatch(why):
                return None
            edge = cls(edge.source, edge.target, edge.start, edge.end, edge.elapsed, why)
        if not edge.source or not edge.target or len(edge.source) > 256 or len(edge.target) > 256:
            return None
        if not all(map(_finite, (edge.start, edge.end, edge.elapsed))):
            return None
        return edge


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")

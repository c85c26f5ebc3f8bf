"""Network coordinates: the synthetic Vivaldi coordinates of the nodes, the
distance between two of them, and ordering rows by distance.

The dev agent has no gossip to measure RTTs, so coordinates are synthetic:
zones sit 20 ms apart on separate axes and members of a zone ~0.2 ms apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import StateError

if TYPE_CHECKING:
    from .store import Store

DIMENSIONS = 8
ZONE_DISTANCE = 0.020  # seconds between zone centres
MEMBER_OFFSET = 0.0001  # seconds from a zone centre to each member
HEIGHT = 1e-5
TOPIC = "coordinates"


def coordinate(vec: list[float], error: float = 1.5, adjustment: float = 0.0, height: float = HEIGHT) -> dict:
    if len(vec) != DIMENSIONS:
        raise ValueError(f"a coordinate has {DIMENSIONS} dimensions, got {len(vec)}")
    # serf's coordinate.Coordinate field order
    return {"Vec": [float(v) for v in vec], "Error": error, "Adjustment": adjustment, "Height": height}


def zone_coordinate(zone: int, member: int) -> dict:
    """Coordinate of the `member`-th node (0-based) of `zone` (0-based, < 8)."""
    if not 0 <= zone < DIMENSIONS:
        raise ValueError(f"at most {DIMENSIONS} zones are supported")
    vec = [0.0] * DIMENSIONS
    vec[zone] = ZONE_DISTANCE / math.sqrt(2)  # centres on separate axes: 20 ms apart
    vec[member % DIMENSIONS] += MEMBER_OFFSET * (1 + member // DIMENSIONS)
    return coordinate(vec)


def distance(a: dict | None, b: dict | None) -> float:
    """Estimated RTT in seconds (serf's DistanceTo / lib.ComputeDistance)."""
    if a is None or b is None:
        return math.inf
    d = math.dist(a["Vec"], b["Vec"]) + a["Height"] + b["Height"]
    adjusted = d + a["Adjustment"] + b["Adjustment"]
    return adjusted if adjusted > 0 else d


def sort_by_distance(store: Store, source: str, rows: list, node_of: Callable[[object], str]) -> list:
    """Rows in ascending RTT from node `source`, unknown last, stable. No
    source coordinate means no sorting at all, as in Consul."""
    coords = store.coordinates
    origin = coords.get(source)
    if origin is None:
        return rows
    return sorted(rows, key=lambda row: distance(origin, coords.get(node_of(row))))


def coordinate_rows(store: Store, node: str | None = None) -> list[dict]:
    """/v1/coordinate rows of every node, or of one node ([] if unknown)."""
    names = sorted(store.coordinates) if node is None else [node] if node in store.coordinates else []
    return [{"Node": n, "Segment": "", "Coord": store.coordinates[n]} for n in names]


def set_coordinate(store: Store, node: str, value: dict, strict: bool = True) -> None:
    """Store a node's coordinate. Consul's batch update silently drops
    coordinates of unknown nodes (strict=False); the test hook refuses them."""
    with store.write() as txn:
        if node not in store.nodes:
            if strict:
                raise StateError("Missing node registration")
            return
        store.coordinates[node] = value
        txn.touch("coordinates", TOPIC)

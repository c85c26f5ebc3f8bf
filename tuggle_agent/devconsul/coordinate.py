"""Network coordinates (`/v1/coordinate/`), Vivaldi distance and `?near=`.

The dev agent has no gossip to measure RTTs, so coordinates are synthetic:
zones sit 20 ms apart on separate axes and members of a zone ~0.2 ms apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from .request import HTTPError, Request, Response, Routes
from .errors import StateError
from .state import Interest
from .version import DATACENTER

if TYPE_CHECKING:
    from .state import Store

DIMENSIONS = 8
ZONE_DISTANCE = 0.020  # seconds between zone centres
MEMBER_OFFSET = 0.0001  # seconds from a zone centre to each member
HEIGHT = 1e-5
TOPIC = "coordinates"

routes = Routes()


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


def sort_near(req: Request, rows: list, node_of: Callable[[object], str]) -> list:
    """Apply `?near=`: ascending RTT from the source node, unknown last, stable.
    No source coordinate means no sorting at all, as in Consul."""
    near = req.get("near")
    if not near:
        return rows
    if near == "_agent":
        near = req.agent.name
    coords = req.agent.store.coordinates
    source = coords.get(near)
    if source is None:
        return rows
    return sorted(rows, key=lambda row: distance(source, coords.get(node_of(row))))


def _rows(store: Store, node: str | None = None) -> list[dict]:
    names = sorted(store.coordinates) if node is None else [node] if node in store.coordinates else []
    return [{"Node": n, "Segment": "", "Coord": store.coordinates[n]} for n in names]


@routes.add("/v1/coordinate/datacenters", "GET")
def coordinate_datacenters(req: Request) -> Response:
    with req.agent.store.lock:
        coords = [{"Node": r["Node"], "Coord": r["Coord"]} for r in _rows(req.agent.store)]
    return Response.json([{"Datacenter": DATACENTER, "AreaID": "wan", "Coordinates": coords}])


def _read(req: Request, node: str | None) -> Response:
    store = req.agent.store

    def run():
        rows = _rows(store, node)
        return store.max_index("coordinates"), rows, bool(rows) or node is None

    index, rows = req.blocking_read(Interest.of(TOPIC), run)
    if node is not None and not rows:
        return Response(404, headers={"X-Consul-Index": str(index)})
    return Response.json(rows, index=index, leader=True)


@routes.add("/v1/coordinate/nodes", "GET")
def coordinate_nodes(req: Request) -> Response:
    return _read(req, None)


@routes.add("/v1/coordinate/node/", "GET")
def coordinate_node(req: Request) -> Response:
    return _read(req, req.tail)


@routes.add("/v1/coordinate/update", "PUT")
def coordinate_update(req: Request) -> Response:
    req.check_dc()
    body = req.fields()
    coord = body.sub("Coord")
    try:
        value = coordinate(
            list(coord.get("Vec", [])),
            float(coord.get("Error", 1.5)),
            float(coord.get("Adjustment", 0.0)),
            float(coord.get("Height", HEIGHT)),
        )
    except (TypeError, ValueError) as err:
        raise HTTPError(400, f"Request decode failed: {err}") from err
    set_coordinate(req.agent.store, body.get("Node", ""), value, strict=False)
    return Response.json(True)


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

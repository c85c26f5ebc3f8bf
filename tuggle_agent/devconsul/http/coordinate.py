"""Coordinate endpoints (`/v1/coordinate/`) and `?near=` sorting for the
catalog and health endpoints.

ACLs: reads leave out nodes without node:read; an update needs node:write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..state.acl_rules import WRITE
from ..state.coordinates import HEIGHT, TOPIC, coordinate, coordinate_rows, set_coordinate, sort_by_distance
from ..state.store import Interest
from ..version import DATACENTER
from .request import HTTPError, Request, Response, Routes

routes = Routes()


def sort_near(req: Request, rows: list, node_of: Callable[[Any], str]) -> list:
    """Apply `?near=`; `_agent` stands for the answering agent's node."""
    near = req.get("near")
    if not near:
        return rows
    return sort_by_distance(req.agent.store, req.agent.name if near == "_agent" else near, rows, node_of)


@routes.add("/v1/coordinate/datacenters", "GET")
def coordinate_datacenters(req: Request) -> Response:
    with req.agent.store.lock:
        coords = [{"Node": r["Node"], "Coord": r["Coord"]} for r in coordinate_rows(req.agent.store)]
    return Response.json([{"Datacenter": DATACENTER, "AreaID": "wan", "Coordinates": coords}])


def _read(req: Request, node: str | None) -> Response:
    store = req.agent.store

    def run():
        rows = req.visible(coordinate_rows(store, node), lambda r: req.authz.can_read_node(r["Node"]))
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
    req.authz.require("node", body.get("Node", ""), WRITE)
    set_coordinate(req.agent.store, body.get("Node", ""), value, strict=False)
    return Response.json(True)

"""Health endpoints (`/v1/health/`): catalog instances joined with their checks.

ACLs: rows the token may not read are left out after ?filter= and before
?passing (an instance needs node:read and service:read, a check node:read
and, for a service check, service:read); a connect query for a service the
token may not read answers nothing.
"""

from __future__ import annotations

from ..codec import parse_bool
from ..state.catalog import INTEREST, Catalog
from ..state.structs import STATUSES, node_service
from .coordinate import sort_near
from .filter import apply_filter
from .request import HTTPError, Request, Response, Routes

routes = Routes()


def _passing_param(req: Request) -> bool:
    if not req.has("passing"):
        return False
    text = req.get("passing")
    if text == "":
        return True
    try:
        return parse_bool(text)
    except ValueError as err:
        raise HTTPError(400, "Invalid value for ?passing") from err


def filter_non_passing(entries: list[dict]) -> list[dict]:
    """Consul's filterNonPassing: a failing entry is swapped with the last one
    and the slice shortened, so survivors of a ?near sort lose their order."""
    entries = list(entries)
    n, i = len(entries), 0
    while i < n:
        if any(check["Status"] != "passing" for check in entries[i]["Checks"]):
            entries[i] = entries[n - 1]
            n -= 1
            continue
        i += 1
    return entries[:n]


def _read(req: Request, build, index_of) -> Response:
    catalog = req.agent.catalog
    index, result = req.blocking_read(INTEREST, lambda: (index_of(catalog), build(catalog), True))
    return Response.json(result, index=index, leader=True)


@routes.add("/v1/health/service/", "GET")
def health_service(req: Request) -> Response:
    name = req.tail
    if not name:
        raise HTTPError(400, "Missing service name")
    passing = _passing_param(req)

    def build(catalog: Catalog) -> list[dict]:
        if req.get("peer"):
            return []
        return _service_entries(req, catalog, catalog.instances(name, req.getall("tag")), passing)

    return _read(req, build, lambda catalog: catalog.service_index(name))


def _service_entries(req: Request, catalog: Catalog, instances: list[tuple[dict, dict]], passing: bool) -> list[dict]:
    entries = [
        {
            "Node": node,
            "Service": node_service(service),
            "Checks": catalog.node_checks(node["Node"], "") + catalog.node_checks(node["Node"], service["ID"]),
        }
        for node, service in instances
    ]
    readable = req.visible(
        apply_filter(req, entries), lambda e: req.authz.can_read_instance(e["Node"]["Node"], e["Service"]["Service"])
    )
    entries = sort_near(req, readable, lambda e: e["Node"]["Node"])
    return filter_non_passing(entries) if passing else entries


def _check_rows(req: Request, rows: list[dict]) -> list[dict]:
    readable = req.visible(apply_filter(req, rows), lambda c: req.authz.can_read_instance(c["Node"], c["ServiceName"]))
    return sort_near(req, readable, lambda c: c["Node"])


@routes.add("/v1/health/checks/", "GET")
def health_checks(req: Request) -> Response:
    name = req.tail

    def build(catalog: Catalog) -> list[dict]:
        rows = [c for node, s in catalog.instances(name) for c in catalog.node_checks(node["Node"], s["ID"])]
        return _check_rows(req, rows)

    return _read(req, build, lambda catalog: catalog.service_index(name))


@routes.add("/v1/health/node/", "GET")
def health_node(req: Request) -> Response:
    return _read(
        req,
        lambda catalog: _check_rows(req, catalog.node_checks(req.tail)),
        lambda catalog: catalog.store.max_index("nodes", "checks"),
    )


@routes.add("/v1/health/state/", "GET")
def health_state(req: Request) -> Response:
    state = req.tail
    if state != "any" and state not in STATUSES:
        raise HTTPError(400, "Invalid state")

    def build(catalog: Catalog) -> list[dict]:
        rows = [c for c in catalog.all_checks() if state == "any" or c["Status"] == state]
        return _check_rows(req, rows)

    return _read(req, build, lambda catalog: catalog.store.max_index("checks"))


@routes.add("/v1/health/connect/", "GET")
def health_connect(req: Request) -> Response:
    passing = _passing_param(req)

    def build(catalog: Catalog) -> list[dict]:
        if not req.authz.can_read_service(req.tail):
            return []  # proxies of a service the token may not read: none
        return _service_entries(req, catalog, catalog.connect_instances(req.tail), passing)

    return _read(req, build, lambda catalog: catalog.service_index(req.tail))


@routes.add("/v1/health/ingress/", "GET")
def health_ingress(req: Request) -> Response:
    return _read(req, lambda catalog: [], lambda catalog: catalog.service_index(req.tail))

"""Catalog endpoints (`/v1/catalog/`): blocking reads of nodes and service
instances, and the direct register/deregister calls."""

from __future__ import annotations

from ..codec import Fields, go_map
from ..state.catalog import INTEREST, Catalog, node_record
from ..state.structs import catalog_service, health_check, node_service, parse_check, parse_service
from ..version import DATACENTER
from .coordinate import sort_near
from .filter import apply_filter
from .request import HTTPError, Request, Response, Routes

routes = Routes()


def _catalog_read(req: Request, build, index_of=lambda c: c.store.max_index("nodes", "services", "checks")):
    catalog = req.agent.catalog

    def run():
        result = build(catalog)
        return index_of(catalog), result, True

    index, result = req.blocking_read(INTEREST, run)
    return Response.json(result, index=index, leader=True)


@routes.add("/v1/catalog/datacenters", "GET")
def catalog_datacenters(req: Request) -> Response:
    return Response.json([DATACENTER])


@routes.add("/v1/catalog/nodes", "GET")
def catalog_nodes(req: Request) -> Response:
    def build(catalog: Catalog) -> list[dict]:
        nodes = [catalog.store.nodes[n] for n in sorted(catalog.store.nodes)]
        nodes = sort_near(req, nodes, lambda n: n["Node"])
        return apply_filter(req, nodes)

    return _catalog_read(req, build, lambda c: c.store.max_index("nodes"))


@routes.add("/v1/catalog/services", "GET")
def catalog_services(req: Request) -> Response:
    def build(catalog: Catalog) -> dict:
        rows = [
            {**catalog_service(catalog.store.nodes[n], s)}
            for n in sorted(catalog.store.services)
            for s in catalog.store.services[n].values()
        ]
        result: dict[str, set[str]] = {}
        for row in apply_filter(req, rows):
            result.setdefault(row["ServiceName"], set()).update(row["ServiceTags"])
        return {name: sorted(tags) for name, tags in sorted(result.items())}

    return _catalog_read(req, build, lambda c: c.store.max_index("services"))


@routes.add("/v1/catalog/service/", "GET")
def catalog_service_nodes(req: Request) -> Response:
    name = req.tail
    if not name:
        raise HTTPError(400, "Missing service name")

    def build(catalog: Catalog) -> list[dict]:
        if req.get("peer"):
            return []
        rows = [catalog_service(n, s) for n, s in catalog.instances(name, req.getall("tag"))]
        return apply_filter(req, sort_near(req, rows, lambda r: r["Node"]))

    return _catalog_read(req, build, lambda c: c.service_index(name))


@routes.add("/v1/catalog/connect/", "GET")
def catalog_connect(req: Request) -> Response:
    def build(catalog: Catalog) -> list[dict]:
        rows = [catalog_service(n, s) for n, s in catalog.connect_instances(req.tail)]
        return [] if req.get("peer") else apply_filter(req, rows)

    return _catalog_read(req, build, lambda c: c.service_index(req.tail))


@routes.add("/v1/catalog/gateway-services/", "GET")
def catalog_gateway_services(req: Request) -> Response:
    # Gateways need config entries, which the dev agent does not keep.
    return _catalog_read(req, lambda catalog: [], lambda c: c.store.max_index("services"))


@routes.add("/v1/catalog/node/", "GET")
def catalog_node(req: Request) -> Response:
    def build(catalog: Catalog) -> dict | None:
        node = catalog.store.nodes.get(req.tail)
        if node is None:
            return None
        services = [node_service(s) for s in catalog.store.services[req.tail].values()]
        services = apply_filter(req, services)
        return {"Node": node, "Services": {s["ID"]: s for s in sorted(services, key=lambda s: s["ID"])}}

    return _catalog_read(req, build)


@routes.add("/v1/catalog/register", "PUT")
def catalog_register(req: Request) -> Response:
    req.check_dc()
    body = req.fields()
    req.check_dc(body.get("Datacenter", ""))
    name, address = body.get("Node", ""), body.get("Address", "")
    if not name or not address:
        raise HTTPError(400, "Must provide node and address")
    catalog, store = req.agent.catalog, req.agent.store
    with store.write() as txn:
        old = store.nodes.get(name)
        if not (body.get("SkipNodeUpdate") and old):
            record = node_record(name, body.get("ID", ""), address, body.get("NodeMeta"))
            record["TaggedAddresses"] = go_map(body.get("TaggedAddresses") or {})
            catalog.ensure_node(txn, record)
        service = None
        if body.get("Service"):
            service_body = body.sub("Service")
            raw = dict(service_body.raw)
            raw.setdefault("Name", service_body.get("Service", ""))
            service, _ = parse_service(Fields(raw))
            catalog.ensure_service(txn, name, service)
        checks = body.items("Checks") + ([body.sub("Check")] if body.get("Check") else [])
        for fields in checks:
            check = parse_check(fields)
            owner = store.services[name].get(check.service_id)
            catalog.ensure_check(txn, health_check(name, check, check.status or "critical", check.output, owner))
    return Response.json(True)


@routes.add("/v1/catalog/deregister", "PUT")
def catalog_deregister(req: Request) -> Response:
    req.check_dc()
    body = req.fields()
    req.check_dc(body.get("Datacenter", ""))
    node = body.get("Node", "")
    if not node:
        raise HTTPError(400, "Must provide node")
    catalog = req.agent.catalog
    with req.agent.store.write() as txn:
        if body.get("ServiceID"):
            catalog.remove_service(txn, node, body.get("ServiceID"))
        elif body.get("CheckID"):
            catalog.remove_check(txn, node, body.get("CheckID"))
        else:
            catalog.deregister_node(txn, node)
    return Response.json(True)

"""Catalog endpoints (`/v1/catalog/`): blocking reads of nodes and service
instances, and the direct register/deregister calls.

ACLs as Consul's catalog applies them: reads leave out what the token may
not read (a node needs node:read, a service instance node:read and
service:read) after the ?filter= expression, so the filtered-by-ACLs header
only speaks of rows the caller asked for; register/deregister are vetted per
node, service and check (vetRegisterWithACL / vetDeregisterWithACL).
"""

from __future__ import annotations

from ..codec import Fields, go_map
from ..errors import StateError
from ..state.acl_rules import WRITE
from ..state.catalog import INTEREST, Catalog, node_record, same_record
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
        return req.visible(apply_filter(req, nodes), lambda n: req.authz.can_read_node(n["Node"]))

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
        readable = req.visible(sorted(result), req.authz.can_read_service)
        return {name: sorted(result[name]) for name in readable}

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
        return _readable_rows(req, apply_filter(req, sort_near(req, rows, lambda r: r["Node"])))

    return _catalog_read(req, build, lambda c: c.service_index(name))


def _readable_rows(req: Request, rows: list[dict]) -> list[dict]:
    return req.visible(rows, lambda r: req.authz.can_read_instance(r["Node"], r["ServiceName"]))


@routes.add("/v1/catalog/connect/", "GET")
def catalog_connect(req: Request) -> Response:
    def build(catalog: Catalog) -> list[dict]:
        rows = [catalog_service(n, s) for n, s in catalog.connect_instances(req.tail)]
        return [] if req.get("peer") else _readable_rows(req, apply_filter(req, rows))

    return _catalog_read(req, build, lambda c: c.service_index(req.tail))


@routes.add("/v1/catalog/gateway-services/", "GET")
def catalog_gateway_services(req: Request) -> Response:
    # Gateways need config entries, which the dev agent does not keep.
    return _catalog_read(req, lambda catalog: [], lambda c: c.store.max_index("services"))


@routes.add("/v1/catalog/node/", "GET")
def catalog_node(req: Request) -> Response:
    def build(catalog: Catalog) -> dict | None:
        node = catalog.store.nodes.get(req.tail)
        if node is None or not req.visible([node], lambda n: req.authz.can_read_node(n["Node"])):
            return None
        services = [node_service(s) for s in catalog.store.services[req.tail].values()]
        services = req.visible(apply_filter(req, services), lambda s: req.authz.can_read_service(s["Service"]))
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
    record = node_record(name, body.get("ID", ""), address, body.get("NodeMeta"))
    record["TaggedAddresses"] = go_map(body.get("TaggedAddresses") or {})
    service = None
    if body.get("Service"):
        service_body = body.sub("Service")
        raw = dict(service_body.raw)
        raw.setdefault("Name", service_body.get("Service", ""))
        service, _ = parse_service(Fields(raw))
    checks = [parse_check(f) for f in body.items("Checks") + ([body.sub("Check")] if body.get("Check") else [])]
    catalog, store = req.agent.catalog, req.agent.store
    with store.write() as txn:
        old = store.nodes.get(name)
        update_node = not (body.get("SkipNodeUpdate") and old)
        _vet_register(req, name, old is None or (update_node and not same_record(old, record)), service, checks)
        if update_node:
            catalog.ensure_node(txn, record)
        if service is not None:
            catalog.ensure_service(txn, name, service)
        for check in checks:
            owner = store.services[name].get(check.service_id)
            catalog.ensure_check(txn, health_check(name, check, check.status or "critical", check.output, owner))
    return Response.json(True)


def _vet_register(req: Request, node: str, changes_node: bool, service: dict | None, checks: list) -> None:
    """node:write to change the node, service:write for the service (and for
    the one it replaces) and for the services of its checks."""
    authz, services = req.authz, req.agent.store.services.get(node, {})
    if changes_node:
        authz.require("node", node, WRITE)
    if service is not None:
        authz.require("service", service["Service"], WRITE)
        if (replaced := services.get(service["ID"])) is not None:
            authz.require("service", replaced["Service"], WRITE)
    for check in checks:
        if not check.service_id:
            authz.require("node", node, WRITE)
        elif service is None or check.service_id != service["ID"]:
            other = services.get(check.service_id)
            if other is None:
                raise StateError(f"Unknown service ID '{check.service_id}' for check ID '{check.check_id}'")
            authz.require("service", other["Service"], WRITE)


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
        _vet_deregister(req, node, body.get("ServiceID", ""), body.get("CheckID", ""))
        if body.get("ServiceID"):
            catalog.remove_service(txn, node, body.get("ServiceID"))
        elif body.get("CheckID"):
            catalog.remove_check(txn, node, body.get("CheckID"))
        else:
            catalog.deregister_node(txn, node)
    return Response.json(True)


def _vet_deregister(req: Request, node: str, service_id: str, check_id: str) -> None:
    """node:write allows every deregistration; without it a service needs
    service:write, a service check its service's, a node check node:write."""
    authz, store = req.authz, req.agent.store
    if authz.can("node", node, WRITE):
        return
    if service_id:
        service = store.services.get(node, {}).get(service_id)
        if service is None:
            raise StateError(f"Unknown service ID '{service_id}'")
        authz.require("service", service["Service"], WRITE)
    elif check_id:
        check = store.checks.get(node, {}).get(check_id)
        if check is None:
            raise StateError(f"Unknown check ID '{check_id}'")
        resource, name = ("service", check["ServiceName"]) if check["ServiceID"] else ("node", node)
        authz.require(resource, name, WRITE)
    else:
        authz.require("node", node, WRITE)

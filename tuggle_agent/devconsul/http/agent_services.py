"""Agent endpoints for the agent's own services and checks: listing,
register/deregister, TTL updates, maintenance, and local health
(`/v1/agent/services`, `/v1/agent/service/...`, `/v1/agent/check/...`,
`/v1/agent/health/service/...`). Agent-local: no index or leader headers.

ACLs: listings leave out what the token may not read (a service needs
service:read, a node check node:read); registering a service needs
service:write on it (and on the one it replaces, and for a proxy on the
service it fronts); changing a check needs service:write on its service, or
node:write on the agent's node for a node check; node maintenance needs
node:write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..codec import parse_bool
from ..state.acl_rules import READ, WRITE
from ..state.structs import STATUSES, agent_service, health_check
from .filter import apply_filter
from .request import HTTPError, Request, Response, Routes

if TYPE_CHECKING:
    from ..node.agent import Agent

routes = Routes()


@routes.add("/v1/agent/services", "GET")
def agent_services(req: Request) -> Response:
    with req.agent.store.lock:
        services = [agent_service(s) for s in req.agent.services.values()]
    services = req.visible(apply_filter(req, services), lambda s: req.authz.can_read_service(s["Service"]))
    return Response.json({s["ID"]: s for s in sorted(services, key=lambda s: s["ID"])})


@routes.add("/v1/agent/service/", "GET")
def agent_service_definition(req: Request) -> Response:
    with req.agent.store.lock:
        service = req.agent.services.get(req.tail)
    if service is None:
        raise HTTPError(404, f"unknown service ID: {req.tail}")
    req.authz.require("service", service["Service"], READ)
    return Response.json(agent_service(service))


def _local_checks(agent: Agent) -> list[dict]:
    with agent.store.lock:
        return [
            health_check(agent.name, c.definition, c.status, c.output, agent.services.get(c.definition.service_id))
            for c in agent.checks.values()
        ]


def _can_read_check(req: Request, check: dict) -> bool:
    """A service check needs service:read, a node check node:read."""
    if check["ServiceID"]:
        return req.authz.can_read_service(check["ServiceName"])
    return req.authz.can_read_node(check["Node"])


@routes.add("/v1/agent/checks", "GET")
def agent_checks(req: Request) -> Response:
    checks = req.visible(apply_filter(req, _local_checks(req.agent)), lambda c: _can_read_check(req, c))
    return Response.json({c["CheckID"]: c for c in sorted(checks, key=lambda c: c["CheckID"])})


@routes.add("/v1/agent/service/register", "PUT")
def agent_service_register(req: Request) -> Response:
    replace = req.has("replace-existing-checks") and req.get("replace-existing-checks") != "false"
    req.agent.register_service(req.fields(), replace, vet=lambda service: _vet_service(req, service))
    return Response()


def _vet_service(req: Request, service: dict) -> None:
    """service:write on the service, on the one it replaces, and for a
    proxy on the service it fronts (Consul's vetServiceRegister)."""
    authz = req.authz
    authz.require("service", service["Service"], WRITE)
    if (replaced := req.agent.services.get(service["ID"])) is not None:
        authz.require("service", replaced["Service"], WRITE)
    if service["Kind"] == "connect-proxy":
        authz.require("service", (service["Proxy"] or {}).get("DestinationServiceName", ""), WRITE)


def _require_service_write(req: Request, service_id: str) -> None:
    """Changing a registered service needs service:write on it; an unknown ID
    is left to the operation itself."""
    if (service := req.agent.services.get(service_id)) is not None:
        req.authz.require("service", service["Service"], WRITE)


def _require_check_write(req: Request, service_id: str) -> None:
    """A service check needs service:write on its service, a node check (or
    one of an unknown service) node:write on the agent's node."""
    service = req.agent.services.get(service_id) if service_id else None
    if service is not None:
        req.authz.require("service", service["Service"], WRITE)
    else:
        req.authz.require("node", req.agent.name, WRITE)


def _require_existing_check_write(req: Request, check_id: str) -> None:
    if (check := req.agent.checks.get(check_id)) is not None:
        _require_check_write(req, check.definition.service_id)


@routes.add("/v1/agent/service/deregister/", "PUT")
def agent_service_deregister(req: Request) -> Response:
    _require_service_write(req, req.tail)
    req.agent.deregister_service(req.tail)
    return Response()


@routes.add("/v1/agent/check/register", "PUT")
def agent_check_register(req: Request) -> Response:
    body = req.fields()
    _require_check_write(req, body.get("ServiceID", ""))
    _require_existing_check_write(req, body.get("CheckID") or body.get("ID") or body.get("Name", ""))
    req.agent.register_check(body)
    return Response()


@routes.add("/v1/agent/check/deregister/", "PUT")
def agent_check_deregister(req: Request) -> Response:
    _require_existing_check_write(req, req.tail)
    req.agent.deregister_check(req.tail)
    return Response()


def _ttl(status: str):
    def handler(req: Request) -> Response:
        _require_existing_check_write(req, req.tail)
        req.agent.ttl_update(req.tail, status, req.get("note"))
        return Response()

    return handler


for _verb, _status in (("pass", "passing"), ("warn", "warning"), ("fail", "critical")):
    routes.add(f"/v1/agent/check/{_verb}/", "PUT")(_ttl(_status))


@routes.add("/v1/agent/check/update/", "PUT")
def agent_check_update(req: Request) -> Response:
    body = req.fields()
    status = body.get("Status", "")
    if status not in STATUSES:
        raise HTTPError(400, f"Invalid check status: '{status}'")
    _require_existing_check_write(req, req.tail)
    req.agent.ttl_update(req.tail, status, body.get("Output", ""))
    return Response()


def _enable(req: Request) -> bool:
    try:
        return parse_bool(req.get("enable"))
    except ValueError as err:
        raise HTTPError(
            400, "Missing value for enable" if not req.get("enable") else "Invalid value for enable"
        ) from err


@routes.add("/v1/agent/maintenance", "PUT")
def agent_maintenance(req: Request) -> Response:
    enable = _enable(req)
    req.authz.require("node", req.agent.name, WRITE)
    req.agent.set_maintenance("_node_maintenance", "Node Maintenance Mode", "", enable, req.get("reason"))
    return Response()


@routes.add("/v1/agent/service/maintenance/", "PUT")
def agent_service_maintenance(req: Request) -> Response:
    service_id, enable = req.tail, _enable(req)
    if service_id not in req.agent.services:
        raise HTTPError(404, f'Unknown service ID "{service_id}"')
    _require_service_write(req, service_id)
    name = "Service Maintenance Mode"
    req.agent.set_maintenance(f"_service_maintenance:{service_id}", name, service_id, enable, req.get("reason"))
    return Response()


def _aggregate(checks: list[dict]) -> str:
    statuses = {c["Status"] for c in checks}
    for status in ("critical", "warning"):
        if status in statuses:
            return status
    return "passing"


def _health_response(req: Request, entries: list[tuple[dict, list[dict]]]) -> Response:
    status = _aggregate([c for _, checks in entries for c in checks])
    code = {"passing": 200, "warning": 429, "critical": 503}[status]
    if req.get("format") == "text":
        return Response.text(code, status)
    body = [
        {"AggregatedStatus": _aggregate(checks), "Service": agent_service(s), "Checks": checks} for s, checks in entries
    ]
    return Response.json(
        body[0] if len(body) == 1 and req.path.startswith("/v1/agent/health/service/id/") else body, status=code
    )


@routes.add("/v1/agent/health/service/id/", "GET")
def agent_health_service_id(req: Request) -> Response:
    agent, checks = req.agent, _local_checks(req.agent)
    with agent.store.lock:
        service = agent.services.get(req.tail)
    if service is None:
        return Response.text(404, f"ServiceId {req.tail} not found")
    req.authz.require("service", service["Service"], READ)
    return _health_response(req, [(service, [c for c in checks if c["ServiceID"] == req.tail])])


@routes.add("/v1/agent/health/service/name/", "GET")
def agent_health_service_name(req: Request) -> Response:
    req.authz.require("service", req.tail, READ)
    agent, checks = req.agent, _local_checks(req.agent)
    with agent.store.lock:
        services = [s for s in agent.services.values() if s["Service"] == req.tail]
    if not services:
        return Response.text(404, f"ServiceName {req.tail} Not Found")
    return _health_response(req, [(s, [c for c in checks if c["ServiceID"] == s["ID"]]) for s in services])

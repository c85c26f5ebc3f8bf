"""Agent endpoints (`/v1/agent/`): self, members, local services and checks,
TTL updates, maintenance, reload. These are agent-local: no index or
leader headers."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from ..codec import parse_bool
from ..state.structs import STATUSES, agent_service, health_check
from ..version import CONSUL_VERSION, DATACENTER
from .filter import apply_filter
from .request import HTTPError, Request, Response, Routes

if TYPE_CHECKING:
    from ..node.agent import Agent
    from ..state.datacenter import Member

routes = Routes()
MEMBER_ALIVE, MEMBER_FAILED = 1, 4  # serf member status codes
LOG_LEVELS = ("trace", "debug", "info", "warn", "err", "error", "warning")


def member(node: Member, size: int, wan: bool = False) -> dict:
    """A serf member as agent/members and agent/self show it; `size` is the
    number of servers the cluster expects."""
    name = f"{node.name}.{DATACENTER}" if wan else node.name
    tags = {
        "acls": "0",
        "build": f"{CONSUL_VERSION}:devconsul",
        "dc": DATACENTER,
        "expect": "0" if size == 1 else str(size),
        "ft_fs": "1",
        "ft_si": "1",
        "id": node.node_id,
        "port": str(node.server_port),
        "raft_vsn": "3",
        "role": "consul",
        "segment": "",
        "vsn": "2",
        "vsn_max": "3",
        "vsn_min": "2",
        "wan_join_port": "8302",
    }
    return {
        "Name": name,
        "Addr": node.address,
        "Port": node.serf_port,
        "Tags": tags,
        "Status": MEMBER_ALIVE if node.running else MEMBER_FAILED,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    }


@routes.add("/v1/agent/self", "GET")
def agent_self(req: Request) -> Response:
    agent = req.agent
    config = {
        "Datacenter": DATACENTER,
        "PrimaryDatacenter": DATACENTER,
        "NodeName": agent.name,
        "NodeID": agent.node_id,
        "Partition": "",
        "Revision": "devconsul",
        "Server": True,
        "Version": CONSUL_VERSION,
        "BuildDate": "2025-10-14T00:00:00Z",
    }
    leader = agent.datacenter.leader_addr()
    stats = {
        "agent": {"check_monitors": "0", "check_ttls": "0", "checks": str(len(agent.checks)), "services": str(len(agent.services))},
        "consul": {
            "bootstrap": "false",
            "known_datacenters": "1",
            "leader": str(leader == agent.server_addr).lower(),
            "leader_addr": leader,
            "server": "true",
        },
        "runtime": {"arch": "amd64", "os": "linux", "version": "devconsul"},
    }
    with agent.store.lock:
        coord = agent.store.coordinates.get(agent.name)
    return Response.json(
        {
            "Config": config,
            "DebugConfig": {"NodeName": agent.name, "Datacenter": DATACENTER, "ClientAddrs": [agent.address], "HTTPPort": agent.port},
            "Coord": coord,
            "Member": member(agent, len(agent.datacenter.members)),
            "Stats": stats,
            "Meta": {"consul-network-segment": "", "consul-version": CONSUL_VERSION},
            "xDS": {"SupportedProxies": {"envoy": []}, "Port": -1, "Ports": {"Plaintext": -1, "TLS": -1}},
        }
    )


@routes.add("/v1/agent/members", "GET")
def agent_members(req: Request) -> Response:
    wan = req.has("wan")
    return Response.json([member(m, len(req.agent.datacenter.members), wan) for m in req.agent.datacenter.members])


@routes.add("/v1/agent/services", "GET")
def agent_services(req: Request) -> Response:
    with req.agent.store.lock:
        services = [agent_service(s) for s in req.agent.services.values()]
    services = apply_filter(req, services)
    return Response.json({s["ID"]: s for s in sorted(services, key=lambda s: s["ID"])})


@routes.add("/v1/agent/service/", "GET")
def agent_service_definition(req: Request) -> Response:
    with req.agent.store.lock:
        service = req.agent.services.get(req.tail)
    if service is None:
        raise HTTPError(404, f"unknown service ID: {req.tail}")
    return Response.json(agent_service(service))


def _local_checks(agent: Agent) -> list[dict]:
    with agent.store.lock:
        return [
            health_check(agent.name, c.definition, c.status, c.output, agent.services.get(c.definition.service_id))
            for c in agent.checks.values()
        ]


@routes.add("/v1/agent/checks", "GET")
def agent_checks(req: Request) -> Response:
    checks = apply_filter(req, _local_checks(req.agent))
    return Response.json({c["CheckID"]: c for c in sorted(checks, key=lambda c: c["CheckID"])})


@routes.add("/v1/agent/service/register", "PUT")
def agent_service_register(req: Request) -> Response:
    replace = req.has("replace-existing-checks") and req.get("replace-existing-checks") != "false"
    req.agent.register_service(req.fields(), replace)
    return Response()


@routes.add("/v1/agent/service/deregister/", "PUT")
def agent_service_deregister(req: Request) -> Response:
    req.agent.deregister_service(req.tail)
    return Response()


@routes.add("/v1/agent/check/register", "PUT")
def agent_check_register(req: Request) -> Response:
    req.agent.register_check(req.fields())
    return Response()


@routes.add("/v1/agent/check/deregister/", "PUT")
def agent_check_deregister(req: Request) -> Response:
    req.agent.deregister_check(req.tail)
    return Response()


def _ttl(status: str):
    def handler(req: Request) -> Response:
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
    req.agent.ttl_update(req.tail, status, body.get("Output", ""))
    return Response()


def _enable(req: Request) -> bool:
    try:
        return parse_bool(req.get("enable"))
    except ValueError as err:
        raise HTTPError(400, "Missing value for enable" if not req.get("enable") else "Invalid value for enable") from err


@routes.add("/v1/agent/maintenance", "PUT")
def agent_maintenance(req: Request) -> Response:
    req.agent.set_maintenance("_node_maintenance", "Node Maintenance Mode", "", _enable(req), req.get("reason"))
    return Response()


@routes.add("/v1/agent/service/maintenance/", "PUT")
def agent_service_maintenance(req: Request) -> Response:
    service_id, enable = req.tail, _enable(req)
    if service_id not in req.agent.services:
        raise HTTPError(404, f'Unknown service ID "{service_id}"')
    name = "Service Maintenance Mode"
    req.agent.set_maintenance(f"_service_maintenance:{service_id}", name, service_id, enable, req.get("reason"))
    return Response()


@routes.add("/v1/agent/reload", "PUT")
def agent_reload(req: Request) -> Response:
    req.agent.reload()
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
    body = [{"AggregatedStatus": _aggregate(checks), "Service": agent_service(s), "Checks": checks} for s, checks in entries]
    return Response.json(body[0] if len(body) == 1 and req.path.startswith("/v1/agent/health/service/id/") else body, status=code)


@routes.add("/v1/agent/health/service/id/", "GET")
def agent_health_service_id(req: Request) -> Response:
    agent, checks = req.agent, _local_checks(req.agent)
    with agent.store.lock:
        service = agent.services.get(req.tail)
    if service is None:
        return Response.text(404, f"ServiceId {req.tail} not found")
    return _health_response(req, [(service, [c for c in checks if c["ServiceID"] == req.tail])])


@routes.add("/v1/agent/health/service/name/", "GET")
def agent_health_service_name(req: Request) -> Response:
    agent, checks = req.agent, _local_checks(req.agent)
    with agent.store.lock:
        services = [s for s in agent.services.values() if s["Service"] == req.tail]
    if not services:
        return Response.text(404, f"ServiceName {req.tail} Not Found")
    return _health_response(req, [(s, [c for c in checks if c["ServiceID"] == s["ID"]]) for s in services])


@routes.add("/v1/agent/metrics", "GET")
def agent_metrics(req: Request) -> Response:
    if req.get("format") == "prometheus":
        return Response(200, b"", {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
    stamp = time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime())
    return Response.json({"Timestamp": stamp, "Gauges": [], "Points": [], "Counters": [], "Samples": []})


@routes.add("/v1/agent/monitor", "GET")
def agent_monitor(req: Request) -> Response:
    level = req.get("loglevel", "info").lower()
    if level not in LOG_LEVELS:
        raise HTTPError(400, f"Unknown log level: {level}")
    # Log streaming is not simulated: the stream ends at once, empty.
    return Response(200, b"", {"Content-Type": "text/plain"})


@routes.add("/v1/agent/token/", "PUT")
def agent_token(req: Request) -> Response:
    raise HTTPError(401, "ACL support disabled")


@routes.add("/v1/agent/join/", "PUT")
def agent_join(req: Request) -> Response:
    return Response()  # every simulated node is already a member


@routes.add("/v1/agent/force-leave/", "PUT")
def agent_force_leave(req: Request) -> Response:
    return Response()


@routes.add("/v1/agent/leave", "PUT")
def agent_leave(req: Request) -> Response:
    # Answer first, then shut this node down, as the real agent does.
    threading.Timer(0.05, req.agent.stop).start()
    return Response()

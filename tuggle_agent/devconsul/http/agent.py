"""Agent endpoints about the agent itself (`/v1/agent/`): self, members,
reload, join/leave, metrics, monitor. Agent-local: no index or leader
headers. The agent's services and checks are in agent_services.

ACLs: self, metrics and monitor need agent:read on the agent's node; reload,
join and leave agent:write; force-leave operator:write; members leaves out
nodes without node:read.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from ..state.acl_rules import READ, WRITE
from ..version import CONSUL_VERSION, DATACENTER
from .request import HTTPError, Request, Response, Routes

if TYPE_CHECKING:
    from ..state.datacenter import Datacenter, Member

routes = Routes()
MEMBER_ALIVE, MEMBER_FAILED = 1, 4  # serf member status codes
LOG_LEVELS = ("trace", "debug", "info", "warn", "err", "error", "warning")


def member(node: Member, datacenter: Datacenter, wan: bool = False) -> dict:
    """A serf member as agent/members and agent/self show it."""
    name = f"{node.name}.{DATACENTER}" if wan else node.name
    size = len(datacenter.members)  # the servers the cluster expects
    tags = {
        "acls": "1" if datacenter.acl.enabled else "0",
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
    req.authz.require("agent", agent.name, READ)
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
        "agent": {
            "check_monitors": "0",
            "check_ttls": "0",
            "checks": str(len(agent.checks)),
            "services": str(len(agent.services)),
        },
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
            "DebugConfig": {
                "NodeName": agent.name,
                "Datacenter": DATACENTER,
                "ClientAddrs": [agent.address],
                "HTTPPort": agent.port,
            },
            "Coord": coord,
            "Member": member(agent, agent.datacenter),
            "Stats": stats,
            "Meta": {"consul-network-segment": "", "consul-version": CONSUL_VERSION},
            "xDS": {"SupportedProxies": {"envoy": []}, "Port": -1, "Ports": {"Plaintext": -1, "TLS": -1}},
        }
    )


@routes.add("/v1/agent/members", "GET")
def agent_members(req: Request) -> Response:
    datacenter = req.agent.datacenter
    members = req.visible(datacenter.members, lambda m: req.authz.can_read_node(m.name))
    return Response.json([member(m, datacenter, req.has("wan")) for m in members])


@routes.add("/v1/agent/reload", "PUT")
def agent_reload(req: Request) -> Response:
    req.authz.require("agent", req.agent.name, WRITE)
    req.agent.reload()
    return Response()


@routes.add("/v1/agent/metrics", "GET")
def agent_metrics(req: Request) -> Response:
    req.authz.require("agent", req.agent.name, READ)
    if req.get("format") == "prometheus":
        return Response(200, b"", {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
    stamp = time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime())
    return Response.json({"Timestamp": stamp, "Gauges": [], "Points": [], "Counters": [], "Samples": []})


@routes.add("/v1/agent/monitor", "GET")
def agent_monitor(req: Request) -> Response:
    req.authz.require("agent", req.agent.name, READ)
    level = req.get("loglevel", "info").lower()
    if level not in LOG_LEVELS:
        raise HTTPError(400, f"Unknown log level: {level}")
    # Log streaming is not simulated: the stream ends at once, empty.
    return Response(200, b"", {"Content-Type": "text/plain"})


@routes.add("/v1/agent/token/", "PUT")
def agent_token(req: Request) -> Response:
    if not req.agent.datacenter.acl.enabled:
        raise HTTPError(401, "ACL support disabled")
    req.authz.require("agent", req.agent.name, WRITE)
    raise HTTPError(404, f"tuggle-agent devconsul does not implement setting agent tokens (PUT {req.path})")


@routes.add("/v1/agent/join/", "PUT")
def agent_join(req: Request) -> Response:
    req.authz.require("agent", req.agent.name, WRITE)
    return Response()  # every simulated node is already a member


@routes.add("/v1/agent/force-leave/", "PUT")
def agent_force_leave(req: Request) -> Response:
    req.authz.require("operator", "", WRITE)
    return Response()


@routes.add("/v1/agent/leave", "PUT")
def agent_leave(req: Request) -> Response:
    req.authz.require("agent", req.agent.name, WRITE)
    # Answer first, then shut this node down, as the real agent does.
    threading.Timer(0.05, req.agent.stop).start()
    return Response()

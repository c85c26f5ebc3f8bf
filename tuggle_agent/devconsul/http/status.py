"""Raft status (`/v1/status/`). Every node is a server; the leader is the
first node that is up, so stopping node1 moves leadership like a failover."""

from __future__ import annotations

from .request import Request, Response, Routes

routes = Routes()


@routes.add("/v1/status/leader", "GET")
def status_leader(req: Request) -> Response:
    req.check_dc()
    return Response.json(req.agent.datacenter.leader_addr())


@routes.add("/v1/status/peers", "GET")
def status_peers(req: Request) -> Response:
    req.check_dc()
    return Response.json([m.server_addr for m in req.agent.datacenter.members])

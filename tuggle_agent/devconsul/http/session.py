"""Session endpoints (`/v1/session/`): create, destroy, renew and the
blocking reads of the session table.

ACLs: creating, renewing or destroying a session needs session:write on the
session's node; reads leave out the sessions of nodes without session:read.
"""

from __future__ import annotations

from ..state.acl_rules import READ, WRITE
from ..state.sessions import TOPIC, session_topic
from ..state.store import Interest
from .request import HTTPError, Request, Response, Routes

routes = Routes()


def _session_id(req: Request) -> str:
    if not req.tail:
        raise HTTPError(400, "Missing session")
    return req.tail


@routes.add("/v1/session/create", "PUT")
def session_create(req: Request) -> Response:
    req.check_dc()
    body = req.fields()
    req.authz.require("session", body.get("Node", "") or req.agent.name, WRITE)
    session_id = req.agent.sessions.create(body, req.agent.name)
    return Response.json({"ID": session_id})


def _require_write(req: Request, session_id: str) -> bool:
    """session:write on the node of an existing session; False if none."""
    session = req.agent.sessions.get(session_id)
    if session is not None:
        req.authz.require("session", session["Node"], WRITE)
    return session is not None


@routes.add("/v1/session/destroy/", "PUT")
def session_destroy(req: Request) -> Response:
    req.check_dc()
    session_id = _session_id(req)
    if _require_write(req, session_id):
        req.agent.sessions.destroy(session_id)
    return Response.json(True)


@routes.add("/v1/session/renew/", "PUT")
def session_renew(req: Request) -> Response:
    req.check_dc()
    session_id = _session_id(req)
    session = req.agent.sessions.renew(session_id) if _require_write(req, session_id) else None
    if session is None:
        raise HTTPError(404, f"Session id '{session_id}' not found")
    return Response.json([session])


def _read(req: Request, interest: Interest, **selector: str) -> Response:
    sessions, authz = req.agent.sessions, req.authz

    def run():
        index, result, found = sessions.query(**selector)
        return index, req.visible(result, lambda s: authz.can("session", s["Node"], READ)), found

    index, result = req.blocking_read(interest, run)
    return Response.json(result, index=index, leader=True)


@routes.add("/v1/session/info/", "GET")
def session_info(req: Request) -> Response:
    session_id = _session_id(req)
    return _read(req, Interest.of(session_topic(session_id)), session_id=session_id)


@routes.add("/v1/session/node/", "GET")
def session_node(req: Request) -> Response:
    if not req.tail:
        raise HTTPError(400, "Missing node name")
    return _read(req, Interest.of(TOPIC), node=req.tail)


@routes.add("/v1/session/list", "GET")
def session_list(req: Request) -> Response:
    return _read(req, Interest.of(TOPIC))

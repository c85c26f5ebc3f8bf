"""Session endpoints (`/v1/session/`): create, destroy, renew and the
blocking reads of the session table."""

from __future__ import annotations

from ..state.sessions import TOPIC
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
    session_id = req.agent.sessions.create(req.fields(), req.agent.name)
    return Response.json({"ID": session_id})


@routes.add("/v1/session/destroy/", "PUT")
def session_destroy(req: Request) -> Response:
    req.check_dc()
    req.agent.sessions.destroy(_session_id(req))
    return Response.json(True)


@routes.add("/v1/session/renew/", "PUT")
def session_renew(req: Request) -> Response:
    req.check_dc()
    session_id = _session_id(req)
    session = req.agent.sessions.renew(session_id)
    if session is None:
        raise HTTPError(404, f"Session id '{session_id}' not found")
    return Response.json([session])


def _read(req: Request, **selector: str) -> Response:
    sessions = req.agent.sessions
    index, result = req.blocking_read(Interest.of(TOPIC), lambda: sessions.query(**selector))
    return Response.json(result, index=index, leader=True)


@routes.add("/v1/session/info/", "GET")
def session_info(req: Request) -> Response:
    return _read(req, session_id=_session_id(req))


@routes.add("/v1/session/node/", "GET")
def session_node(req: Request) -> Response:
    if not req.tail:
        raise HTTPError(400, "Missing node name")
    return _read(req, node=req.tail)


@routes.add("/v1/session/list", "GET")
def session_list(req: Request) -> Response:
    return _read(req)

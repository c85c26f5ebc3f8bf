"""Event endpoints (`/v1/event/`): fire (gossiped to every live node) and
the agent-local, pseudo-blocking list.

ACLs: firing needs event:write on the name, and a refusal reads just
"Permission denied" (Consul's EventFire replaces the detailed text); the
list leaves out events without event:read.

The request body may hold at most 100 bytes (Consul 1.22, PR #22836 cites
the documented 100-byte payload; its status code is not confirmed, we answer
413 with the wording of the KV size error).
"""

from __future__ import annotations

from ..errors import PermissionDenied
from ..state.acl_rules import READ, WRITE
from ..state.events import check_size, index_of, make_event, topic
from ..state.store import Interest
from .request import HTTPError, Request, Response, Routes

MAX_BODY = 100

routes = Routes()


@routes.add("/v1/event/fire/", "PUT")
def event_fire(req: Request) -> Response:
    name = req.tail
    if not name:
        raise HTTPError(400, "Missing name")
    req.check_dc()
    if len(req.body) > MAX_BODY:
        raise HTTPError(413, f"Request body({len(req.body)} bytes) too large, max size: {MAX_BODY} bytes")
    event = make_event(name, req.body, req.get("node"), req.get("service"), req.get("tag"))
    if not req.authz.can("event", name, WRITE):
        raise PermissionDenied("Permission denied")
    check_size(event, req.body)
    req.agent.datacenter.fire_event(dict(event))
    return Response.json(event)  # LTime stays 0 here: gossip assigns it later


@routes.add("/v1/event/list", "GET")
def event_list(req: Request) -> Response:
    agent, name, authz = req.agent, req.get("name"), req.authz  # an unknown token fails before any wait
    timings = agent.timings
    min_index, timeout = req.blocking(
        default_wait=timings.event_list_max_wait, max_wait=timings.event_list_max_wait, jitter=False
    )

    def readable(event: dict) -> bool:
        return authz.can("event", event["Name"], READ)

    def current() -> int:
        return index_of([e for e in agent.events.named(name) if readable(e)])

    if min_index:
        # Agent-local pseudo blocking: wait while the (filtered) index still
        # equals the client's; events of other names re-run the check only.
        agent.store.wait_for_change(
            Interest.of(topic(agent.name)), lambda: current() == min_index, timeout, agent.stopping
        )
    with agent.store.lock:
        events = req.visible(agent.events.named(name), readable)
    return Response.json(events, index=index_of(events))  # no KnownLeader headers: agent-local

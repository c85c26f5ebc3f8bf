"""ACL endpoints (`/v1/acl/`): policies and tokens, enough of Consul's API
for py-consul's `acl.policy` and `acl.token` (create, read, update, delete,
list, clone, token/self).

Every endpoint answers 401 "ACL support disabled" while ACLs are off. Reads
need acl:read, writes acl:write; a token list shown to a reader without
acl:write hides the SecretIDs. Reading an unknown policy or token answers
404, a malformed ID 500 (the state store's UUID index refuses it), and a
write Consul's RPC refuses answers 500 with its text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ACLDisabled
from ..state.acl_rules import READ, WRITE
from .request import HTTPError, Request, Response, Routes

if TYPE_CHECKING:
    from ..state.acl import ACL

routes = Routes()


def _enabled(req: Request) -> ACL:
    acl = req.agent.datacenter.acl
    if not acl.enabled:
        raise ACLDisabled("ACL support disabled")
    return acl


def _acl(req: Request, wanted: str) -> ACL:
    """The ACL tables, once ACLs are on and the token may `wanted` them."""
    acl = _enabled(req)
    req.check_dc()
    req.authz.require("acl", "", wanted)
    return acl


@routes.add("/v1/acl/bootstrap", "PUT")
def acl_bootstrap(req: Request) -> Response:
    return Response.text(403, _enabled(req).bootstrap_refusal())


@routes.add("/v1/acl/policies", "GET")
def acl_policies(req: Request) -> Response:
    return Response.json(_acl(req, READ).policies())


@routes.add("/v1/acl/policy", "PUT")
def acl_policy_create(req: Request) -> Response:
    body = req.fields()
    if body.get("ID"):
        raise HTTPError(400, "Cannot specify the ID when creating a new policy")
    return Response.json(_acl(req, WRITE).set_policy(body))


@routes.add("/v1/acl/policy/name/", "GET")
def acl_policy_by_name(req: Request) -> Response:
    if not req.tail:
        raise HTTPError(400, "Missing policy Name")
    return Response.json(_acl(req, READ).policy_by_name(req.tail))


@routes.add("/v1/acl/policy/", "GET", "PUT", "DELETE")
def acl_policy(req: Request) -> Response:
    policy_id = req.tail
    if not policy_id and req.method != "PUT":
        raise HTTPError(400, "Missing policy ID")
    if req.method == "GET":
        return Response.json(_acl(req, READ).policy(policy_id))
    if req.method == "DELETE":
        _acl(req, WRITE).delete_policy(policy_id)
        return Response.json(True)
    body = req.fields()
    if body.get("ID") and body.get("ID") != policy_id:
        raise HTTPError(400, "Policy ID in URL and payload do not match")
    return Response.json(_acl(req, WRITE).set_policy(body, policy_id))


@routes.add("/v1/acl/tokens", "GET")
def acl_tokens(req: Request) -> Response:
    acl = _acl(req, READ)
    return Response.json(acl.tokens(req.get("policy"), redact=not req.authz.can("acl", "", WRITE)))


@routes.add("/v1/acl/token", "PUT")
def acl_token_create(req: Request) -> Response:
    return Response.json(_acl(req, WRITE).set_token(req.fields()))


@routes.add("/v1/acl/token/self", "GET")
def acl_token_self(req: Request) -> Response:
    # No permission needed: holding the secret is enough to read its token.
    return Response.json(_enabled(req).token_self(req.token))


@routes.add("/v1/acl/token/", "GET", "PUT", "DELETE")
def acl_token(req: Request) -> Response:
    accessor = req.tail
    if req.method == "PUT" and accessor.endswith("/clone"):
        accessor = accessor.removesuffix("/clone")
        return Response.json(_acl(req, WRITE).clone_token(accessor, req.fields().get("Description", "")))
    if not accessor and req.method != "PUT":
        raise HTTPError(400, "Missing token AccessorID")
    if req.method == "GET":
        acl = _acl(req, READ)
        return Response.json(acl.token(accessor, redact=not req.authz.can("acl", "", WRITE)))
    if req.method == "DELETE":
        _acl(req, WRITE).delete_token(accessor, req.token)
        return Response.json(True)
    body = req.fields()
    if body.get("AccessorID") and body.get("AccessorID") != accessor:
        raise HTTPError(400, "Token Accessor ID in URL and payload do not match")
    return Response.json(_acl(req, WRITE).set_token(body, accessor, create=False))

"""What went wrong, in the dev agent's own words; the HTTP layer alone turns
these into status codes (Consul's HTTP wrapper does the same mapping: RPC
errors 500, bad input 400, unknown objects 404, ACL refusals 403, ACL
endpoints without ACLs 401).

State and agent code raise these instead of HTTP errors, so that it never
has to know about the HTTP layer that serves it.
"""

from __future__ import annotations


class StateError(Exception):
    """An error of the state store or RPC layer (Consul answers 500 with its text)."""


class InvalidRequest(Exception):
    """A request body or parameter Consul rejects as malformed (400)."""


class NotFound(Exception):
    """The request names an object that does not exist (404)."""


class PermissionDenied(Exception):
    """The request's ACL token may not do this, or is unknown ("ACL not
    found"); Consul answers 403 with the text."""


class ACLDisabled(Exception):
    """An ACL endpoint called while ACLs are off (Consul answers 401)."""

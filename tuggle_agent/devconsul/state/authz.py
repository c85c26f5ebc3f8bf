"""What one request's token may do, and how a refusal reads.

An `Authz` is the compiled rules of the token's policies followed by the
default policy for anything they do not mention (Consul's chained
authorizer); its denials are Consul 1.15+'s text: "Permission denied: token
with AccessorID '...' lacks permission 'key:write' on \"x\"", or the
anonymous token's variant. The endpoints ask it `can`/`require` and use the
`can_read_*` shortcuts for the filtering Consul's aclFilter does.
"""

from __future__ import annotations

from ..errors import PermissionDenied
from .acl_rules import READ, WRITE, Authorizer

ANONYMOUS_ID = "00000000-0000-0000-0000-000000000002"


class Authz:
    """What one request's token may do: the compiled rules of its policies,
    then the default policy for anything they do not mention."""

    def __init__(self, accessor_id: str, authorizer: Authorizer | None, default_allow: bool):
        self.accessor_id = accessor_id
        self._authorizer = authorizer  # None: ACLs are off, everything is allowed
        self._default_allow = default_allow

    def can(self, resource: str, name: str, wanted: str) -> bool:
        if self._authorizer is None:
            return True
        decision = self._authorizer.decide(resource, name, wanted)
        return self._default_allow if decision is None else decision

    def can_read_node(self, node: str) -> bool:
        return self.can("node", node, READ)

    def can_read_service(self, service: str) -> bool:
        """Consul's allowService: rows of no service (node checks) pass."""
        return not service or self.can("service", service, READ)

    def can_read_instance(self, node: str, service: str) -> bool:
        """A catalog/health row needs node:read and service:read (aclFilter)."""
        return self.can_read_node(node) and self.can_read_service(service)

    def require(self, resource: str, name: str, wanted: str) -> None:
        if not self.can(resource, name, wanted):
            raise PermissionDenied(self.denial(resource, name, wanted))

    def require_key_write_prefix(self, prefix: str) -> None:
        if self._authorizer is None:
            return
        decision = self._authorizer.decide_key_write_prefix(prefix)
        if not (self._default_allow if decision is None else decision):
            raise PermissionDenied(self.denial("key", prefix, WRITE))

    def denial(self, resource: str, name: str, wanted: str) -> str:
        """Consul's PermissionDeniedError text (acl/errors.go)."""
        anonymous = self.accessor_id == ANONYMOUS_ID
        who = "anonymous token" if anonymous else f"token with AccessorID '{self.accessor_id}'"
        text = f"Permission denied: {who} lacks permission '{resource}:{wanted}'"
        if name:
            text += f' on "{name}"'
        if anonymous:
            text += ". The anonymous token is used implicitly when a request does not specify a token."
        return text


ALLOW_ALL = Authz("", None, True)

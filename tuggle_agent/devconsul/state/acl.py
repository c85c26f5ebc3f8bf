"""ACL tokens and policies, and resolving a request's token to what it may do
(Consul's ACL system with `acl { enabled = true, default_policy = "deny" }`).

Built in when ACLs are on: the global-management policy (every resource
writable, acl and operator included), the anonymous token (AccessorID
...0002, SecretID "anonymous", no policies until someone gives it some) and
the initial management token, whose SecretID is the master token. A request
without a token acts as the anonymous token; a SecretID nobody holds is
refused with "ACL not found", as Consul does.

Rule matching lives in acl_rules. This module keeps the two tables (under
the store's lock and raft index like every other table), Consul's checks and
error texts for policy and token writes, the JSON shapes of its ACL API, and
the denial messages of Consul 1.15+ ("Permission denied: token with
AccessorID '...' lacks permission 'key:write' on \"x\"").
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..errors import InvalidRequest, NotFound, PermissionDenied, StateError
from .acl_rules import Authorizer, merge, parse_rules
from .authz import ALLOW_ALL, ANONYMOUS_ID, Authz

if TYPE_CHECKING:
    from ..codec import Fields
    from .store import Store, Txn

GLOBAL_MANAGEMENT_ID = "00000000-0000-0000-0000-000000000001"
ANONYMOUS_SECRET = "anonymous"
RESERVED_PREFIX = "00000000-0000-0000-0000-0000000000"
REDACTED = "<hidden>"  # SecretID shown to a reader without acl:write
GLOBAL_MANAGEMENT_RULES = """acl = "write"
agent_prefix "" {
  policy = "write"
}
event_prefix "" {
  policy = "write"
}
key_prefix "" {
  policy = "write"
}
keyring = "write"
node_prefix "" {
  policy = "write"
}
operator = "write"
mesh = "write"
peering = "write"
query_prefix "" {
  policy = "write"
}
service_prefix "" {
  policy = "write"
  intentions = "write"
}
session_prefix "" {
  policy = "write"
}"""
POLICY_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,128}$")
# Token fields of Consul's API the dev agent does not model; a token using
# them is refused rather than silently granted less (or more) than asked.
UNSUPPORTED_TOKEN_FIELDS = (
    "Roles", "ServiceIdentities", "NodeIdentities", "TemplatedPolicies",
    "ExpirationTime", "ExpirationTTL", "AuthMethod",
)  # fmt: skip
TABLES = ("acl_policies", "acl_tokens")


@dataclass(frozen=True)
class ACLConfig:
    enabled: bool = False
    initial_management_token: str = ""
    default_policy: str = "deny"


def _uuid(text: str, error: str) -> str:
    """`text` if it is a UUID in its 36-character form, else StateError(error)."""
    try:
        valid = len(text) == 36 and str(uuid.UUID(text)) == text.lower()
    except ValueError:
        valid = False
    if not valid:
        raise StateError(error)
    return text


def _lookup_id(text: str) -> str:
    """The state store's UUID index refuses anything else (an RPC error: 500)."""
    return _uuid(text, "UUID must be 36 characters" if len(text) != 36 else f"invalid UUID {text!r}")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _hash(*parts: object) -> str:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=32).digest()
    return base64.b64encode(digest).decode()


class ACL:
    """The ACL tables of the shared store, and token resolution."""

    def __init__(self, store: Store, config: ACLConfig):
        self.store = store
        self.config = config
        self._cache: dict[tuple[str, int], Authz] = {}
        self._management_accessor = str(uuid.uuid4())
        self._bootstrap_index = 0
        if config.enabled:
            self._bootstrap()

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def _bootstrap(self) -> None:
        with self.store.write() as txn:
            self._bootstrap_index = txn.index
            self._put_policy(txn, {
                "ID": GLOBAL_MANAGEMENT_ID,
                "Name": "global-management",
                "Description": "Builtin Policy that grants unlimited access",
                "Rules": GLOBAL_MANAGEMENT_RULES,
            })  # fmt: skip
            self._put_token(txn, self._new_token(ANONYMOUS_ID, ANONYMOUS_SECRET, "Anonymous Token", []))
            management = self._new_token(
                self._management_accessor,
                self.config.initial_management_token,
                "Initial Management Token",
                [GLOBAL_MANAGEMENT_ID],
            )
            self._put_token(txn, management)

    def reset(self) -> None:
        """Drop every policy and token but the built-in ones (DevCluster.reset)."""
        builtin_tokens = {ANONYMOUS_ID, self._management_accessor}
        with self.store.write() as txn:
            for policy_id in [p for p in self.store.acl_policies if p != GLOBAL_MANAGEMENT_ID]:
                del self.store.acl_policies[policy_id]
                txn.touch("acl_policies")
            for accessor in [a for a in self.store.acl_tokens if a not in builtin_tokens]:
                del self.store.acl_tokens[accessor]
                txn.touch("acl_tokens")
            anonymous = self.store.acl_tokens.get(ANONYMOUS_ID)
            if anonymous is not None and anonymous["Policies"]:
                self._put_token(txn, {**anonymous, "Policies": []})

    # -- resolution -------------------------------------------------------------------
    def resolve(self, secret: str) -> Authz:
        """The Authz of a SecretID ("" = anonymous); PermissionDenied("ACL not
        found") for a secret no token has."""
        if not self.enabled:
            return ALLOW_ALL
        with self.store.lock:
            token = self.token_by_secret(secret or ANONYMOUS_SECRET)
            if token is None:
                raise PermissionDenied("ACL not found")
            key = (token["AccessorID"], self.store.max_index(*TABLES))
            authz = self._cache.get(key)
            if authz is None:
                policies = [self.store.acl_policies[link["ID"]] for link in self._links(token)]
                rules = merge(parse_rules(p["Rules"]) for p in policies)
                authz = Authz(token["AccessorID"], Authorizer(rules), self.config.default_policy == "allow")
                self._cache = {k: v for k, v in self._cache.items() if k[1] == key[1]}
                self._cache[key] = authz
            return authz

    def token_by_secret(self, secret: str) -> dict | None:
        return next((t for t in self.store.acl_tokens.values() if t["SecretID"] == secret), None)

    def _links(self, token: dict) -> list[dict]:
        """Policy links of a token, named, leaving out deleted policies."""
        policies = self.store.acl_policies
        return [
            {"ID": link["ID"], "Name": policies[link["ID"]]["Name"]}
            for link in token["Policies"]
            if link["ID"] in policies
        ]

    # -- policies -----------------------------------------------------------------------
    def policies(self) -> list[dict]:
        with self.store.lock:
            return [self.policy_stub(p) for p in sorted(self.store.acl_policies.values(), key=lambda p: p["ID"])]

    @staticmethod
    def policy_stub(policy: dict) -> dict:
        return {k: v for k, v in policy.items() if k != "Rules"}

    def policy(self, policy_id: str) -> dict:
        with self.store.lock:
            policy = self.store.acl_policies.get(_lookup_id(policy_id))
        if policy is None:
            raise NotFound("Requested policy does not exist: ACL not found")
        return dict(policy)

    def policy_by_name(self, name: str) -> dict:
        with self.store.lock:
            policy = self._policy_named(name)
        if policy is None:
            raise NotFound("Requested policy does not exist: ACL not found")
        return dict(policy)

    def _policy_named(self, name: str) -> dict | None:
        return next((p for p in self.store.acl_policies.values() if p["Name"] == name), None)

    def set_policy(self, body: Fields, policy_id: str = "") -> dict:
        """Create (no ID) or update a policy with the ACL.PolicySet RPC's checks."""
        name, rules = body.get("Name", ""), body.get("Rules", "")
        if not name:
            raise StateError("Invalid Policy: no Name is set")
        if not POLICY_NAME.match(name):
            raise StateError("Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed")
        with self.store.write() as txn:
            named = self._policy_named(name)
            if not policy_id:
                if named is not None:
                    raise StateError(f'Invalid Policy: A Policy with Name "{name}" already exists')
                policy_id = str(uuid.uuid4())
            else:
                _uuid(policy_id, "Policy ID invalid UUID")
                old = self.store.acl_policies.get(policy_id)
                if old is None:
                    raise StateError(f"cannot find policy {policy_id}")
                if old["Name"] != name and named is not None:
                    raise StateError(f'Invalid Policy: A policy with name "{name}" already exists')
                if policy_id == GLOBAL_MANAGEMENT_ID and rules != old["Rules"]:
                    raise StateError("Changing the Rules for the builtin global-management policy is not permitted")
            parse_rules(rules)  # refuse a policy whose rules would not compile
            policy = {"ID": policy_id, "Name": name, "Description": body.get("Description", ""), "Rules": rules}
            return dict(self._put_policy(txn, policy))

    def _put_policy(self, txn: Txn, policy: dict) -> dict:
        old = self.store.acl_policies.get(policy["ID"])
        index = txn.touch("acl_policies")
        policy = {**policy, "Hash": _hash(policy["Name"], policy["Description"], policy["Rules"])}
        policy.update(CreateIndex=old["CreateIndex"] if old else index, ModifyIndex=index)
        self.store.acl_policies[policy["ID"]] = policy
        return policy

    def delete_policy(self, policy_id: str) -> None:
        with self.store.write() as txn:
            if self.store.acl_policies.get(policy_id) is None:
                return  # nothing to delete is not an error (ACL.PolicyDelete)
            if policy_id == GLOBAL_MANAGEMENT_ID:
                raise StateError("Delete operation not permitted on the builtin global-management policy")
            del self.store.acl_policies[policy_id]
            txn.touch("acl_policies")

    # -- tokens ---------------------------------------------------------------------------
    def tokens(self, policy_id: str = "", redact: bool = False) -> list[dict]:
        with self.store.lock:
            tokens = sorted(self.store.acl_tokens.values(), key=lambda t: t["AccessorID"])
            return [
                {**self.render_token(t, redact), "Legacy": False}
                for t in tokens
                if not policy_id or any(link["ID"] == policy_id for link in t["Policies"])
            ]

    def token(self, accessor: str, redact: bool = False) -> dict:
        with self.store.lock:
            token = self.store.acl_tokens.get(_lookup_id(accessor))
            if token is None:
                raise NotFound("Requested token does not exist: ACL not found")
            return self.render_token(token, redact)

    def token_self(self, secret: str) -> dict:
        with self.store.lock:
            token = self.token_by_secret(secret)
            if token is None:
                raise NotFound("Supplied token does not exist")
            return self.render_token(token)

    def render_token(self, token: dict, redact: bool = False) -> dict:
        """A token in Consul's JSON: policy links named, empty lists left out."""
        out = {"AccessorID": token["AccessorID"], "SecretID": REDACTED if redact else token["SecretID"]}
        out["Description"] = token["Description"]
        if links := self._links(token):
            out["Policies"] = links
        for key in ("Local", "CreateTime", "Hash", "CreateIndex", "ModifyIndex"):
            out[key] = token[key]
        return out

    def set_token(self, body: Fields, accessor: str = "", create: bool = True) -> dict:
        """Create or update a token with the ACL.TokenSet RPC's checks."""
        for name in UNSUPPORTED_TOKEN_FIELDS:
            if body.get(name):
                raise InvalidRequest(f"tuggle-agent devconsul does not implement ACL token {name}")
        secret = body.get("SecretID", "")
        with self.store.write() as txn:
            if create:
                token = self._new_token(
                    self._fresh_id(body.get("AccessorID", ""), "AccessorID"),
                    self._fresh_id(secret, "SecretID"),
                    body.get("Description", ""),
                    [],
                    bool(body.get("Local", False)),
                )
            else:
                _uuid(accessor, "AccessorID is not a valid UUID")
                old = self.store.acl_tokens.get(accessor)
                if old is None:
                    raise StateError(f'Cannot find token "{accessor}"')
                if secret and secret != old["SecretID"]:
                    raise StateError("Changing a tokens SecretID is not permitted")
                if bool(body.get("Local", False)) != old["Local"]:
                    raise StateError(f"cannot toggle local mode of {accessor}")
                token = {**old, "Description": body.get("Description", "")}
            token["Policies"] = self._policy_links(body)
            return self.render_token(self._put_token(txn, token))

    def clone_token(self, accessor: str, description: str) -> dict:
        with self.store.write() as txn:
            old = self.store.acl_tokens.get(accessor)
            if old is None:
                raise PermissionDenied("ACL not found")
            policy_ids = [link["ID"] for link in old["Policies"]]
            token = self._new_token(
                str(uuid.uuid4()), str(uuid.uuid4()), description or old["Description"], policy_ids, old["Local"]
            )
            return self.render_token(self._put_token(txn, token))

    def _fresh_id(self, given: str, field: str) -> str:
        """A new token's AccessorID or SecretID: generated, or checked."""
        if not given:
            return str(uuid.uuid4())
        _uuid(given, f"Invalid Token: {field} is not a valid UUID")
        in_use = given in self.store.acl_tokens or self.token_by_secret(given) is not None
        if in_use:
            raise StateError(f"Invalid Token: {field} is already in use")
        if given.startswith(RESERVED_PREFIX):
            raise StateError(f'Invalid Token: UUIDs with the prefix "{RESERVED_PREFIX}" are reserved')
        return given

    def _policy_links(self, body: Fields) -> list[dict]:
        links: list[dict] = []
        for link in body.items("Policies"):
            if link.get("ID"):
                policy = self.store.acl_policies.get(link.get("ID"))
                if policy is None:
                    raise StateError(f'No such ACL policy with ID "{link.get("ID")}"')
            else:
                policy = self._policy_named(link.get("Name", ""))
                if policy is None:
                    raise StateError(f'No such ACL policy with name "{link.get("Name", "")}"')
            if all(existing["ID"] != policy["ID"] for existing in links):
                links.append({"ID": policy["ID"]})  # names are looked up on read: policies get renamed
        return links

    @staticmethod
    def _new_token(accessor: str, secret: str, description: str, policy_ids: list[str], local: bool = False) -> dict:
        return {
            "AccessorID": accessor,
            "SecretID": secret,
            "Description": description,
            "Policies": [{"ID": policy_id} for policy_id in policy_ids],
            "Local": local,
            "CreateTime": _now(),
        }

    def _put_token(self, txn: Txn, token: dict) -> dict:
        old = self.store.acl_tokens.get(token["AccessorID"])
        index = txn.touch("acl_tokens")
        token = {**token, "Hash": _hash(token["Description"], [p["ID"] for p in token["Policies"]], token["Local"])}
        token.update(CreateIndex=old["CreateIndex"] if old else index, ModifyIndex=index)
        self.store.acl_tokens[token["AccessorID"]] = token
        return token

    def delete_token(self, accessor: str, requester_secret: str) -> None:
        _uuid(accessor, "Accessor ID is missing or an invalid UUID")
        if accessor == ANONYMOUS_ID:
            raise StateError("Delete operation not permitted on the anonymous token")
        with self.store.write() as txn:
            token = self.store.acl_tokens.get(accessor)
            if token is None:
                return  # nothing to delete is not an error (ACL.TokenDelete)
            if token["SecretID"] == requester_secret:
                raise StateError("Deletion of the request's authorization token is not permitted")
            del self.store.acl_tokens[accessor]
            txn.touch("acl_tokens")

    def bootstrap_refusal(self) -> str:
        """/v1/acl/bootstrap: the initial management token bootstrapped ACLs
        already, so Consul refuses a second bootstrap."""
        return f"Permission denied: ACL bootstrap no longer allowed (reset index: {self._bootstrap_index})"

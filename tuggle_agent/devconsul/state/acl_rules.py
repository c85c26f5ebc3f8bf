"""ACL policy rules: parsing a policy's Rules (HCL or JSON), merging the
policies of one token, and the authorizer that answers "may this token
read / list / write <resource> <name>?" the way Consul's acl package does.

* A rule names a resource (key, node, service, session, event, agent, query)
  and a segment, either exactly (`key "a/b"`) or as a prefix
  (`key_prefix "a/"`); acl, operator, keyring, mesh and peering take one
  level for the whole resource (`operator = "read"`).
* For a name, an exact rule on that very name wins; otherwise the rule on the
  longest prefix of the name does. No rule at all is "default": the caller
  falls back to the agent's default policy.
* Levels: write grants read, list and write; list grants read and list (keys
  only); read grants read; deny refuses everything and ends the search.
* The policies of one token merge per segment, the stronger rule winning:
  deny > write > list > read (Consul's policy merger).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import hcl

from ..errors import StateError

READ, LIST, WRITE, DENY = "read", "list", "write", "deny"
SEGMENT_RESOURCES = ("agent", "event", "key", "node", "query", "service", "session")
WHOLE_RESOURCES = ("acl", "keyring", "mesh", "operator", "peering")
STRENGTH = {READ: 1, LIST: 2, WRITE: 3, DENY: 4}


@dataclass
class Rules:
    """Rules of one policy, or the merge of several: level per segment."""

    exact: dict[str, dict[str, str]] = field(default_factory=dict)  # resource -> segment -> level
    prefix: dict[str, dict[str, str]] = field(default_factory=dict)
    whole: dict[str, str] = field(default_factory=dict)  # acl/operator/... -> level

    def add(self, table: dict[str, str], segment: str, level: str) -> None:
        old = table.get(segment)
        if old is None or STRENGTH[level] > STRENGTH[old]:
            table[segment] = level


def _valid_levels(resource: str) -> tuple[str, ...]:
    return (READ, WRITE, DENY, LIST) if resource == "key" else (READ, WRITE, DENY)


def _blocks(value: object) -> Iterable[tuple[str, object]]:
    """(segment, body) pairs of `key_prefix "a" {..}` blocks; HCL gives a map,
    JSON may also give a list of one-entry maps."""
    maps = value if isinstance(value, list) else [value]
    for item in maps:
        if not isinstance(item, dict):
            raise StateError(f"Failed to parse ACL rules: expected a map of rule blocks, got {item!r}")
        yield from item.items()


def parse_rules(text: str) -> Rules:
    """Rules of a policy; errors are Consul's (the PolicySet RPC fails: 500)."""
    rules = Rules()
    if not text.strip():
        return rules
    try:
        raw = hcl.loads(text)
    except Exception as err:  # pyhcl raises assorted exception types
        raise StateError(f"Failed to parse ACL rules: {err}") from err
    if not isinstance(raw, dict):
        raise StateError("Failed to parse ACL rules: expected an object at the top level")
    for resource in WHOLE_RESOURCES:
        level = raw.get(resource)
        if level is None:
            continue
        if level not in (READ, WRITE, DENY):
            raise StateError(f"Invalid {resource} policy: {level!r}")
        rules.add(rules.whole, resource, level)
    for resource in SEGMENT_RESOURCES:
        for kind in (resource, f"{resource}_prefix"):
            table = rules.prefix if kind.endswith("_prefix") else rules.exact
            for segment, body in _blocks(raw.get(kind, {})):
                body = body if isinstance(body, dict) else {}
                level = body.get("policy", "")
                if level not in _valid_levels(resource):
                    raise StateError(f"Invalid {kind} policy: {segment!r} {{ policy = {level!r} }}")
                if body.get("intentions", READ) not in (READ, WRITE, DENY):  # parsed, not enforced
                    raise StateError(
                        f"Invalid {kind} intentions policy: {segment!r} {{ intentions = {body['intentions']!r} }}"
                    )
                rules.add(table.setdefault(resource, {}), str(segment), level)
    return rules


def merge(many: Iterable[Rules]) -> Rules:
    merged = Rules()
    for rules in many:
        for level_by_resource, into in ((rules.exact, merged.exact), (rules.prefix, merged.prefix)):
            for resource, segments in level_by_resource.items():
                for segment, level in segments.items():
                    merged.add(into.setdefault(resource, {}), segment, level)
        for resource, level in rules.whole.items():
            merged.add(merged.whole, resource, level)
    return merged


def grants(rule: str, wanted: str) -> bool:
    """Does a rule of level `rule` allow access `wanted`?"""
    if rule == WRITE:
        return True
    if rule == LIST:
        return wanted in (LIST, READ)
    return rule == READ and wanted == READ


class Authorizer:
    """Decisions of merged rules: True (allow), False (deny) or None (no rule:
    the default policy decides)."""

    def __init__(self, rules: Rules):
        self.rules = rules

    def rule_for(self, resource: str, name: str) -> str | None:
        if resource in WHOLE_RESOURCES:
            return self.rules.whole.get(resource)
        exact = self.rules.exact.get(resource, {})
        if name in exact:
            return exact[name]
        prefixes = self.rules.prefix.get(resource, {})
        matching = [segment for segment in prefixes if name.startswith(segment)]
        return prefixes[max(matching, key=len)] if matching else None

    def decide(self, resource: str, name: str, wanted: str) -> bool | None:
        rule = self.rule_for(resource, name)
        return None if rule is None else grants(rule, wanted)

    def decide_key_write_prefix(self, prefix: str) -> bool | None:
        """May everything under `prefix` be deleted (recursive KV delete)? The
        rule governing the prefix must grant write, and so must every rule,
        exact or prefix, on a segment under it."""
        prefixes = self.rules.prefix.get("key", {})
        above = [segment for segment in prefixes if prefix.startswith(segment)]
        base = prefixes[max(above, key=len)] == WRITE if above else None
        if base is False:
            return False
        below = [
            level
            for table in (prefixes, self.rules.exact.get("key", {}))
            for s, level in table.items()
            if s.startswith(prefix)
        ]
        if any(level != WRITE for level in below):
            return False
        return base

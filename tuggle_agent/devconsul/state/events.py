"""User events: building and validating an event, the filters a receiving
agent applies, and each agent's 256-entry buffer with its pseudo-index.

Serf refuses a user event whose name ("consul:event:" + name) plus msgpack
encoding exceeds 512 bytes -> 500 "user event exceeds limit of 512 bytes".
"""

from __future__ import annotations

import re
import uuid
from collections import deque

from ..codec import b64, uuid_to_uint64
from ..errors import StateError

BUFFER_SIZE = 256
SERF_LIMIT = 512
SERF_PREFIX = "consul:event:"
REMOTE_EXEC = "_rexec"  # consumed by the agent's remote-exec handler, never buffered
VERSION = 1


def topic(node: str) -> str:
    return "event:" + node


class EventBuffer:
    """A node's recent events in arrival order (all names share the ring)."""

    def __init__(self) -> None:
        self.events: deque[dict] = deque(maxlen=BUFFER_SIZE)

    def named(self, name: str) -> list[dict]:
        return [e for e in self.events if not name or e["Name"] == name]


def index_of(events: list[dict]) -> int:
    return uuid_to_uint64(events[-1]["ID"]) if events else 1


def _compile(kind: str, pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as err:
        raise StateError(f"Invalid {kind} filter: {err}") from err


def _str_size(length: int, bin_type: bool = False) -> int:
    if not bin_type and length <= 31:
        return 1 + length
    return (2 if length <= 0xFF else 3 if length <= 0xFFFF else 5) + length


def serf_size(event: dict, payload: bytes) -> int:
    """Bytes Serf counts: its event name plus Consul's msgpack UserEvent."""
    size = 1 + _str_size(2) + _str_size(36) + _str_size(1) + _str_size(len(event["Name"].encode()))
    if payload:
        size += _str_size(1) + _str_size(len(payload), bin_type=True)
    for key, field in (("nf", "NodeFilter"), ("sf", "ServiceFilter"), ("tf", "TagFilter")):
        if event[field]:
            size += _str_size(len(key)) + _str_size(len(event[field].encode()))
    size += _str_size(1) + 1  # "v": 1
    return len(SERF_PREFIX) + len(event["Name"].encode()) + size


def make_event(name: str, payload: bytes, node: str, service: str, tag: str) -> dict:
    """A new event, its filters validated as the agent's UserEvent does."""
    if not name:
        raise StateError("User event missing name")
    if tag and not service:
        raise StateError("Cannot provide tag filter without service filter")
    for kind, pattern in (("node", node), ("service", service), ("tag", tag)):
        if pattern:
            _compile(kind, pattern)
    return {
        "ID": str(uuid.uuid4()),
        "Name": name,
        "Payload": b64(payload),
        "NodeFilter": node,
        "ServiceFilter": service,
        "TagFilter": tag,
        "Version": VERSION,
        "LTime": 0,
    }


def check_size(event: dict, payload: bytes) -> None:
    """Serf's limit, hit when the event is sent: after the ACL check."""
    if serf_size(event, payload) > SERF_LIMIT:
        raise StateError(f"user event exceeds limit of {SERF_LIMIT} bytes")


def accepts(event: dict, node: str, services: dict[str, dict]) -> bool:
    """The receiving agent's filters (Consul's shouldProcessUserEvent): the
    node regexp against its name; the service regexp against the IDs of its
    locally registered `services`, and then the tag regexp against their tags."""
    if event["NodeFilter"] and not re.search(event["NodeFilter"], node):
        return False
    if not event["ServiceFilter"]:
        return True
    for service_id, service in services.items():
        if not re.search(event["ServiceFilter"], service_id):
            continue
        if not event["TagFilter"] or any(re.search(event["TagFilter"], t) for t in service["Tags"]):
            return True
    return False

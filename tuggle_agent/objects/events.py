"""FETCH/DELETE user events: tiny triggers, the data stays in KV.

Consul 1.22 caps the fire body at 100 bytes and a name may be 255, so the payload
names the object by its id (md5 of the name) and version, never by name:
`FETCH:<version>:<id>` is 71 bytes for every valid name.  Handlers look the
object up in KV; a version that no longer matches KV is stale and ignored.
(No py-consul import here: watch handlers parse events and must start fast.)
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

VERBS = ("FETCH", "DELETE")


@dataclass(frozen=True)
class TuggleEvent:
    event_id: str
    ltime: int
    verb: str
    version: str
    object_id: str


def payload(verb: str, version: str, object_id: str) -> bytes:
    assert verb in VERBS
    return f"{verb}:{version}:{object_id}".encode()


def parse(event: dict) -> TuggleEvent | None:
    """An event as py-consul or a watch handler sees it (Payload bytes or base64 str)."""
    raw = event.get("Payload")
    if isinstance(raw, str):
        try:
            raw = base64.b64decode(raw)
        except ValueError:
            return None
    try:
        verb, version, oid = (raw or b"").decode().split(":")
    except (UnicodeDecodeError, ValueError):
        return None
    if verb not in VERBS:
        return None
    return TuggleEvent(event.get("ID", ""), int(event.get("LTime") or 0), verb, version, oid)



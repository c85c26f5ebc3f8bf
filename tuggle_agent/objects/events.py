"""FETCH/DELETE user events: tiny triggers, the data stays in KV.

Consul 1.22 caps the fire body at 100 bytes and a name may be 255, so the payload
names the object by its id (md5 of the name) and version, never by name:
`FETCH:<version>:<id>` is 71 bytes for every valid name.  Handlers look the
object up in KV; a version that no longer matches KV is stale and ignored.
(No py-consul import here: watch handlers parse events and must start fast.)
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

VERBS = ("FETCH", "DELETE")
_VERSION = re.compile(r"[A-Za-z0-9_-]{1,64}")
_OBJECT_ID = re.compile(r"[0-9a-f]{32}")


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


def parse(event) -> TuggleEvent | None:
    """An event as py-consul or a watch handler sees it (Payload bytes or base64 str);
    None for anything else -- watch payloads are untrusted input."""
    if not isinstance(event, dict):
        return None
    raw = event.get("Payload")
    if isinstance(raw, str):
        try:
            raw = base64.b64decode(raw, validate=True)
        except ValueError:
            return None
    if not isinstance(raw, bytes):
        return None
    try:
        verb, version, oid = raw.decode().split(":")
        ltime = int(event.get("LTime") or 0)
    except (UnicodeDecodeError, ValueError, TypeError):
        return None
    event_id = event.get("ID", "")
    if (
        verb not in VERBS
        or not _VERSION.fullmatch(version)
        or not _OBJECT_ID.fullmatch(oid)
        or not isinstance(event_id, str)
    ):
        return None
    return TuggleEvent(event_id, ltime, verb, version, oid)

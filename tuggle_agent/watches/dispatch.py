"""A Consul watch result -> the engine: apply the change-log's new entries (or reconcile
with all of KV), act on new user events.

Consul re-delivers old events (first run, reload, errors), so handled event IDs are
remembered in the data dir (watches/input.py): each event acts once.  Events are hints
only; the node checks KV before it acts on one (engine/node.py on_event).
"""

from __future__ import annotations

import base64
import binascii
import logging

from ..engine.node import Node
from ..objects.events import parse
from .input import HandledEvents

log = logging.getLogger(__name__)


def dispatch(node: Node, data, kind: str) -> dict:
    if kind == "changes":
        return {"changes": node.apply_changes(*_change_log(node, data))}
    if kind == "kv":
        return {"reconciled": node.reconcile()}
    if kind != "events":
        return {}
    acted = {}
    with HandledEvents(node.store.state).locked() as seen:
        for raw in data:
            if raw.get("Name") != node.cfg.namespace:
                continue
            ev = parse(raw)
            if ev is None:
                log.warning("ignoring event %s: payload is not a tuggle FETCH/DELETE", raw.get("ID"))
                continue
            if ev.event_id in seen:
                log.debug("skipping %s event %s: handled before (Consul replays its buffer)", ev.verb, ev.event_id)
                continue
            acted[ev.event_id] = f"{ev.verb}: " + node.on_event(ev.verb, ev.object_id, ev.version)
            log.info("acting on %s event %s: %s", ev.verb, ev.event_id, acted[ev.event_id])
            seen.append(ev.event_id)
    return {"events": acted}


def _change_log(node: Node, entry: dict) -> tuple[bytes | None, int]:
    """(value, CreateIndex) of a key watch's entry; a value that is not the change-log
    (another key, bad base64, no CreateIndex) comes out as None: a full reconcile."""
    try:
        value = entry.get("Value")
        raw = base64.b64decode(value, validate=True) if isinstance(value, str) else None
        created = int(entry["CreateIndex"])
    except (binascii.Error, KeyError, TypeError, ValueError):
        return None, 0
    if entry.get("Key") != node.keeper.kv.keys.changes:
        log.warning("key watch on %r, not on the change-log: reconciling with all of KV", entry.get("Key"))
        return None, 0
    return raw, created

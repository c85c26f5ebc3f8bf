"""Firing FETCH/DELETE user events (the payload format is in eventpayload.py)."""

from __future__ import annotations

import consul

from ..objects.events import payload
from .client import consul_errors


def fire(
    client: consul.Consul,
    namespace: str,
    verb: str,
    version: str,
    object_id: str,
    node: str = "",
    service: str = "",
    tag: str = "",
) -> str:
    with consul_errors(client, f"firing {verb} event"):
        res = client.event.fire(
            namespace, payload(verb, version, object_id), node=node or None, service=service or None, tag=tag or None
        )
    return res["ID"]

"""What Consul knows about a rollout, read raw for `GET /<name>?status` (assembled in
engine/rollout.py): the tuggle instances with their checks, the nodes that ever ran
tuggle-agent, partial holders, and per-node status records (failed post_download hooks).

Values under `<ns>.status/` are untrusted like everything in KV: anything that is not a
JSON object is returned as a record of its own with `"malformed": true`.
"""

from __future__ import annotations

import json
import time

import consul

from .client import consul_errors
from .keys import Keys


class RolloutView:
    def __init__(self, client: consul.Consul, keys: Keys):
        self.c = client
        self.keys = keys

    def instances(self, passing: bool = False) -> list[dict]:
        """health/service/<ns>: every instance of the tuggle service with its checks
        (only those whose checks all pass with `passing`)."""
        with consul_errors(self.c, f"reading the health of service {self.keys.ns}"):
            _, rows = self.c.health.service(self.keys.ns, passing=passing)
        return rows or []

    def consul_nodes(self) -> set[str]:
        with consul_errors(self.c, "listing Consul nodes"):
            _, rows = self.c.catalog.nodes()
        return {r["Node"] for r in rows or []}

    def members(self) -> set[str]:
        """Nodes that announced themselves as tuggle nodes (see announce)."""
        with consul_errors(self.c, "listing tuggle nodes"):
            _, keys = self.c.kv.get(self.keys.members_prefix, keys=True)
        prefix = self.keys.members_prefix
        return {k[len(prefix) :] for k in keys or [] if k.startswith(prefix) and "/" not in k[len(prefix) :]}

    def announce(self, node: str, address: str | None, port: int) -> None:
        """Record `node` as a tuggle node, so a node whose agent stopped (and deregistered
        its service) still shows as down, not as unknown."""
        value = {"address": address or "", "port": port, "started_at": time.time()}
        with consul_errors(self.c, f"recording {node} as a tuggle node"):
            self.c.kv.put(self.keys.member(node), json.dumps(value).encode())

    def relay_nodes(self, name: str, version: str) -> set[str]:
        """Partial holders of this version: relay entries still held by a fetch session."""
        with consul_errors(self.c, f"listing partial holders of {name}"):
            _, entries = self.c.kv.get(self.keys.relay_prefix(name, version), recurse=True)
        return {node for _, _, node in _held(entries)}

    def node_records(self, name: str, version: str) -> dict[str, dict]:
        """`<ns>.status/<name>/<version>/<node>` records, by node."""
        with consul_errors(self.c, f"reading node status records of {name}"):
            _, entries = self.c.kv.get(self.keys.status_prefix(name, version), recurse=True)
        return {node: value for _, _, node, value in _records(entries)}

    def all_relay_nodes(self) -> dict[tuple[str, str], set[str]]:
        """relay_nodes of every object, by (name, version), in one read (the web console)."""
        with consul_errors(self.c, "listing partial holders"):
            _, entries = self.c.kv.get(f"{self.keys.ns}.relay/", recurse=True)
        out: dict[tuple[str, str], set[str]] = {}
        for name, version, node in _held(entries):
            out.setdefault((name, version), set()).add(node)
        return out

    def all_node_records(self) -> dict[tuple[str, str], dict[str, dict]]:
        """node_records of every object, by (name, version), in one read (the web console)."""
        with consul_errors(self.c, "reading node status records"):
            _, entries = self.c.kv.get(f"{self.keys.ns}.status/", recurse=True)
        out: dict[tuple[str, str], dict[str, dict]] = {}
        for name, version, node, value in _records(entries):
            out.setdefault((name, version), {})[node] = value
        return out


def _split(key: str) -> tuple[str, str, str]:
    """(name, version, node) of a `<prefix>/<name>/<version>/<node>` key."""
    parts = key.split("/")
    return (parts[-3], parts[-2], parts[-1]) if len(parts) >= 4 else ("", "", parts[-1])


def _held(entries: list[dict] | None) -> list[tuple[str, str, str]]:
    return [_split(e["Key"]) for e in entries or [] if e.get("Session")]


def _records(entries: list[dict] | None) -> list[tuple[str, str, str, dict]]:
    out = []
    for e in entries or []:
        try:
            value = json.loads(e.get("Value") or b"")
        except ValueError:
            value = None
        out.append((*_split(e["Key"]), value if isinstance(value, dict) else {"malformed": True}))
    return out

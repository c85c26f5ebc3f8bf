"""The data behind the web console (front/ui.py): what the cluster holds, assembled from Consul.

Read-only.  One poll of the console costs a handful of Consul reads plus one
`GET /_tuggle/status` per tuggle node, fetched in parallel with a short timeout (a node
that does not answer in time is shown without its details, never blocks the page);
everything gathered is cached for CACHE_TTL so several open consoles do not multiply
the load, and one poll serves every object.

  objects()      every object with its holders, targets and a state
  nodes()        every tuggle node: health, disk use, active fetches, orphans
  object(name)   one object's rollout: a row per node, and the fetch-graph edges

A node's state for one object, the targets and the counts are engine/rollout.py's
(`assemble`, the shape of `GET /<name>?status`); only the object's overall state label
(`_state`) and the nodes page are the console's own.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import consul
import requests

from ..consul.holders import HolderIndex
from ..consul.keys import Keys
from ..consul.kv import Listing, ObjectsKV
from ..consul.rollout import RolloutView
from ..errors import NotFound
from ..objects.metadata import ObjectMeta
from . import rollout

STATUS_TIMEOUT = 0.8  # seconds per node's /_tuggle/status
CACHE_TTL = 0.5


@dataclass
class TuggleNode:
    """One instance of the tuggle service, with what its own /_tuggle/status said."""

    node: str
    url: str
    passing: bool
    tags: set[str]  # the service's registered tags (what ?sync's tag filter matches)
    checks: list[dict]
    status: dict | None = None
    error: str = ""
    fetching: dict[str, dict] = field(default_factory=dict)  # name -> fetch row of its status
    local: dict[str, dict] = field(default_factory=dict)  # name -> local object row of its status


@dataclass
class Poll:
    """The inputs of rollout.assemble for every object, gathered once per poll."""

    instances: list[dict]  # health/service/<ns> rows, with their checks
    nodes: list[TuggleNode]
    listing: Listing  # the objects in KV
    holders: dict[str, set[str]]  # object name -> nodes holding its current version
    members: set[str]
    consul_nodes: set[str]
    relays: dict[tuple[str, str], set[str]]  # (name, version) -> partial holders
    records: dict[tuple[str, str], dict[str, dict]]  # (name, version) -> node -> status record
    node_status: dict[str, dict | str]


class Console:
    def __init__(self, client: consul.Consul, namespace: str, kv: ObjectsKV, holders: HolderIndex):
        self.c = client
        self.ns = namespace
        self.keys = Keys(namespace)
        self.kv = kv
        self.holders = holders
        self.view = RolloutView(client, self.keys)
        self.http = requests.Session()
        self.pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="console")
        self._lock = threading.Lock()
        self._cache: tuple[float, Poll] | None = None

    # -- gathering --------------------------------------------------------
    def _instances(self, entries: list[dict]) -> list[TuggleNode]:
        out = []
        for e in entries:
            svc = e["Service"]
            address = svc.get("Address") or e["Node"]["Address"]
            host = f"[{address}]" if ":" in address else address
            checks = [
                {"name": ch.get("Name", ""), "status": ch.get("Status", ""), "output": (ch.get("Output") or "")[:300]}
                for ch in e.get("Checks") or []
            ]
            out.append(
                TuggleNode(
                    node=e["Node"]["Node"],
                    url=f"http://{host}:{int(svc['Port'])}",
                    passing=all(ch["status"] == "passing" for ch in checks),
                    tags=set(svc.get("Tags") or []),
                    checks=checks,
                )
            )
        return sorted(out, key=lambda n: n.node)

    def _status_of(self, n: TuggleNode) -> None:
        try:
            r = self.http.get(f"{n.url}/_tuggle/status", timeout=STATUS_TIMEOUT)
            r.raise_for_status()
            status = r.json()
        except (requests.RequestException, ValueError) as exc:
            n.error = f"no status: {type(exc).__name__}"
            return
        if not isinstance(status, dict):
            n.error = "no status: not a JSON object"
            return
        n.status = status
        n.fetching = {f["name"]: f for f in status.get("fetching") or [] if isinstance(f, dict) and "name" in f}
        n.local = {o["name"]: o for o in status.get("objects") or [] if isinstance(o, dict) and "name" in o}

    def gather(self) -> Poll:
        """Everything one poll needs, read once and cached for CACHE_TTL."""
        with self._lock:
            if self._cache and time.monotonic() - self._cache[0] < CACHE_TTL:
                return self._cache[1]
        instances = self.view.instances()
        nodes = self._instances(instances)
        listing = self.kv.list()
        holders = self.holders.all_nodes((m.name, m.version) for m in listing.metas.values())
        members = self.view.members()
        consul_nodes = self.view.consul_nodes() if members - {n.node for n in nodes} else set()
        list(self.pool.map(self._status_of, nodes))
        poll = Poll(
            instances=instances,
            nodes=nodes,
            listing=listing,
            holders=holders,
            members=members,
            consul_nodes=consul_nodes,
            relays=self.view.all_relay_nodes(),
            records=self.view.all_node_records(),
            node_status={n.node: n.status if n.status is not None else n.error for n in nodes},
        )
        with self._lock:
            self._cache = (time.monotonic(), poll)
        return poll

    # -- per object -------------------------------------------------------
    @staticmethod
    def _state(rows: list[dict], holders: int, targets: list[str], meta: ObjectMeta) -> str:
        by_node = {r["node"]: r for r in rows}
        if any(r["state"] == "hook_failed" for r in rows):
            return "failed hooks"
        if not holders:
            return "no passing holder"
        if any(r["state"] == "fetching" for r in rows):
            return "rolling out"
        if targets and any(by_node.get(t, {}).get("state") != "complete" for t in targets):
            return "rolling out"
        return "complete"

    def _summary(self, meta: ObjectMeta, poll: Poll) -> dict:
        holders = poll.holders.get(meta.name, set())
        [listed] = rollout.with_holders([meta], {meta.name: holders})
        key = (meta.name, meta.version)
        status = rollout.assemble(
            meta,
            poll.instances,
            holders,
            poll.members,
            poll.consul_nodes,
            poll.relays.get(key, set()),
            poll.records.get(key, {}),
            poll.node_status,
            rollout.sync_matcher(meta.sync, self.ns),
        )
        # Without a ?sync nobody is asked to prefetch: the console shows no targets.
        targets = status["targets"] if meta.sync is not None else []
        return {
            **listed,
            "holder_nodes": sorted(holders),
            "targets": targets,
            "complete": status["complete"],
            "complete_targets": status["complete_targets"] if targets else 0,
            "failed": status["failed"],
            "state": self._state(status["nodes"], listed["holders"], targets, meta),
            "nodes": status["nodes"],
        }

    def objects(self) -> dict:
        poll = self.gather()
        listing = poll.listing
        out = []
        for meta in sorted(listing.metas.values(), key=lambda m: m.name):
            s = self._summary(meta, poll)
            del s["nodes"]
            out.append(s)
        return {"objects": out, "bad_entries": len(listing.bad), "nodes": len(poll.nodes), "checked_at": time.time()}

    def object(self, name: str) -> dict:
        meta = self.kv.get(name)
        if meta is None:
            raise NotFound(f"no object named {name!r}")
        s = self._summary(meta, self.gather())
        s["edges"] = [
            {"from": e.source, "to": e.target, "start": e.start, "end": e.end, "elapsed": e.elapsed}
            for e in sorted(self.kv.edges(name), key=lambda e: e.end)
            if e.left_because is None  # the console draws completed fetches; ?graph also the switches
        ]
        s["checked_at"] = time.time()
        return s

    # -- nodes ------------------------------------------------------------
    def nodes(self) -> dict:
        out = []
        poll = self.gather()
        for n in poll.nodes:
            st = n.status or {}
            out.append(
                {
                    "node": n.node,
                    "url": n.url,
                    "passing": n.passing,
                    "checks": n.checks,
                    "answered": n.status is not None,
                    "error": n.error,
                    "objects": len(st.get("objects") or []),
                    "holds": sum(n.node in nodes for nodes in poll.holders.values()),
                    "fetching": [
                        {k: f.get(k) for k in ("name", "size", "verified", "source", "rate")}
                        for f in n.fetching.values()
                    ],
                    "orphans": len(st.get("orphans") or []),
                    "bad_entries": len(st.get("bad_entries") or []),
                    "disk": st.get("disk"),
                    "fetch_only": st.get("fetch_only"),
                }
            )
        return {"nodes": out, "checked_at": time.time()}

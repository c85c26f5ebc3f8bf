"""The data behind the web console (front/ui.py): what the cluster holds, assembled from Consul.

Read-only.  One poll of the console costs a handful of Consul reads plus one
`GET /_tuggle/status` per tuggle node, fetched in parallel with a short timeout (a node
that does not answer in time is shown without its details, never blocks the page);
the per-node answers are cached for CACHE_TTL so several open consoles do not
multiply the load.

  objects()      every object with its holders, targets and a state
  nodes()        every tuggle node: health, disk use, active fetches, orphans
  object(name)   one object's rollout: a row per node, and the fetch-graph edges

Node states of one object (the shape of `GET /<name>?status`): complete (holds the
version), fetching (a running fetch or a relay entry), hook_failed (holds it but its
post_download hook failed), down (the node's checks are not passing), missing.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import consul
import requests

from ..consul.client import consul_errors
from ..consul.keys import Keys
from ..consul.kv import ObjectsKV
from ..errors import NotFound
from ..objects import syncfilter
from ..objects.metadata import ObjectMeta

STATUS_TIMEOUT = 0.8  # seconds per node's /_tuggle/status
CACHE_TTL = 0.5


@dataclass
class TuggleNode:
    """One instance of the tuggle service, with what its own /_tuggle/status said."""

    node: str
    url: str
    passing: bool
    tags: set[str]
    checks: list[dict]
    status: dict | None = None
    error: str = ""
    fetching: dict[str, dict] = field(default_factory=dict)  # name -> fetch row of its status
    local: dict[str, dict] = field(default_factory=dict)  # name -> local object row of its status


class Console:
    def __init__(self, client: consul.Consul, namespace: str, kv: ObjectsKV):
        self.c = client
        self.ns = namespace
        self.keys = Keys(namespace)
        self.kv = kv
        self.http = requests.Session()
        self.pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="console")
        self._lock = threading.Lock()
        self._cache: tuple[float, list[TuggleNode]] | None = None

    # -- gathering --------------------------------------------------------
    def _instances(self) -> list[TuggleNode]:
        with consul_errors(self.c, "listing tuggle nodes"):
            _, entries = self.c.health.service(self.ns)
        out = []
        for e in entries or []:
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
            n.status = r.json()
        except (requests.RequestException, ValueError) as exc:
            n.error = f"no status: {type(exc).__name__}"
            return
        n.fetching = {f["name"]: f for f in n.status.get("fetching") or [] if isinstance(f, dict) and "name" in f}
        n.local = {o["name"]: o for o in n.status.get("objects") or [] if isinstance(o, dict) and "name" in o}

    def tuggle_nodes(self) -> list[TuggleNode]:
        with self._lock:
            if self._cache and time.monotonic() - self._cache[0] < CACHE_TTL:
                return self._cache[1]
        nodes = self._instances()
        list(self.pool.map(self._status_of, nodes))
        with self._lock:
            self._cache = (time.monotonic(), nodes)
        return nodes

    def _relaying(self, name: str, version: str) -> set[str]:
        with consul_errors(self.c, f"listing partial holders of {name}"):
            _, entries = self.c.kv.get(self.keys.relay_prefix(name, version), recurse=True)
        return {e["Key"].rsplit("/", 1)[1] for e in entries or [] if e.get("Session")}

    @staticmethod
    def _targets(meta: ObjectMeta, nodes: list[TuggleNode], ns: str) -> list[str]:
        """The nodes a ?sync asks for (all matching its filters); none without a sync."""
        if meta.sync is None:
            return []
        s = meta.sync
        out = []
        for n in nodes:
            try:
                if syncfilter.matches(s.node, s.service, s.tag, n.node, ns, n.tags):
                    out.append(n.node)
            except syncfilter.BadFilter:
                return []
        return out

    # -- per object -------------------------------------------------------
    @staticmethod
    def _row(meta: ObjectMeta, n: TuggleNode, relaying: set[str]) -> dict:
        row = {"node": n.node, "passing": n.passing, "bytes_verified": 0, "rate": 0.0, "source": "", "detail": ""}
        local = n.local.get(meta.name)
        fetch = n.fetching.get(meta.name)
        if local is not None and local.get("version") == meta.version:
            hook = local.get("status") or {}
            row["bytes_verified"] = meta.size
            row["source"] = local.get("source") or ""
            if hook.get("post_download") == "failed":
                row["state"] = "hook_failed"
                row["detail"] = str(hook.get("post_download_error") or "post_download hook failed")[:300]
            else:
                row["state"] = "complete"
        elif meta.id in n.tags and n.status is None:
            row["state"] = "complete"  # advertised; its details did not answer in time
            row["bytes_verified"] = meta.size
            row["detail"] = n.error
        elif fetch is not None and fetch.get("version") == meta.version:
            row["state"] = "fetching"
            row["bytes_verified"] = int(fetch.get("verified") or 0)
            row["rate"] = float(fetch.get("rate") or 0.0)
            row["source"] = fetch.get("source") or ""
        elif n.node in relaying:
            row["state"] = "fetching"
            row["detail"] = n.error
        elif not n.passing:
            row["state"] = "down"
            row["detail"] = "; ".join(f"{c['name']}: {c['status']}" for c in n.checks if c["status"] != "passing")
        else:
            row["state"] = "missing"
            row["detail"] = n.error
        return row

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

    def _summary(self, meta: ObjectMeta, nodes: list[TuggleNode], relaying: set[str]) -> dict:
        rows = [self._row(meta, n, relaying) for n in nodes]
        holders = [n.node for n in nodes if meta.id in n.tags]
        passing = [n.node for n in nodes if meta.id in n.tags and n.passing]
        targets = self._targets(meta, nodes, self.ns)
        complete = [r["node"] for r in rows if r["state"] == "complete"]
        return {
            **meta.to_dict(),
            "holders": len(passing),
            "holder_nodes": holders,
            "no_passing_holder": not passing,
            "targets": targets,
            "complete": len(complete),
            "complete_targets": len([t for t in targets if t in complete]),
            "failed": [r["node"] for r in rows if r["state"] == "hook_failed"],
            "state": self._state(rows, len(passing), targets, meta),
            "nodes": rows,
        }

    def objects(self) -> dict:
        listing = self.kv.list()
        nodes = self.tuggle_nodes()
        out = []
        for meta in sorted(listing.metas.values(), key=lambda m: m.name):
            fetching_somewhere = any(meta.name in n.fetching for n in nodes)
            relaying = self._relaying(meta.name, meta.version) if fetching_somewhere else set()
            s = self._summary(meta, nodes, relaying)
            del s["nodes"]
            out.append(s)
        return {"objects": out, "bad_entries": len(listing.bad), "nodes": len(nodes), "checked_at": time.time()}

    def object(self, name: str) -> dict:
        meta = self.kv.get(name)
        if meta is None:
            raise NotFound(f"no object named {name!r}")
        nodes = self.tuggle_nodes()
        s = self._summary(meta, nodes, self._relaying(meta.name, meta.version))
        s["edges"] = [
            {"from": e.source, "to": e.target, "start": e.start, "end": e.end, "elapsed": e.elapsed}
            for e in sorted(self.kv.edges(name), key=lambda e: e.end)
        ]
        s["checked_at"] = time.time()
        return s

    # -- nodes ------------------------------------------------------------
    def nodes(self) -> dict:
        out = []
        for n in self.tuggle_nodes():
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
                    "holds": len(n.tags),
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

"""Cluster-wide status of one object (`GET /<name>?status`) and holder counts for `GET /`.

`assemble` is pure: it turns what Consul and the nodes said into the JSON the client
CLI (`tuggle-agent status` / `wait`) parses.  `Rollout` gathers those inputs: Consul
reads (consul/rollout.py) and every passing node's `/_tuggle/status`, asked in
parallel with a short timeout.

A node's state, first match wins:
  down         its tuggle service has a check that is not passing, or it ran tuggle-agent
               (`<ns>.nodes/<node>`) and its service is not registered any more
  hook_failed  its post_download hook failed for this version (`<ns>.status/...`)
  complete     passing and a holder (its key `<ns>.holders/<name>/<version>/<node>`, or its
               tag with holder_tags)
  fetching     a relay entry (partial holder) or its /_tuggle/status lists the fetch
  missing      anything else: not holding it, reason unknown
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import requests

from ..config import Config
from ..consul.holders import HolderIndex
from ..consul.kv import ObjectsKV
from ..consul.rollout import RolloutView
from ..errors import NotFound
from ..objects import syncfilter
from ..objects.metadata import ObjectMeta, SyncSpec
from ..objects.names import check_name

STATES = ("complete", "fetching", "hook_failed", "missing", "down")
DETAIL_MAX = 300  # characters of a check output or hook error quoted in a row

# A node's /_tuggle/status answer (a dict), or why it could not be read (a str); nodes
# that were not asked are absent.
NodeStatus = Mapping[str, dict | str]


def _node_of(instance: dict) -> str:
    return str((instance.get("Node") or {}).get("Node", ""))


def _tags(instance: dict | None) -> list[str]:
    return list(((instance or {}).get("Service") or {}).get("Tags") or [])


def _health(instance: dict) -> tuple[bool, str]:
    """Consul's `passing`: every check of the instance (node checks too) is passing."""
    bad = [c for c in instance.get("Checks") or [] if c.get("Status") != "passing"]
    why = []
    for c in bad:
        output = str(c.get("Output") or "").strip()
        text = f"check {c.get('Name') or c.get('CheckID')!r} is {c.get('Status')}"
        why.append(f"{text}: {output}" if output else text)
    return not bad, "; ".join(why)[:DETAIL_MAX]


def passing(instances: Iterable[dict]) -> list[dict]:
    """The instances whose checks all pass (what health/service?passing returns)."""
    return [i for i in instances if _health(i)[0]]


def _number(value: Any) -> float:
    """A number a peer sent (untrusted), or 0."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else 0.0


def _fetch_of(status: dict | str | None, meta: ObjectMeta) -> dict | None:
    if not isinstance(status, dict):
        return None
    for f in status.get("fetching") or []:
        if isinstance(f, dict) and f.get("name") == meta.name and f.get("version") == meta.version:
            return f
    return None


def sync_matcher(sync: SyncSpec | None, service: str) -> Callable[[str, list[str]], bool]:
    """Does a `?sync` target node `node` whose tuggle service has `tags`?  Consul's event
    filter rules (syncfilter); without sync, every node is a target."""
    if sync is None:
        return lambda node, tags: True
    return lambda node, tags: syncfilter.matches(sync.node, sync.service, sync.tag, node, service, tags)


def assemble(
    meta: ObjectMeta,
    instances: Iterable[dict],
    holders: Iterable[str],
    members: Iterable[str],
    consul_nodes: Iterable[str],
    relay_nodes: Iterable[str],
    records: Mapping[str, dict],
    node_status: NodeStatus,
    targeted: Callable[[str, list[str]], bool],
) -> dict:
    """The ?status JSON of `meta`.

    instances: health/service/<ns> rows (every instance, with its checks); holders: nodes
    holding this version (holder index); members: nodes
    that ran tuggle-agent (`<ns>.nodes/`), shown only while their Consul node is in the
    catalog (`consul_nodes`); relay_nodes: partial holders of this version; records:
    `<ns>.status/<name>/<version>/<node>` values by node; node_status: see NodeStatus;
    targeted(node, tags): whether the object's sync filters target the node."""
    by_node = {_node_of(i): i for i in instances}
    known = set(consul_nodes)
    nodes = sorted(set(by_node) | {m for m in members if m in known})
    relay = set(relay_nodes)
    holding = set(holders)
    rows = []
    targets = []
    for node in nodes:
        instance = by_node.get(node)
        tags = _tags(instance)
        if targeted(node, tags):
            targets.append(node)
        rows.append(
            _row(
                meta,
                node,
                instance,
                node in holding,
                node in relay,
                records.get(node),
                node_status.get(node),
                node in targets,
            )
        )
    complete = {r["node"] for r in rows if r["state"] == "complete"}
    sync = meta.sync
    return {
        "name": meta.name,
        "version": meta.version,
        "size": meta.size,
        "sha256": meta.sha256,
        "created_at": meta.created_at,
        "sync": None if sync is None else {"node": sync.node, "service": sync.service, "tag": sync.tag},
        "nodes": rows,
        "targets": targets,
        "complete": len(complete),
        "complete_targets": len(complete & set(targets)),
        "failed": sorted(n for n, r in records.items() if _hook_failed(r)),
    }


def _hook_failed(record: dict | None) -> bool:
    return isinstance(record, dict) and record.get("post_download") == "failed"


def _row(
    meta: ObjectMeta,
    node: str,
    instance: dict | None,
    holder: bool,
    relaying: bool,
    record: dict | None,
    status: dict | str | None,
    target: bool,
) -> dict:
    row: dict[str, Any] = {
        "node": node,
        "state": "missing",
        "passing": False,
        "bytes_verified": 0,
        "rate": 0.0,
        "source": "",
        "detail": "",
    }
    if instance is None:
        row.update(state="down", detail="tuggle-agent is not registered in Consul on this node (stopped?)")
        return row
    passing, why = _health(instance)
    fetch = _fetch_of(status, meta)
    row["passing"] = passing
    if not passing:
        row.update(state="down", detail=why)
    elif _hook_failed(record):
        assert record is not None
        error = str(record.get("error") or "")[:DETAIL_MAX]
        row.update(state="hook_failed", detail=f"post_download hook failed: {error}".rstrip(": "))
        if holder:
            row["bytes_verified"] = meta.size
    elif holder:
        row.update(state="complete", bytes_verified=meta.size)
    elif fetch is not None:
        verified = int(min(_number(fetch.get("verified")), meta.size))
        source = fetch.get("source")
        row.update(
            state="fetching",
            bytes_verified=verified,
            rate=round(_number(fetch.get("rate")), 1),
            source=source if isinstance(source, str) else "",
            detail="verified; running post_download hooks" if verified >= meta.size else "",
        )
    elif relaying:
        why = status if isinstance(status, str) else "it does not list the fetch (just ended?)"
        row.update(state="fetching", detail=f"partial holder (relay entry); progress unknown: {why}")
    elif isinstance(status, str):
        row["detail"] = f"does not hold it; its /_tuggle/status could not be read: {status}"
    elif meta.sync is None:
        row["detail"] = "not synced: fetched on its first GET"
    elif not target:
        row["detail"] = "not targeted by the sync filters"
    else:
        row["detail"] = "does not hold it and is not fetching it"
    return row


def with_holders(metas: Iterable[ObjectMeta], holders: Mapping[str, Iterable[str]]) -> list[dict]:
    """GET / entries: each object's metadata, then `holders` (how many passing nodes hold
    its version; `holders` gives their names by object name) and `no_passing_holder` --
    new keys go last, Go tuggle readers ignore them."""
    out = []
    for m in metas:
        count = len(set(holders.get(m.name, ())))
        out.append({**m.to_dict(), "holders": count, "no_passing_holder": count == 0})
    return out


class Rollout:
    """Gathers the inputs of `assemble` for this node's `GET /<name>?status`."""

    def __init__(
        self,
        cfg: Config,
        node: str,
        client,
        kv: ObjectsKV,
        holders: HolderIndex,
        local_status: Callable[[], dict],
        peer_timeout: float = 2.0,
    ):
        self.cfg = cfg
        self.node = node
        self.kv = kv
        self.holders = holders
        self.view = RolloutView(client, kv.keys)
        self.local_status = local_status
        self.peer_timeout = peer_timeout

    def announce(self) -> None:
        self.view.announce(self.node, self.cfg.advertise_address, self.cfg.port)

    def listing(self, metas: Iterable[ObjectMeta]) -> list[dict]:
        metas = list(metas)
        return with_holders(metas, self.holders.all_nodes((m.name, m.version) for m in metas))

    def status(self, name: str) -> dict:
        meta = self.kv.get(check_name(name))
        if meta is None:
            raise NotFound(f"{name} not found")
        instances = self.view.instances()
        holders = self.holders.nodes_of(meta.name, meta.version)
        members = self.view.members()
        consul_nodes = self.view.consul_nodes() if members - {_node_of(i) for i in instances} else set()
        return assemble(
            meta,
            instances,
            holders,
            members,
            consul_nodes,
            self.view.relay_nodes(meta.name, meta.version),
            self.view.node_records(meta.name, meta.version),
            self._node_statuses(instances, holders),
            sync_matcher(meta.sync, self.cfg.namespace),
        )

    def _node_statuses(self, instances: list[dict], holders: set[str]) -> dict[str, dict | str]:
        """/_tuggle/status of every passing node that is not a holder yet (ours directly)."""
        urls = {}
        for i in instances:
            node = _node_of(i)
            if node in holders or not _health(i)[0]:
                continue
            svc = i.get("Service") or {}
            address = svc.get("Address") or (i.get("Node") or {}).get("Address") or ""
            host = f"[{address}]" if ":" in address else address
            urls[node] = f"http://{host}:{svc.get('Port')}/_tuggle/status"
        out: dict[str, dict | str] = {}
        if urls.pop(self.node, None) is not None:
            out[self.node] = self.local_status()
        if urls:
            with concurrent.futures.ThreadPoolExecutor(min(32, len(urls)), thread_name_prefix="status") as pool:
                for node, answer in zip(urls, pool.map(self._read_status, urls.values()), strict=True):
                    out[node] = answer
        return out

    def _read_status(self, url: str) -> dict | str:
        try:
            r = requests.get(url, timeout=self.peer_timeout)
            if r.status_code != 200:
                return f"HTTP {r.status_code}"
            data = r.json()
        except requests.RequestException as exc:
            return f"{type(exc).__name__}: {exc}"[:DETAIL_MAX]
        except ValueError:
            return "not a JSON answer"
        return data if isinstance(data, dict) else "not a JSON object"

"""Object metadata, piece digests, tombstones and fetch-graph edges in Consul KV
(the key layout is in keys.py).

Everything read here is untrusted input: entries that do not parse are returned apart
(`Listing.bad`) for the caller to report, never acted on.  A recursive read that
answers 404 means "nothing readable here" -- an empty prefix, a typo'd namespace or a
token without read permission look the same -- so no caller may treat a missing key
as evidence that an object was deleted; tombstones are that evidence.
"""

from __future__ import annotations

import builtins
import json
import logging
import random
import time
from dataclasses import dataclass, field

import consul

from ..objects import changelog
from ..objects.edges import Edge
from ..objects.metadata import BadMetadata, ObjectMeta, PieceList, parse_entries
from .client import ConsulUnavailable, consul_errors
from .keys import Keys

log = logging.getLogger(__name__)

# Check-and-set attempts to append to the change-log before overwriting it (see log_change).
LOG_ATTEMPTS = 8


@dataclass
class Listing:
    """The objects KV holds (by name), and the keys under the prefix that are not valid objects."""

    metas: dict[str, ObjectMeta] = field(default_factory=dict)
    bad: list[tuple[str, str]] = field(default_factory=list)  # (key, why)


@dataclass(frozen=True)
class Tombstone:
    name: str
    version: str
    deleted_at: float


class ObjectsKV:
    def __init__(self, client: consul.Consul, namespace: str):
        self.c = client
        self.keys = Keys(namespace)

    # -- metadata ---------------------------------------------------------
    def get(self, name: str) -> ObjectMeta | None:
        return self.get_with_index(name)[0]

    def get_with_index(self, name: str) -> tuple[ObjectMeta | None, int]:
        """The metadata of `name` (None if absent or malformed) and the key's ModifyIndex."""
        with consul_errors(self.c, f"reading metadata of {name}"):
            _, entry = self.c.kv.get(self.keys.meta(name))
        if entry is None or entry.get("Value") is None:
            return None, 0
        return self._parsed(entry), int(entry["ModifyIndex"])

    def _parsed(self, entry: dict) -> ObjectMeta | None:
        try:
            return ObjectMeta.from_entry(entry, self.keys.meta_prefix)
        except BadMetadata:
            return None

    def list(self) -> Listing:
        with consul_errors(self.c, "listing objects"):
            _, entries = self.c.kv.get(self.keys.meta_prefix, recurse=True)
        metas, bad = parse_entries(entries, self.keys.meta_prefix)
        return Listing({m.name: m for m in metas}, bad)

    def create(self, meta: ObjectMeta, pieces: PieceList) -> bool:
        """Store a new object; False if the name is taken (cas=0 makes concurrent PUTs race-free)."""
        pieces_key = self.keys.pieces(meta.name, meta.version)
        with consul_errors(self.c, f"storing metadata of {meta.name}"):
            self.c.kv.put(pieces_key, pieces.to_json())
            if self.c.kv.put(self.keys.meta(meta.name), meta.to_json(), cas=0):
                self.log_change("put", meta.name, meta.version)
                return True
            # The name is taken.  Our piece list goes -- unless the winner is this very version
            # (two holders adopting one orphan at once wrote the same key): it is theirs too.
            _, entry = self.c.kv.get(self.keys.meta(meta.name))
            winner = self._parsed(entry) if entry is not None else None
            if winner is None or winner.version != meta.version:
                self.c.kv.delete(pieces_key)
            return False

    def update(self, meta: ObjectMeta, modify_index: int) -> bool:
        with consul_errors(self.c, f"updating metadata of {meta.name}"):
            if not self.c.kv.put(self.keys.meta(meta.name), meta.to_json(), cas=modify_index):
                return False
        self.log_change("sync", meta.name, meta.version)
        return True

    def delete(self, name: str, version: str, modify_index: int) -> bool:
        """Delete one version: tombstone first (the durable evidence every node acts on),
        then the metadata with check-and-set, so a newer PUT of the name is never removed.
        False if the key changed under us (nothing deleted but the tombstone of our version)."""
        with consul_errors(self.c, f"deleting {name}"):
            self.c.kv.put(self.keys.tombstone(name, version), json.dumps({"deleted_at": time.time()}).encode())
            if not self.c.kv.delete(self.keys.meta(name), cas=modify_index):
                return False
            self.log_change("delete", name, version)
            self.c.kv.delete(self.keys.pieces(name, version))
            self.c.kv.delete(self.keys.graph_prefix(name), recurse=True)
            self.c.kv.delete(self.keys.relay_prefix(name), recurse=True)
            self.c.kv.delete(self.keys.nudge_prefix(name), recurse=True)
            self.c.kv.delete(self.keys.status_prefix(name), recurse=True)
            return True

    def rollback_create(self, meta: ObjectMeta) -> None:
        """Undo create() of `meta` (its copy could not be committed): only if KV still holds
        our version, and without a tombstone -- nobody deleted anything."""
        with consul_errors(self.c, f"rolling back the creation of {meta.name}"):
            _, entry = self.c.kv.get(self.keys.meta(meta.name))
            if (
                entry is not None
                and (self._parsed(entry) or meta).version == meta.version
                and self.c.kv.delete(self.keys.meta(meta.name), cas=int(entry["ModifyIndex"]))
            ):
                self.log_change("delete", meta.name, meta.version)  # nodes that saw the put look again
            self.c.kv.delete(self.keys.pieces(meta.name, meta.version))

    def remove_unparsable(self, key: str, modify_index: int) -> bool:
        """Delete a metadata key that does not parse (so a broken entry can always be removed).
        Not logged in the change-log: no node ever acted on the entry."""
        with consul_errors(self.c, f"deleting malformed entry {key}"):
            return bool(self.c.kv.delete(key, cas=modify_index))

    def raw(self, name: str) -> dict | None:
        with consul_errors(self.c, f"reading {name}"):
            _, entry = self.c.kv.get(self.keys.meta(name))
        return entry

    def pieces(self, meta: ObjectMeta) -> PieceList | None:
        with consul_errors(self.c, f"reading piece digests of {meta.name}"):
            _, entry = self.c.kv.get(self.keys.pieces(meta.name, meta.version))
        if entry is None or entry.get("Value") is None:
            return None
        try:
            return PieceList.from_json(entry["Value"], meta, entry.get("Key"))
        except (TypeError, ValueError, KeyError):
            return None

    # -- change-log ---------------------------------------------------------
    def changes(self) -> tuple[bytes | None, int, int]:
        """The change-log's raw value, ModifyIndex and CreateIndex ((None, 0, 0) if absent)."""
        with consul_errors(self.c, "reading the change-log"):
            _, entry = self.c.kv.get(self.keys.changes)
        if entry is None:
            return None, 0, 0
        return entry.get("Value"), int(entry["ModifyIndex"]), int(entry["CreateIndex"])

    def log_change(self, op: str, name: str, version: str) -> None:
        """Append one entry to the change-log with check-and-set, so concurrent writers
        never lose each other's entries. Bounded: after LOG_ATTEMPTS lost races the log is
        overwritten with a numbering gap (changelog.appended(restart=True)), which makes
        every reader reconcile fully. Never raises: the metadata write before it is what
        counts, and a node that misses an entry still has the event and its periodic full
        reconcile."""
        try:
            for attempt in range(LOG_ATTEMPTS):
                raw, index, _ = self.changes()
                value = changelog.encode(changelog.appended(changelog.parse(raw), op, name, version))
                with consul_errors(self.c, "appending to the change-log"):
                    if self.c.kv.put(self.keys.changes, value, cas=index):
                        return
                time.sleep(random.uniform(0, 0.005 * 2**attempt))  # writers racing: spread them
            value = changelog.encode(changelog.appended(changelog.parse(raw), op, name, version, restart=True))
            with consul_errors(self.c, "overwriting the change-log"):
                self.c.kv.put(self.keys.changes, value)
            log.warning("the change-log kept changing under us; overwrote it (every node reconciles fully once)")
        except ConsulUnavailable as exc:
            log.warning("%s %s of %s not in the change-log: %s", op, version, name, exc)

    # -- tombstones -------------------------------------------------------
    def tombstones(self, name: str | None = None) -> dict[tuple[str, str], Tombstone]:
        """Every tombstone, or those of one name (a read bounded by that name's deletes)."""
        prefix = self.keys.tombstones_prefix if name is None else self.keys.tombstones_of(name)
        with consul_errors(self.c, "listing tombstones"):
            _, entries = self.c.kv.get(prefix, recurse=True)
        out = {}
        for e in entries or []:
            rest = e.get("Key", "")[len(self.keys.tombstones_prefix) :]
            if rest.count("/") != 1:
                continue
            of, version = rest.split("/")
            try:
                at = float(json.loads(e.get("Value") or b"{}").get("deleted_at", 0))
            except (TypeError, ValueError, AttributeError):
                at = 0.0
            out[(of, version)] = Tombstone(of, version, at)
        return out

    def has_tombstone(self, name: str, version: str) -> bool:
        with consul_errors(self.c, f"reading the tombstone of {name}"):
            _, entry = self.c.kv.get(self.keys.tombstone(name, version))
        return entry is not None

    def expire_tombstones(self, older_than: float) -> int:
        """Drop tombstones older than `older_than` (epoch seconds); any node may do it."""
        n = 0
        for t in self.tombstones().values():
            if t.deleted_at and t.deleted_at < older_than:
                with consul_errors(self.c, "expiring tombstones"):
                    self.c.kv.delete(self.keys.tombstone(t.name, t.version))
                n += 1
        return n

    # -- per-node status (read by ?status) --------------------------------
    def record_post_download(self, meta: ObjectMeta, node: str, error: str | None) -> None:
        """`node`'s post_download hook of this version failed (`error`), or passed (the
        record of an earlier failure goes)."""
        key = self.keys.status(meta.name, meta.version, node)
        with consul_errors(self.c, f"recording the post_download result of {meta.name}"):
            if error is None:
                self.c.kv.delete(key)
            else:
                value = {"post_download": "failed", "error": error[-2000:], "at": time.time()}
                self.c.kv.put(key, json.dumps(value).encode())

    # -- graph ------------------------------------------------------------
    def add_edge(self, name: str, edge: Edge) -> None:
        with consul_errors(self.c, f"recording graph edge of {name}"):
            self.c.kv.put(self.keys.graph_edge(name, edge.source, edge.target), edge.to_json())

    def edges(self, name: str) -> builtins.list[Edge]:  # builtins.: the class has a list()
        with consul_errors(self.c, f"reading graph of {name}"):
            _, entries = self.c.kv.get(self.keys.graph_prefix(name), recurse=True)
        return [edge for e in entries or [] if (edge := Edge.from_json(e.get("Value"))) is not None]

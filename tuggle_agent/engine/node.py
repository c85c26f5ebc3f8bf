"""One tuggle-agent node: a small facade over its parts, built complete by `Node.start`.

The HTTP front and the watch dispatcher call only this: upload, delete, open (client
and peer reads), sync, reconcile, on_event, adopt, status.  The parts it wires:

  store (bytes on disk) + copies (what we advertise)   engine/store.py, copies.py
  fetcher (one FetchJob per fetch) + sources policy     engine/fetcher.py, sources.py
  reconcile decisions (pure)                            engine/reconcile.py
  Consul: objects KV, holder service, holders, relay    consul/
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .. import metrics
from ..config import Config
from ..consul.agent import HolderService
from ..consul.client import ConsulUnavailable, make_client_from
from ..consul.event import fire
from ..consul.health import HolderFinder
from ..consul.keys import Keys
from ..consul.kv import ObjectsKV
from ..consul.relay import RelayRegistry
from ..consul.semaphore import Semaphore
from ..consul.session import RenewedSession
from ..errors import Busy, Deleted, Exists, FetchOnly, Invalid, NoSpace, NotFound, TooLarge, TuggleError
from ..objects import syncfilter
from ..objects.edges import Edge
from ..objects.metadata import ObjectMeta, PieceList, SyncSpec, now_rfc3339, piece_size_for
from ..objects.names import check_name
from ..objects.names import object_id as object_id_of
from ..objects.verify import Digester
from .copies import Copies
from .download import Download
from .fetcher import FetchDeps, Fetcher
from .peer import PeerClient
from .progress import Progress
from .ratelimit import TokenBucket
from .reconcile import LocalCopy, evidence_of_removal, plan
from .sources import SourcePolicy
from .store import LocalStore

log = logging.getLogger(__name__)


@dataclass
class Opened:
    """An object ready to be read by a client: a complete local file, or a fetch in progress
    (whose `read(start, end)` yields verified bytes), or neither for HEAD."""

    meta: ObjectMeta
    path: Path | None = None
    download: Download | None = None


class Readable(Protocol):
    """An upload body: the request's input stream."""

    def read(self, n: int = -1, /) -> bytes: ...


class Lease:
    """Iterates `chunks` holding a slot, released exactly once: when the chunks are done or
    when the server closes the body (a client gone early; a generator never started would
    not run its finally, so this is a class)."""

    def __init__(self, chunks: Iterator[bytes], release: Callable[[], None]):
        self._chunks = chunks
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> Lease:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
            release()


def _wait_for_consul(service: HolderService, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        try:
            return service.node_name()
        except ConsulUnavailable as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s Retrying in %.1fs.", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


class Node:
    def __init__(self, cfg: Config, name: str, service: HolderService, client, store: LocalStore):
        """Use Node.start(cfg): it finds our name in Consul first, so every part is complete."""
        self.cfg = cfg
        self.name = name
        self.service = service
        self.client = client
        self.store = store
        keys = Keys(cfg.namespace)
        self.kv = ObjectsKV(client, cfg.namespace)
        self.finder = HolderFinder(client, cfg.namespace)
        self.copies = Copies(cfg, store, service, name)
        self.serve_bucket = TokenBucket(cfg.serve_rate)
        # Legitimate peers are few (each source's Consul semaphore admits max_fetch_per_source
        # fetchers, plus one relay); the cap keeps anyone who merely sends X-Tuggle-Internal
        # from tying up every HTTP thread with slow reads.
        self._peer_slots = threading.BoundedSemaphore(cfg.max_serving_peers)
        # Our sessions die with our HTTP check as well as with the node (see session.py).
        checks = ["serfHealth", f"service:{cfg.namespace}"]
        self.fetcher = Fetcher(
            FetchDeps(
                cfg=cfg,
                node=name,
                store=store,
                copies=self.copies,
                kv=self.kv,
                finder=self.finder,
                relay=RelayRegistry(client, keys),
                peer=PeerClient(name, cfg.stall_timeout, cfg.min_source_rate),
                policy=SourcePolicy(cfg.nearest),
                bucket=TokenBucket(cfg.fetch_rate),
                new_session=lambda: RenewedSession(client, "tuggle-agent fetch", 15.0, "delete", checks),
                semaphore=lambda source, session: Semaphore(client, keys.lock(source), cfg.source_limit, session),
            ),
            on_failed=self._fetch_failed,
        )
        self.bad_entries: list[tuple[str, str]] = []
        self._sync_retries: dict[str, int] = {}  # version -> failed sync prefetches
        self._stop = threading.Event()

    @classmethod
    def start(cls, cfg: Config, store: LocalStore | None = None) -> Node:
        client = make_client_from(cfg)
        service = HolderService(
            client, cfg.namespace, cfg.port, cfg.advertise_address, cfg.check_interval, cfg.check_timeout
        )
        name = _wait_for_consul(service, cfg.consul_start_timeout)
        store = store or LocalStore(cfg.data_dir)
        removed = store.clean_temp()
        if removed:
            log.info("removed %d leftover temp files of an earlier run", removed)
        node = cls(cfg, name, service, client, store)
        node.reconcile(register=True)
        if cfg.scrub_interval:
            threading.Thread(target=node._scrub_loop, name="scrub", daemon=True).start()
        return node

    # -- writes -----------------------------------------------------------
    def check_upload(self, name: str, length: int | None) -> None:
        """Every refusal the request line and headers decide, before a byte of the body is read."""
        check_name(name)
        if self.cfg.fetch_only:
            raise FetchOnly(f"this node is fetch-only (fetch_only: true): PUT {name} on a node that accepts uploads")
        if length is not None and length > self.cfg.max_upload_size:
            raise TooLarge(f"{name}: {length} bytes is more than max_upload_size ({self.cfg.max_upload_size} bytes)")
        if self.kv.raw(name) is not None:
            raise Exists(f"{name} already exists; objects are immutable: DELETE it first or choose a new name")

    def upload(
        self, name: str, body: Readable, length: int | None, content_type: str, sync: SyncSpec | None = None
    ) -> ObjectMeta:
        """Store a new object.  The bytes land in a temp file; the KV check-and-set decides
        the winner of concurrent PUTs *before* anything is moved into place, so a loser
        never touches the winner's file (or any earlier copy of the name).  With `sync`,
        the object is marked for prefetch in the same KV write that creates it."""
        self.check_upload(name, length)
        piece = piece_size_for(length if length is not None else self.cfg.max_upload_size)
        digester = Digester(piece)
        temp, f = self.store.temp_file(name, "upload")
        try:
            with f:
                progress = Progress(log, f"receiving {name}", length or 0, self.cfg.progress_interval)
                while True:
                    want = 1 << 20 if length is None else min(1 << 20, length - digester.size)
                    if want <= 0:
                        break
                    block = body.read(want)
                    if not block:
                        break
                    if digester.size + len(block) > self.cfg.max_upload_size:
                        raise TooLarge(
                            f"{name}: more than max_upload_size ({self.cfg.max_upload_size} bytes); nothing stored"
                        )
                    f.write(block)
                    digester.update(block)
                    progress.update(digester.size)
                if length is not None and digester.size < length:
                    raise Invalid(f"upload of {name} truncated: got {digester.size} of {length} bytes; nothing stored")
                f.flush()
                os.fsync(f.fileno())
            sha, digests = digester.finish()
            meta = ObjectMeta(
                name=name, size=digester.size, sha256=sha, content_type=content_type, piece_size=piece, sync=sync
            )
            try:
                meta.validate()  # what every reader will check: refuse it here, not there
            except ValueError as exc:
                raise Invalid(f"{name}: {exc}; nothing stored") from None
            with self.store.lock:
                if not self.kv.create(meta, PieceList(piece, digests)):
                    raise Exists(f"{name} already exists (created concurrently); nothing changed")
                try:
                    self.store.commit(temp, meta, self.name)
                except BaseException:
                    self.kv.rollback_create(meta)
                    raise
            self.copies.advertise(meta)
            metrics.UPLOADED_BYTES.inc(meta.size)
            log.info("stored %s: %s, sha256 %s", name, progress.summary(), sha)
            if sync is not None:
                self._fire("FETCH", meta, sync)
            return meta
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpace(
                    f"no space left in {self.cfg.data_dir} for {name}; free space or raise the disk; nothing stored"
                ) from None
            raise
        finally:
            temp.unlink(missing_ok=True)

    def _fire(self, verb: str, meta: ObjectMeta, sync: SyncSpec | None = None) -> None:
        """Events are the fast path only: KV (watched durably) already says what they say,
        so a failed fire is logged, never turned into a failed request."""
        try:
            fire(
                self.client,
                self.cfg.namespace,
                verb,
                meta.version,
                meta.id,
                node=sync.node if sync else "",
                service=sync.service if sync else "",
                tag=sync.tag if sync else "",
            )
        except ConsulUnavailable as exc:
            log.warning("%s event for %s not sent (%s); nodes still learn it from their KV watch", verb, meta.name, exc)

    def delete(self, name: str) -> str:
        """Delete the current version everywhere: tombstone, then metadata, then the event."""
        check_name(name)
        for _ in range(5):
            meta, index = self.kv.get_with_index(name)
            if meta is None:
                if index and self.kv.remove_unparsable(self.kv.keys.meta(name), index):
                    log.warning("deleted malformed metadata entry %s", self.kv.keys.meta(name))
                    return f"deleted {name} (its metadata in Consul was malformed)"
                if not index:
                    raise NotFound(f"{name} not found")
                continue
            if self.kv.delete(name, meta.version, index):
                self._fire("DELETE", meta)
                log.info(
                    "deleted %s (version %s) from Consul; tombstone written, DELETE event fired", name, meta.version
                )
                self.drop_local(name, meta.version, "it was deleted")
                return f"deleted {name}"
        raise Exists(f"{name} kept changing while we deleted it; try again")

    def drop_local(self, name: str, version: str, why: str) -> bool:
        """Stop advertising and remove the local copy of `version` (cancel its fetch)."""
        cancelled = self.fetcher.cancel(name, version)
        with self.store.lock:
            local = self.store.get(name)
            if local is None or local.meta.version != version:
                return cancelled
            self.copies.drop(name, local.meta, why)
            return True

    def sync(self, name: str, spec: SyncSpec) -> ObjectMeta:
        """Mark for sync in KV (durable) and fire FETCH (fast); filters are Consul's."""
        for _ in range(10):
            meta, index = self.kv.get_with_index(name)
            if meta is None:
                raise NotFound(f"{name} not found")
            meta.sync = spec
            if self.kv.update(meta, index):
                self._fire("FETCH", meta, spec)
                return meta
        raise ConsulUnavailable(f"could not mark {name} for sync: it kept changing under us")

    def adopt(self, names: list[str]) -> dict[str, str]:
        """Publish orphans again from their local copies (after a KV loss): metadata, piece
        digests and holder tag.  The KV check-and-set lets only one holder write; the others
        find their version there and just advertise."""
        out = {}
        for name in names or sorted(self.copies.orphans):
            out[name] = self._adopt(check_name(name))
        self.reconcile()
        return out

    def _adopt(self, name: str) -> str:
        local = self.store.get(name)
        if local is None:
            return "no local copy here"
        meta = local.meta
        if self.kv.has_tombstone(name, meta.version):
            return "not adopted: this version was deleted explicitly (tombstone in Consul)"
        digester = Digester(meta.piece_size)
        with open(local.path, "rb") as f:
            while block := f.read(1 << 20):
                digester.update(block)
        sha, digests = digester.finish()
        if sha != meta.sha256:
            self.copies.quarantine(meta, f"SHA-256 is {sha}, expected {meta.sha256}")
            return "not adopted: the local copy is corrupt (removed)"
        with self.store.lock:
            current = self.kv.get(name)
            if current is None and self.kv.create(meta, PieceList(meta.piece_size, digests)):
                result = "published again from this node's copy"
            else:
                current = self.kv.get(name)
                if current is None or current.version != meta.version:
                    return "not adopted: Consul holds another version of this name"
                result = "already published; advertising this copy"
            self.copies.advertise(meta)
        log.warning("adopted orphan %s (version %s): %s", name, meta.version, result)
        return result

    # -- reads ------------------------------------------------------------
    def meta(self, name: str) -> ObjectMeta:
        meta = self.kv.get(check_name(name))
        if meta is None:
            raise NotFound(f"{name} not found")
        return meta

    def open(self, name: str, head: bool = False) -> Opened:
        """For a client: the local copy, or a fetch from the nearest holder (waiting until its
        first verified bytes, or its failure, so the answer can still carry a status)."""
        meta = self.meta(name)
        local = self.copies.checked(name, meta.version)
        if local is not None:
            return Opened(meta, path=local.path)
        if head:
            return Opened(meta)
        d = self.fetcher.ensure(meta)
        d.wait_started(self.cfg.fetch_timeout)
        return Opened(meta, download=d)

    def open_for_peer(
        self, name: str, bounds: Callable[[int], tuple[int, int]]
    ) -> tuple[ObjectMeta, tuple[int, int], Iterator[bytes]]:
        """For a peer: the bytes `bounds(size)` gives, from local bytes only -- a complete copy,
        or with pipelined relay the verified part of a fetch in progress -- never by starting
        a fetch.  Holds one of `max_serving_peers` slots until the body is done or closed."""
        meta = self.meta(name)
        start, end = bounds(meta.size)
        local = self.copies.checked(name, meta.version)
        d = self.fetcher.active(name) if self.cfg.pipelined and local is None else None
        if local is None and (d is None or d.meta.version != meta.version):
            raise NotFound(f"{name} is not held on this node")
        if not self._peer_slots.acquire(blocking=False):
            metrics.PEERS_REFUSED.inc()
            raise Busy(
                f"{self.name} is already serving {self.cfg.max_serving_peers} peers (max_serving_peers); "
                "try another holder"
            )
        if local is not None:
            whole = (start, end) == (0, meta.size) and self.cfg.verify_on_serve
            chunks = self._file_bytes(local.path, meta, start, end, whole)
        else:
            assert d is not None
            chunks = d.read(start, end)
        return meta, (start, end), Lease(self._to_peer(chunks), self._peer_slots.release)

    def _file_bytes(self, path: Path, meta: ObjectMeta, start: int, end: int, verify: bool) -> Iterator[bytes]:
        """A whole read re-checks our copy on the way (a peer verifies too, but a bad copy
        must stop being advertised at once, not after every peer has tried it)."""
        h = hashlib.sha256()
        with open(path, "rb") as f:
            f.seek(start)
            pos = start
            while pos < end and (block := f.read(min(256 * 1024, end - pos))):
                pos += len(block)
                if verify:
                    h.update(block)
                yield block
        if verify and h.hexdigest() != meta.sha256:
            self.copies.quarantine(meta, "its bytes no longer match their SHA-256 (changed on disk?)")

    def _to_peer(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Bytes for peers pass the node-wide serve_rate bucket."""
        for block in chunks:
            self.serve_bucket.take(len(block))
            metrics.SERVED_BYTES.inc(len(block))
            yield block

    def listing(self) -> list[ObjectMeta]:
        return sorted(self.kv.list().metas.values(), key=lambda m: m.name)

    def edges(self, name: str) -> list[Edge]:
        self.meta(name)
        return self.kv.edges(name)

    # -- keeping up with Consul -------------------------------------------
    def sync_applies(self, sync: SyncSpec) -> bool:
        """The node/service/tag rules Consul applies to filtered events (Go RE2, match anywhere)."""
        return syncfilter.matches(sync.node, sync.service, sync.tag, self.name, self.cfg.namespace, self.service.tags)

    def reconcile(self, register: bool = False) -> dict:
        """Make the node agree with KV: drop copies Consul proves gone, keep the rest
        (advertising those KV knows, keeping the others as orphans), prefetch sync targets."""
        with self.store.lock:
            listed_at = time.time()
            listing = self.kv.list()
            tombstones = self.kv.tombstones()
            active = {d.meta.name: d for d in self.fetcher.snapshot()}
            local: dict[str, LocalCopy] = {}
            for name in sorted(set(self.store.names()) | set(self.store.sidecar_names())):
                if name in active:
                    continue  # a fetch in progress owns this name until its hooks ran and it tagged
                obj = self.store.get(name)
                if obj is not None:
                    local[name] = LocalCopy(name, obj.meta.version, obj.meta.sha256)
                elif self.store.sidecar_meta(name) is not None:
                    # Our sidecar, but the file is gone or no longer its size: not a copy.
                    self.copies.drop(name, self.store.sidecar_meta(name), "its file is missing or damaged")
            p = plan(
                local,
                listing.metas,
                tombstones,
                fetching={n: d.meta.version for n, d in active.items()},
                fetching_before={n: d.meta.version for n, d in active.items() if d.started_at < listed_at},
                applies=self.sync_applies,
            )
            for name, why in p.drop:
                obj = self.store.get(name)
                self.copies.drop(name, obj.meta if obj else None, why)
            for name, why in p.cancel:
                self.fetcher.cancel(name)
                log.info("cancelled the fetch of %s: %s", name, why)
            orphans = {c.name: why for c, why in p.orphans}
            self.copies.set_orphans(orphans)
            for c, _ in p.orphans:
                self.service.remove(object_id_of(c.name))
        self._report_bad(listing.bad)
        tags = set() if self.cfg.fetch_only else {m.id for m in p.keep}
        if register:
            self.service.register(tags)
        else:
            self.service.add(*tags)  # a no-op (no catalog write) when nothing is missing
            if self.service.ensure_registered():
                log.warning("the local Consul agent had lost our service registration; registered again")
        started = [m.name for m in p.prefetch if self.fetcher.ensure(m)]
        self._expire_tombstones()
        return {
            "kept": len(p.keep),
            "dropped": [n for n, _ in p.drop],
            "orphans": sorted(orphans),
            "prefetching": started,
        }

    def _report_bad(self, bad: list[tuple[str, str]]) -> None:
        new = [b for b in bad if b not in self.bad_entries]
        for key, why in new:
            log.warning("ignoring KV entry %s: %s (fix or DELETE it; nothing is done with it)", key, why)
        self.bad_entries = list(bad)
        metrics.BAD_ENTRIES.set(len(bad))

    def _expire_tombstones(self) -> None:
        try:
            n = self.kv.expire_tombstones(time.time() - self.cfg.tombstone_ttl)
        except ConsulUnavailable as exc:
            log.debug("tombstone expiry skipped: %s", exc)
            return
        if n:
            log.info("expired %d tombstones older than tombstone_ttl", n)

    def on_event(self, verb: str, object_id: str, version: str) -> str:
        """A FETCH or DELETE event: a hint, checked against KV before anything is done.
        (Events can be forged or replayed by anyone who may fire them; KV decides.)"""
        if verb == "DELETE":
            names = {n for n in self.store.names() if object_id_of(n) == object_id}
            names |= {d.meta.name for d in self.fetcher.snapshot() if d.meta.id == object_id}
            if not names:
                return "not held here"
            out = []
            for name in sorted(names):
                current = self.kv.get(name)
                metas = {name: current} if current is not None else {}
                tomb = {(name, version)} if self.kv.has_tombstone(name, version) else set()
                why = evidence_of_removal(name, version, metas, tomb)
                if why is None:
                    out.append(f"{name}: kept (Consul still holds that version, or no tombstone proves its deletion)")
                elif self.drop_local(name, version, why):
                    out.append(f"removed {name}")
                else:
                    out.append(f"{name}: held here in another version: kept")
            return "; ".join(out)
        meta = next((m for m in self.kv.list().metas.values() if m.id == object_id), None)
        if meta is None or meta.version != version:
            return "stale: Consul no longer holds that version"
        local = self.store.get(meta.name)
        if local is not None and local.meta.version == meta.version:
            return f"prefetch of {meta.name} not needed: held here"
        self.fetcher.ensure(meta)
        return f"prefetch of {meta.name} started"

    def _fetch_failed(self, meta: ObjectMeta, failure: TuggleError) -> None:
        """A sync prefetch must not give up on a transient failure (no passing holder
        yet, every source busy or gone): reconcile again later, backing off to a minute."""
        if meta.sync is None or not failure.transient or isinstance(failure, Deleted) or self._stop.is_set():
            return
        tries = self._sync_retries.get(meta.version, 0) + 1
        self._sync_retries[meta.version] = tries
        delay = min(60.0, 2.0**tries)
        log.info("will retry the sync of %s in %.0fs (attempt %d failed: %s)", meta.name, delay, tries, failure)
        timer = threading.Timer(delay, self._retry_sync)
        timer.daemon = True
        timer.start()

    def _retry_sync(self) -> None:
        try:
            self.reconcile()
        except ConsulUnavailable as exc:
            log.warning("retrying sync: %s", exc)

    def _scrub_loop(self) -> None:
        while not self._stop.wait(self.cfg.scrub_interval):
            bad = self.copies.scrub()
            log.info("scrub: every local copy re-hashed; %d corrupt (removed and no longer advertised)", bad)

    # -- status -----------------------------------------------------------
    def ready(self) -> dict[str, str]:
        """Readiness (beside liveness /?ping): what is wrong, by part; empty when ready."""
        problems = {}
        try:
            self.service.node_name()
        except ConsulUnavailable as exc:
            problems["consul"] = str(exc)
        try:
            probe, f = self.store.temp_file("ready-probe", "ready")
            with f:
                f.write(b"ok")
            probe.unlink()
        except OSError as exc:
            problems["data_dir"] = f"{self.store.root} is not writable: {exc.strerror}"
        return problems

    def status(self) -> dict:
        local = []
        for name in self.store.names():
            obj = self.store.get(name)
            if obj is not None:
                local.append(
                    {
                        "name": name,
                        "version": obj.meta.version,
                        "size": obj.meta.size,
                        "sha256": obj.meta.sha256,
                        "source": obj.source,
                        "status": obj.status,
                        "orphan": name in self.copies.orphans,
                    }
                )
        fetching = [
            {
                "name": d.meta.name,
                "version": d.meta.version,
                "size": d.meta.size,
                "verified": d.verified,
                "source": d.source,
            }
            for d in self.fetcher.snapshot()
        ]
        return {
            "node": self.name,
            "fetch_only": self.cfg.fetch_only,
            "relay": self.cfg.relay,
            "served_to_peers": int(metrics.REGISTRY.get_sample_value("tuggle_served_to_peers_bytes_total") or 0),
            "objects": local,
            "fetching": fetching,
            "orphans": [{"name": n, "why": why} for n, why in sorted(self.copies.orphans.items())],
            "bad_entries": [{"key": k, "why": why} for k, why in self.bad_entries],
            "checked_at": now_rfc3339(),
        }

    def close(self) -> None:
        """Leave the cluster cleanly: stop fetches, then deregister (no critical leftover)."""
        self._stop.set()
        self.fetcher.cancel_all()
        try:
            self.service.deregister()
        except ConsulUnavailable as exc:
            log.warning("%s", exc)

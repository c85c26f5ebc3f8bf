"""Writes: PUT, DELETE, ?sync and adopt -- everything that changes what Consul KV holds.

Concurrent PUTs of one name are decided by the KV check-and-set before any file is moved
into place; a DELETE writes a tombstone of the version it removes before the metadata
goes (with check-and-set), so every node removes its copy on evidence, never on absence.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import Protocol

from .. import metrics
from ..config import Config
from ..consul.client import ConsulUnavailable
from ..consul.event import fire
from ..consul.kv import ObjectsKV
from ..errors import Exists, FetchOnly, Invalid, NoSpace, NotFound, TooLarge
from ..objects.metadata import ObjectMeta, PieceList, SyncSpec, piece_size_for
from ..objects.names import check_name
from ..objects.verify import BackgroundDigester, Digester
from .copies import Copies
from .keeper import Keeper
from .progress import Progress
from .store import LocalStore

log = logging.getLogger(__name__)


class Readable(Protocol):
    """An upload body: the request's input stream.  readinto fills the buffer unless the
    body ends first, and returns 0 at its end."""

    def readinto(self, b: bytearray, /) -> int: ...


class Writes:
    def __init__(
        self, cfg: Config, node: str, client, kv: ObjectsKV, store: LocalStore, copies: Copies, keeper: Keeper
    ):
        self.cfg = cfg
        self.name = node
        self.client = client
        self.kv = kv
        self.store = store
        self.copies = copies
        self.keeper = keeper

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
        temp, f = self.store.temp_file(name, "upload")
        try:
            with f, BackgroundDigester(Digester(piece, self.cfg.piece_digest)) as digester:
                progress = Progress(log, f"receiving {name}", length, self.cfg.progress_interval)
                while True:
                    want = 1 << 20 if length is None else min(1 << 20, length - digester.size)
                    if want <= 0:
                        break
                    buf = bytearray(want)  # a new one each time: the digest thread holds the last ones
                    n = body.readinto(buf)
                    if not n:
                        break
                    block = memoryview(buf)[:n]
                    if digester.size + len(block) > self.cfg.max_upload_size:
                        raise TooLarge(
                            f"{name}: more than max_upload_size ({self.cfg.max_upload_size} bytes); nothing stored"
                        )
                    digester.update(block)  # hashed by its thread while we write it
                    f.write(block)
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
                if not self.kv.create(meta, PieceList(piece, digests, self.cfg.piece_digest)):
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
                self.keeper.drop_local(name, meta.version, "it was deleted")
                return f"deleted {name}"
        raise Exists(f"{name} kept changing while we deleted it; try again")

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
        digests and holder key.  The KV check-and-set lets only one holder write; the others
        find their version there and just advertise."""
        out = {}
        for name in names or sorted(self.copies.orphans):
            out[name] = self._adopt(check_name(name))
        self.keeper.reconcile()
        return out

    def _adopt(self, name: str) -> str:
        local = self.store.get(name)
        if local is None:
            return "no local copy here"
        meta = local.meta
        if self.kv.has_tombstone(name, meta.version):
            return "not adopted: this version was deleted explicitly (tombstone in Consul)"
        digester = Digester(meta.piece_size, self.cfg.piece_digest)
        with open(local.path, "rb") as f:
            while block := f.read(1 << 20):
                digester.update(block)
        sha, digests = digester.finish()
        if sha != meta.sha256:
            self.copies.quarantine(meta, f"SHA-256 is {sha}, expected {meta.sha256}")
            return "not adopted: the local copy is corrupt (removed)"
        with self.store.lock:
            current = self.kv.get(name)
            if current is None and self.kv.create(meta, PieceList(meta.piece_size, digests, digester.algorithm)):
                result = "published again from this node's copy"
            else:
                current = self.kv.get(name)
                if current is None or current.version != meta.version:
                    return "not adopted: Consul holds another version of this name"
                result = "already published; advertising this copy"
            self.copies.advertise(meta)
        log.warning("adopted orphan %s (version %s): %s", name, meta.version, result)
        return result

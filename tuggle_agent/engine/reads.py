"""Reads: what a client or a peer gets for `GET /<name>`, decided here, not in the front.

A client gets the local copy (re-hashed first if it was touched on disk), or a fetch from
the nearest holder, streamed as it is verified.  A peer gets local bytes only -- a
complete copy, or with pipelined relay the verified part of a fetch in progress -- and
never starts a fetch; at most `max_serving_peers` are served at once.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .. import metrics
from ..config import Config
from ..consul.kv import ObjectsKV
from ..errors import Busy, NotFound
from ..objects.edges import Edge
from ..objects.metadata import ObjectMeta
from ..objects.names import check_name
from .copies import Copies
from .disk import Disk
from .download import Download, Span, pread_span, pread_spans
from .fetcher import Fetcher
from .ratelimit import TokenBucket


@dataclass
class Opened:
    """An object ready to be read by a client: a complete local file, or a fetch in progress
    (whose `read(start, end)` yields verified bytes), or neither for HEAD."""

    meta: ObjectMeta
    path: Path | None = None
    download: Download | None = None
    # The local copy opened (counted as read until it is closed: disk.py never evicts it meanwhile).
    file: BinaryIO | None = None
    # Counts a reader of a fetch in progress (disk.py); None: not counted.
    begin_read: Callable[[], Callable[[], None] | None] | None = None

    def read(self, start: int, end: int) -> Iterator[bytes]:
        """Verified bytes of the fetch in progress, counted as a read until done or closed."""
        assert self.download is not None
        release = self.begin_read() if self.begin_read is not None else None
        chunks = self.download.read(start, end)
        return Lease(chunks, release) if release is not None else chunks


def _close_then(iterator: Iterator, release: Callable[[], None]) -> None:
    """End a body: close its iterator (a generator's finally closes its files), then release."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()
    release()


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
            _close_then(self._chunks, release)


# Spans of a complete copy sent to a peer at once with sendfile() (no serve_rate): large,
# so one send covers many MiB; the server loops until each is sent.
SEND_SPAN = 8 << 20


class PeerFile:
    """A peer's body: bytes of a local copy or of a fetch in progress as spans of open
    files, which the HTTP server sends with sendfile() (`sendfile_spans`, front/server.py);
    any other server reads them (`read`).  The peer slot (and the read of a local copy) is
    released exactly once: when the server closes the body, sent or not.  `tell()` is the
    object offset reached, so the access log counts the bytes sent."""

    def __init__(self, spans: Iterator[Span], start: int, release: Callable[[], None]):
        self._spans = spans
        self._pos = start
        self._release: Callable[[], None] | None = release

    def sendfile_spans(self) -> Iterator[Span]:
        for fd, offset, count in self._spans:
            yield fd, offset, count
            self._pos = offset + count  # resumed: the server sent it

    def read(self, size: int = -1) -> bytes:
        """The next span's bytes (its size is the engine's, whatever `size` asks), b"" at the end."""
        span = next(self._spans, None)
        if span is None:
            return b""
        data = pread_span(span)
        self._pos += len(data)
        return data

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            _close_then(self._spans, release)


class Reads:
    def __init__(self, cfg: Config, node: str, kv: ObjectsKV, copies: Copies, fetcher: Fetcher, disk: Disk):
        self.cfg = cfg
        self.disk = disk
        self.name = node
        self.kv = kv
        self.copies = copies
        self.fetcher = fetcher
        self.serve_bucket = TokenBucket(cfg.serve_rate)
        # Legitimate peers are few (each source's Consul semaphore admits max_fetch_per_source
        # fetchers, plus one relay); the cap keeps anyone who merely sends X-Tuggle-Internal
        # from tying up every HTTP thread with slow reads.
        self._peer_slots = threading.BoundedSemaphore(cfg.max_serving_peers)

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
        f = self.disk.open_copy(name, local.path) if local is not None else None
        if local is not None and f is not None:
            return Opened(meta, path=local.path, file=f)
        if head:
            return Opened(meta)
        d = self.fetcher.ensure(meta)
        d.wait_started(self.cfg.fetch_timeout)
        return Opened(meta, download=d, begin_read=lambda: self.disk.reads.begin(name))

    def open_for_peer(
        self, name: str, bounds: Callable[[int], tuple[int, int]]
    ) -> tuple[ObjectMeta, tuple[int, int], Lease | PeerFile]:
        """For a peer: the bytes `bounds(size)` gives, from local bytes only -- a complete copy,
        or with pipelined relay the verified part of a fetch in progress -- never by starting
        a fetch.  Holds one of `max_serving_peers` slots until the body is done or closed."""
        meta = self.meta(name)
        start, end = bounds(meta.size)
        local = self.copies.checked(name, meta.version)
        d = self.fetcher.active(name) if self.cfg.pipelined and local is None else None
        if local is None and (d is None or d.meta.version != meta.version):
            raise NotFound(f"{name} is not held on this node")
        reading = self.disk.reads.begin(name) if local is not None else None
        if local is not None and reading is None:
            raise NotFound(f"{name} is being evicted from this node")
        if not self._peer_slots.acquire(blocking=False):
            if reading is not None:
                reading()
            metrics.PEERS_REFUSED.inc()
            raise Busy(
                f"{self.name} is already serving {self.cfg.max_serving_peers} peers (max_serving_peers); "
                "try another holder"
            )
        release = self._released(reading)
        if local is not None and (start, end) == (0, meta.size) and self.cfg.verify_on_serve:
            chunks = pread_spans(self._paced(self._file_spans(local.path, start, end, 256 * 1024)))
            return meta, (start, end), Lease(self._verified(chunks, meta), release)
        # A rate-limited node sends small spans, so its bucket paces them as finely as before.
        most = SEND_SPAN if not self.serve_bucket.rate else 64 * 1024
        if local is not None:
            spans = self._file_spans(local.path, start, end, most)
        else:
            assert d is not None
            spans = d.spans(start, end, most)
        return meta, (start, end), PeerFile(self._paced(spans), start, release)

    def _released(self, reading: Callable[[], None] | None) -> Callable[[], None]:
        """A peer's slot release, which also ends its read of a local copy (disk.py)."""

        def release() -> None:
            self._peer_slots.release()
            if reading is not None:
                reading()

        return release

    @staticmethod
    def _file_spans(path: Path, start: int, end: int, most: int) -> Iterator[Span]:
        with open(path, "rb") as f:
            for pos in range(start, end, most):
                yield f.fileno(), pos, min(most, end - pos)

    def _verified(self, chunks: Iterator[bytes], meta: ObjectMeta) -> Iterator[bytes]:
        """verify_on_serve: a whole read re-checks our copy on the way (a peer verifies too, but
        a bad copy must stop being advertised at once, not after every peer has tried it)."""
        h = hashlib.sha256()
        for block in chunks:
            h.update(block)
            yield block
        if h.hexdigest() != meta.sha256:
            self.copies.quarantine(meta, "its bytes no longer match their SHA-256 (changed on disk?)")

    def _paced(self, spans: Iterator[Span]) -> Iterator[Span]:
        """Spans for peers pass the node-wide serve_rate bucket."""
        for span in spans:
            self.serve_bucket.take(span[2])
            metrics.SERVED_BYTES.inc(span[2])
            yield span

    def listing(self) -> list[ObjectMeta]:
        return sorted(self.kv.list().metas.values(), key=lambda m: m.name)

    def edges(self, name: str) -> list[Edge]:
        self.meta(name)
        return self.kv.edges(name)

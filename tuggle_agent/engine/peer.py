"""The wire between nodes: how a fetcher asks a holder for bytes, and what it accepts back.

A peer request is a plain `GET /<name>` with `X-Tuggle-Internal: <asking node>` and,
when resuming, `Range: bytes=<offset>-`.  A holder answers from local bytes only (a
complete copy or the verified part of a fetch in progress), never by starting a fetch.
The fetcher accepts exactly: 200 with the whole object, or 206 whose Content-Range
starts at the offset it asked for; anything else -- another status, a redirect, another
version's ETag, a short stream, a stall or a drip below `min_rate` -- is a SourceError
that costs at most the piece in flight (the caller resumes elsewhere).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import requests
import urllib3

from ..consul.health import Holder
from ..objects.metadata import ObjectMeta

log = logging.getLogger(__name__)

INTERNAL_HEADER = "X-Tuggle-Internal"
# Bytes are handed on (written, hashed) in blocks of up to BLOCK, cut at every piece end so a
# complete piece is verified and forwarded at once.  Large blocks: one call per block instead
# of one per recv(), and BLAKE3 uses its SIMD path only on long inputs (on 1.4 KiB updates it
# costs 5x more than on 64 KiB ones).
BLOCK = 1 << 20


class SourceError(Exception):
    """This holder could not give us (more) good bytes; try another."""


class CorruptSource(SourceError):
    """This holder sent bytes that failed verification (or another version)."""


def content_range(start: int, end: int, size: int) -> str:
    """The Content-Range of bytes [start, end) of `size` (HTTP ranges are inclusive)."""
    return f"bytes {start}-{end - 1}/{size}"


class RateFloor:
    """Drops a source that drips: over each window of `window` seconds spent waiting on the
    socket, at least `min_rate` bytes/s must arrive.  Time the caller spends elsewhere
    (our own rate limit, disk) is not counted against the source."""

    def __init__(self, min_rate: int, window: float):
        self.min_rate = min_rate
        self.window = window
        self._waited = 0.0
        self._bytes = 0

    def observe(self, waited: float, n: int) -> None:
        self._waited += waited
        self._bytes += n
        if self._waited >= self.window:
            rate = self._bytes / self._waited
            self._waited, self._bytes = 0.0, 0
            if rate < self.min_rate:
                raise SourceError(f"sent {rate:.0f} B/s, below min_source_rate ({self.min_rate} B/s)")


def blocks(recv_into: Callable[[memoryview], int], skip: int, offset: int, piece: int) -> Iterator[memoryview]:
    """The body read with `recv_into(view)` (fills at most all of view, returns how much, 0 at
    the end), minus its first `skip` bytes, as blocks of the object from `offset`: each ends
    at a multiple of `piece` or after BLOCK bytes, whichever comes first, and the last one
    at the end of the body.  Blocks are views of one reused buffer: each is valid until the
    next one is asked for."""
    buf = memoryview(bytearray(BLOCK))
    pos, fill = offset, 0  # object offset of buf[0]; bytes in buf
    while skip:
        got = recv_into(buf[: min(skip, BLOCK)])
        if not got:
            return
        skip -= got
    while True:
        got = recv_into(buf[fill : fill + min(BLOCK - fill, piece - (pos + fill) % piece)])
        if not got:
            if fill:
                yield buf[:fill]
            return
        fill += got
        if fill == BLOCK or (pos + fill) % piece == 0:
            yield buf[:fill]
            pos, fill = pos + fill, 0


def _socket_reader(r: requests.Response, length: int) -> Callable[[memoryview], int] | None:
    """recv_into straight from the connection's buffered socket reader (http.client's `fp`,
    under urllib3's `_fp`): no bytes object per recv() and no urllib3 layers, which halved
    the CPU of the receive loop.  Only for a plain body of exactly `length` bytes (a
    Content-Length, nothing chunked or encoded); None when the answer is anything else, or
    when urllib3 / http.client no longer look like this.  urllib3 is not told the body was
    read, so it closes the connection afterwards instead of reusing it (one per fetch)."""
    resp = getattr(r.raw, "_fp", None)
    fp = getattr(resp, "fp", None)
    if (
        fp is None
        or not hasattr(fp, "readinto1")
        or getattr(resp, "chunked", True) is not False
        or getattr(resp, "length", None) != length
        or r.headers.get("Content-Encoding", "identity") != "identity"
    ):
        return None
    left = length

    def recv_into(view: memoryview) -> int:
        nonlocal left
        got = fp.readinto1(view[:left]) if left else 0
        left -= got
        return got

    return recv_into


def _read1_reader(r: requests.Response) -> Callable[[memoryview], int]:
    """recv_into over urllib3's read1 (any answer urllib3 can read)."""

    def recv_into(view: memoryview) -> int:
        data = r.raw.read1(len(view), decode_content=False)
        view[: len(data)] = data
        return len(data)

    return recv_into


class PeerClient:
    def __init__(self, node: str, stall_timeout: float, min_rate: int, connect_timeout: float = 5.0):
        self.node = node
        self.stall_timeout = stall_timeout
        self.min_rate = min_rate
        self.connect_timeout = connect_timeout
        self._http = requests.Session()

    @contextmanager
    def open(self, holder: Holder, meta: ObjectMeta, offset: int) -> Iterator[Iterator[memoryview]]:
        """Bytes of `meta` from `offset` to the end, as sent by `holder`, in blocks (see
        `blocks`: each is valid until the next is asked for)."""
        headers = {INTERNAL_HEADER: self.node}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            with self._http.get(
                f"{holder.url}/{meta.name}",
                headers=headers,
                stream=True,
                allow_redirects=False,
                timeout=(self.connect_timeout, self.stall_timeout),
            ) as r:
                skip = self._check_answer(holder, meta, offset, r)
                yield self._body(holder, r, skip, offset, meta)
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise SourceError(f"transfer of {meta.name} from {holder.node} broke ({exc.__class__.__name__})") from exc

    @staticmethod
    def _check_answer(holder: Holder, meta: ObjectMeta, offset: int, r: requests.Response) -> int:
        """How many leading bytes to skip, or SourceError for an answer we can't use."""
        if r.status_code == 206:
            if r.headers.get("Content-Range") != content_range(offset, meta.size, meta.size):
                raise SourceError(
                    f"{holder.node} answered Content-Range {r.headers.get('Content-Range')!r} "
                    f"for bytes {offset}- of {meta.name}"
                )
            skip = 0
        elif r.status_code == 200:
            skip = offset  # the holder ignored Range: drop what we already have
        else:
            raise SourceError(f"{holder.node} answered {r.status_code} for {meta.name}")
        if r.headers.get("ETag", "").strip('"') not in ("", meta.etag):
            raise CorruptSource(f"{holder.node} holds another version of {meta.name}")
        return skip

    def _body(
        self, holder: Holder, r: requests.Response, skip: int, offset: int, meta: ObjectMeta
    ) -> Iterator[memoryview]:
        floor = RateFloor(self.min_rate, self.stall_timeout)
        recv_into = _socket_reader(r, skip + meta.size - offset) or _read1_reader(r)

        def observed(view: memoryview) -> int:
            t = time.monotonic()
            # One recv() at most: a drip is measured as it drips (filling the whole view
            # would block until it is full, each recv well within stall_timeout).
            try:
                got = recv_into(view)
            except OSError as exc:  # on the socket path: a stall or a reset
                why = (
                    f"ReadTimeout: nothing for stall_timeout, {self.stall_timeout:g}s"  # as requests names it
                    if isinstance(exc, TimeoutError)
                    else exc.__class__.__name__
                )
                raise SourceError(f"transfer of {meta.name} from {holder.node} broke ({why})") from exc
            try:
                floor.observe(time.monotonic() - t, got)
            except SourceError as exc:
                raise SourceError(f"{holder.node} {exc}") from None
            return got

        return blocks(observed, skip, offset, meta.piece_size)

    def report_corrupt(self, holder: Holder, name: str) -> None:
        """Ask the holder to re-check its copy, so it stops serving bad bytes to everyone."""
        try:
            self._http.post(f"{holder.url}/_tuggle/verify/{name}", timeout=5, allow_redirects=False)
        except requests.exceptions.RequestException as exc:
            log.warning("could not ask %s to re-verify %s: %s", holder.node, name, exc)

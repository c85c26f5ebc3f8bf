"""One in-flight fetch of one object, shared by everyone who wants its bytes.

The fetch thread appends bytes to a temp file and advances `verified` one piece
at a time, after the piece matched its digest; the last piece is released only
once the whole-object SHA-256 matched too.  Readers (a client GET streamed while
the fetch runs, or a peer reading from this partial holder) never see a byte
beyond `verified`.  If the fetch fails, readers get an exception at the edge of
what was verified, which the HTTP layer turns into a connection closed before
Content-Length: a broken transfer, never a silently corrupt file.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import BadSources, TuggleError
from ..objects.metadata import ObjectMeta

Span = tuple[int, int, int]  # (fd, offset, count): bytes of an open file, ready to be sent


def pread_span(span: Span) -> bytes:
    fd, offset, count = span
    data = os.pread(fd, count, offset)
    if len(data) != count:
        raise BadSources(f"file shorter than expected: {len(data)} of {count} bytes at {offset}")
    return data


def pread_spans(spans: Iterator[Span]) -> Iterator[bytes]:
    """The bytes of each span (for whoever cannot sendfile() them)."""
    for span in spans:
        yield pread_span(span)


class Download:
    def __init__(self, meta: ObjectMeta, temp_path: Path):
        self.meta = meta
        self.temp_path = temp_path
        self.started_at = time.time()
        self.source = ""
        self.verified = 0
        self.done = False
        self.cancelled = False
        self.error: TuggleError | None = None
        self._cond = threading.Condition()
        self._fd: int | None = os.open(temp_path, os.O_RDONLY)  # survives rename and unlink; None once closed

    # -- writer side ------------------------------------------------------
    def advance(self, verified: int) -> None:
        with self._cond:
            self.verified = verified
            self._cond.notify_all()

    def finish(self, error: TuggleError | None = None) -> None:
        with self._cond:
            self.done = True
            self.error = error
            if error is None:
                self.verified = self.meta.size
            else:
                # A failed copy is useless to readers (they can't complete), and its
                # unlinked temp file holds disk space for as long as the fd is open.
                self.close()
            self._cond.notify_all()

    def rate(self, now: float | None = None) -> float:
        """Bytes verified per second since the fetch started."""
        elapsed = (time.time() if now is None else now) - self.started_at
        return self.verified / elapsed if elapsed > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.done and self.error is None

    # -- reader side ------------------------------------------------------
    def wait_for_bytes(self, past: int, timeout: float | None = None) -> int:
        """Block until more than `past` bytes are verified (or the end); returns the count."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.verified <= past and not self.done:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(left if left is not None else 1.0)
            if self.verified <= past and self.error is not None:
                raise self.error
            return self.verified

    def wait_started(self, timeout: float) -> None:
        """Until the first verified bytes, the end, or timeout; raises the failure if it failed
        before any byte, so an HTTP answer can still carry a proper status code."""
        if self.meta.size:
            self.wait_for_bytes(0, timeout)
        else:
            with self._cond:
                self._cond.wait_for(lambda: self.done, timeout)
                if self.error is not None:
                    raise self.error

    def spans(self, start: int, end: int, most: int) -> Iterator[Span]:
        """Verified bytes [start, end) as spans of at most `most` bytes, waiting for them as
        they arrive.  The fd is this reader's own (a dup, closed with the iterator): it stays
        valid whatever the fetch does meanwhile, and a failed fetch's readers still get the
        bytes that were verified, then its error."""
        with self._cond:
            if self._fd is None:
                raise self.error or BadSources("download closed")
            fd = os.dup(self._fd)
        try:
            pos = start
            while pos < end:
                avail = min(self.wait_for_bytes(pos), end)
                while pos < avail:
                    n = min(most, avail - pos)
                    yield fd, pos, n
                    pos += n
        finally:
            os.close(fd)

    def read(self, start: int, end: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
        """Verified bytes [start, end), waiting for them as they arrive."""
        return pread_spans(self.spans(start, end, chunk))

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self):
        # Readers may outlive the fetch thread; the fd goes when the last one lets go.
        if getattr(self, "_fd", None) is not None:
            self.close()
